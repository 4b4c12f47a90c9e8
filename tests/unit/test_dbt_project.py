"""The dbt project stays in step with kho.sources and with what publishing needs: generated sources, staging
views and seeds equal what the contracts give; every mart has a primary key, documented columns and a GX suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kho.build import project
from kho.config import PROJECT_ROOT
from kho.load.ddl import META_COLUMNS
from kho.sources import ENTITIES

DBT = PROJECT_ROOT / "dbt_project"
MARTS = DBT / "models" / "marts"


def test_generated_dbt_files_are_up_to_date() -> None:
    stale = project.stale_files()
    assert not stale, f"stale generated dbt files, run `python -m kho.build.project`: {stale}"


def test_every_raw_table_has_a_staging_view_with_every_column(tmp_path: Path) -> None:
    written = {path.relative_to(tmp_path) for path in project.write(tmp_path)}
    for entity in ENTITIES:
        sql = Path("models", "staging", entity.registry, f"stg_{entity.registry}__{entity.name}.sql")
        assert sql in written
        text = (tmp_path / sql).read_text(encoding="utf-8")
        for name in (*entity.field_names, *(project.META_RENAMES[n] for n, _ in META_COLUMNS)):
            assert f" as {name}," in text or f" as {name}\n" in text, f"{sql} drops {name}"


def test_a_contract_change_makes_the_committed_files_stale(tmp_path: Path) -> None:
    project.write(tmp_path)
    assert project.stale_files(tmp_path) == []
    victim = tmp_path / "models" / "staging" / "population" / "_population__sources.yml"
    victim.write_text(victim.read_text(encoding="utf-8").replace("cccd", "ccd", 1), encoding="utf-8")
    assert project.stale_files(tmp_path) == [victim]


def test_sources_declare_freshness_and_every_contract_column() -> None:
    for entity in ENTITIES:
        path = DBT / "models" / "staging" / entity.registry / f"_{entity.registry}__sources.yml"
        (source,) = yaml.safe_load(path.read_text(encoding="utf-8"))["sources"]
        assert source["config"]["loaded_at_field"] == "_loaded_at"
        assert source["config"]["freshness"]["error_after"]
        table = next(t for t in source["tables"] if t["name"] == entity.raw_table)
        assert [c["name"] for c in table["columns"]] == [*entity.field_names, *(n for n, _ in META_COLUMNS)]


def _mart_models() -> dict[str, dict[str, Any]]:
    models = {}
    for path in MARTS.glob("*/_*__models.yml"):
        for model in yaml.safe_load(path.read_text(encoding="utf-8"))["models"]:
            models[f"mart_{path.parent.name}.{model['name']}"] = model
    return models


def test_every_mart_sql_file_is_declared_with_a_primary_key_and_documented_columns() -> None:
    models = _mart_models()
    files = {f"mart_{p.parent.name}.{p.stem}" for p in MARTS.glob("*/*.sql")}
    assert files == set(models)
    for name, model in models.items():
        keys = [c["name"] for c in model["columns"] if {"type": "primary_key"} in c.get("constraints", [])]
        keys += [k for con in model.get("constraints", []) if con["type"] == "primary_key" for k in con["columns"]]
        assert keys, f"{name} has no primary key: publishing merges on it"
        for column in model["columns"]:
            assert column.get("description"), f"{name}.{column['name']} is undocumented"
            assert column.get("data_type"), f"{name}.{column['name']} has no data_type for the contract"


def test_every_mart_has_a_gx_suite_and_every_mart_suite_a_mart() -> None:
    suites = {p.stem for p in (PROJECT_ROOT / "expectations").glob("mart_*.json")}
    assert suites == set(_mart_models())


def test_every_mart_folder_builds_into_its_private_build_schema() -> None:
    config = yaml.safe_load((DBT / "dbt_project.yml").read_text(encoding="utf-8"))["models"]["kho"]["marts"]
    domains = {p.name for p in MARTS.iterdir() if p.is_dir()}
    assert {d: config[d]["+schema"] for d in domains} == {d: f"build_mart_{d}" for d in domains}
