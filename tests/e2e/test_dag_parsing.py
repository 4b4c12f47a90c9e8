"""Parsing kho's DAG files is cheap and says what is wrong: no dbt, GX, pandas or database driver imported, and the
build DAG's dbt graph read from a manifest that describes the dbt project as it is, or a one-line import error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kho.build.dbt import (
    DBT_PROJECT,
    ManifestMissing,
    dag_manifest,
    manifest_dir,
    project_fingerprint,
    write_manifest,
)
from kho.config import PROJECT_ROOT, KhoConfig

pytestmark = pytest.mark.e2e
DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))
HEAVY = ("dbt", "great_expectations", "pandas", "psycopg", "fastapi", "sqlalchemy.dialects.postgresql")
"""What a task may need and parsing must not: dbt (a `dbt ls` at parse), GX, pandas, the database driver, and the
API server Airflow's plugins bring in."""
CHILD = """
import json, runpy, sys
from kho.config import KhoConfig
from kho import airflow_env
airflow_env.prepare(KhoConfig.from_env())
import airflow.sdk
before = set(sys.modules)
runpy.run_path(sys.argv[1], run_name="parse_test")
print(json.dumps(sorted(set(sys.modules) - before)))
"""


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_parsing_a_dag_file_imports_no_dbt_gx_pandas_or_database_driver(dagbag: Any, dag_file: Path) -> None:
    """A fresh interpreter, as the DAG processor's, with Airflow already imported: what the file alone adds."""
    import os

    done = subprocess.run([sys.executable, "-c", CHILD, str(dag_file)], capture_output=True, text=True,
                          env=dict(os.environ), cwd=PROJECT_ROOT, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert "kho" in {m.split(".")[0] for m in imported}, "the measurement must see the file's own imports"
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == [], f"{dag_file.name} imports at parse time: {heavy[:10]}"


def test_without_a_manifest_the_build_dag_fails_to_import_in_one_line_naming_the_command(
    dagbag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("KHO_HOME", str(tmp_path / "home"))
    bag = DagBag(str(PROJECT_ROOT / "dags"))
    assert set(bag.import_errors) == {str(PROJECT_ROOT / "dags" / "build_warehouse.py")}
    message = next(iter(bag.import_errors.values())).strip().splitlines()[-1]
    assert message.startswith("kho.build.dbt.ManifestMissing: no dbt manifest for")
    assert "none was written yet" in message and "run `kho manifest` with the same KHO_HOME" in message
    assert {d for d in bag.dag_ids if d.startswith("sync_")}, "the sync DAGs do not need the manifest"


def test_a_manifest_serves_only_the_dbt_project_it_was_parsed_from(kho_config: KhoConfig, tmp_path: Path) -> None:
    """Real `dbt parse` of a copy of the project: found while the project is unchanged (dbt's own output folders
    aside), refused once a model changes, and replaced (the old one removed) by the next write."""
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", ".*"))
    config = KhoConfig.from_env({"KHO_HOME": str(tmp_path / "home")})

    first = write_manifest(config, project)
    nodes = json.loads(first.read_text(encoding="utf-8"))["nodes"]
    assert "model.kho.golden_citizens" in nodes
    assert dag_manifest(config, project) == first

    (project / "target").mkdir()
    (project / "target" / "run_results.json").write_text("{}", encoding="utf-8")
    assert dag_manifest(config, project) == first, "dbt's own output is not part of the project"

    model = project / "models" / "marts" / "population" / "golden_citizens.sql"
    model.write_text(model.read_text(encoding="utf-8") + "\n-- edited\n", encoding="utf-8")
    with pytest.raises(ManifestMissing, match="the dbt project changed since the last one was written") as refused:
        dag_manifest(config, project)
    assert "\n" not in str(refused.value) and "kho manifest" in str(refused.value)

    second = write_manifest(config, project)
    assert second != first and dag_manifest(config, project) == second
    assert [p.name for p in manifest_dir(config).iterdir()] == [project_fingerprint(project)]


def test_kho_manifest_check_passes_on_the_session_home_and_fails_in_one_line_on_an_empty_one(
    dagbag: Any, kho_config: KhoConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kho.cli import main

    monkeypatch.setenv("KHO_HOME", str(kho_config.home))
    assert main(["manifest", "--check"]) == 0
    assert str(dag_manifest(kho_config)) in capsys.readouterr().out
    monkeypatch.setenv("KHO_HOME", str(tmp_path / "empty"))
    assert main(["manifest", "--check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kho: error: no dbt manifest") and "`kho manifest`" in err
