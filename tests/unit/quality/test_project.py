"""The GX project under `expectations/` is declared once, as data: every suite has its asset, validation definition
and checkpoint, with ids that follow from names, and GX reads it without writing to it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from kho.config import PROJECT_ROOT
from kho.quality import project
from kho.quality.suites import load_suite, suite_path
from kho.sources import ENTITIES

EXPECTATIONS = PROJECT_ROOT / "expectations"
MARTS = project.mart_suites(EXPECTATIONS)
TARGETS = project.targets(ENTITIES, MARTS, "build_")


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _config() -> dict:
    return yaml.safe_load((EXPECTATIONS / project.PROJECT_FILE).read_text(encoding="utf-8"))


def test_there_is_a_target_per_raw_table_and_per_mart_suite() -> None:
    assert {t.suite for t in TARGETS} == {f"raw.{e.raw_table}" for e in ENTITIES} | set(MARTS)
    assert len(MARTS) >= 10


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.suite)
def test_each_suite_s_validation_definition_and_checkpoint_point_at_its_asset_and_suite(target) -> None:
    assets = _config()["fluent_datasources"][project.DATASOURCE]["assets"]
    asset = assets[target.suite]
    definition = _json(EXPECTATIONS / project.VALIDATION_DEFINITIONS / f"{target.suite}.json")
    checkpoint = _json(EXPECTATIONS / project.CHECKPOINTS / f"{target.suite}.json")
    suite = load_suite(suite_path(EXPECTATIONS, target.suite))

    assert definition["data"]["asset"] == {"id": asset["id"], "name": target.suite}
    (batch_definition,) = asset["batch_definitions"]
    assert definition["data"]["batch_definition"] == {"id": asset["batch_definitions"][batch_definition]["id"],
                                                      "name": batch_definition}
    assert definition["suite"] == {"id": suite["id"], "name": suite["name"]}
    assert checkpoint["validation_definitions"] == [{"id": definition["id"], "name": definition["name"]}]
    assert (asset["schema_name"], asset["table_name"]) == (target.schema, target.table)


def test_raw_assets_read_the_gate_views_and_marts_their_build_tables_whole() -> None:
    assets = _config()["fluent_datasources"][project.DATASOURCE]["assets"]
    citizens = assets["raw.population__citizens"]
    assert (citizens["schema_name"], citizens["table_name"]) == ("gate", "population__citizens")
    assert citizens["batch_definitions"][project.WHOLE_TABLE]["partitioner"] is None
    golden = assets["mart_population.golden_citizens"]
    assert (golden["schema_name"], golden["table_name"]) == ("build_mart_population", "golden_citizens")
    assert golden["batch_definitions"][project.WHOLE_TABLE]["partitioner"] is None


def test_raw_gates_ask_for_counts_without_samples_and_leave_data_docs_to_the_marts() -> None:
    raw = _json(EXPECTATIONS / project.CHECKPOINTS / "raw.population__citizens.json")
    mart = _json(EXPECTATIONS / project.CHECKPOINTS / "mart_population.golden_citizens.json")
    assert raw["result_format"] == {"result_format": "BASIC", "partial_unexpected_count": 0}
    assert raw["actions"] == []
    assert [a["type"] for a in mart["actions"]] == ["update_data_docs"]


def test_ids_follow_from_names_so_generating_twice_changes_nothing() -> None:
    assert project.object_id("suite", "raw.x") == project.object_id("suite", "raw.x")
    assert project.object_id("suite", "raw.x") != project.object_id("asset", "raw.x")
    assert project.project_config(TARGETS) == project.project_config(TARGETS)


def test_what_runs_write_and_the_warehouse_url_are_given_at_run_time() -> None:
    config = _config()
    assert config["fluent_datasources"][project.DATASOURCE]["connection_string"] == "${KHO_GX_WAREHOUSE_URL}"
    assert config["stores"]["validation_results_store"]["store_backend"]["base_directory"].startswith(
        "${KHO_GX_HOME}/")
    assert config["data_docs_sites"]["local_site"]["store_backend"]["base_directory"].startswith("${KHO_GX_HOME}/")
    assert config["stores"]["expectations_store"]["store_backend"]["base_directory"] == "suites/"
    assert config["analytics_enabled"] is False


def test_gx_reads_the_project_and_finds_every_checkpoint_without_writing_to_it(tmp_path: Path) -> None:
    """Imports GX (seconds). The project directory is hashed before and after: a run must be able to read it from a
    read-only checkout."""
    import great_expectations as gx

    import kho.quality.domain  # noqa: F401  # the suites use kho's custom expectations

    def digest() -> dict[str, str]:
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(EXPECTATIONS.rglob("*"))
                if p.is_file()}

    before = digest()
    context = gx.get_context(mode="file", context_root_dir=str(EXPECTATIONS), runtime_environment={
        project.URL_VARIABLE: "postgresql+psycopg://kho:secret@127.0.0.1:1/kho",
        project.HOME_VARIABLE: str(tmp_path)})
    for target in TARGETS:
        checkpoint = context.checkpoints.get(target.suite)
        (definition,) = checkpoint.validation_definitions
        assert definition.suite.name == target.suite
        assert len(definition.suite.expectations) == len(load_suite(suite_path(EXPECTATIONS,
                                                                                   target.suite))["expectations"])
    assert digest() == before
