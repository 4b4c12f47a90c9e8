"""A registry is one object: one defined only in the test suite joins kho through `KHO_REGISTRY_MODULES` (sync DAG,
raw tables, `kho load`, `kho sync`), and a registry is reached wherever its settings say, configured only through
the environment, with nothing generated on the way.

The registry of these tests is `tests.support.digital_address`. Each command runs as its own process, as an operator
or Airflow would run it, so the catalogue is read at import exactly as in production. `kho generate --out` gives it
a GX suite and dbt sources without touching the repository, and both run on its loaded tables (real GX, real dbt).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kho import generate
from kho.build.dbt import dbt_environment
from kho.config import PROJECT_ROOT, KhoConfig, RegistryCredentials
from kho.errors import ConfigError
from kho.load.pipeline import SyncOptions, sync_api
from kho.quality.suites import RAW_META_COLUMNS, load_suite
from kho.simulator import World, WorldSpec
from kho.simulator.server import RunningSimulator, ServerOptions, serve_in_thread
from kho.sources.population import CITIZENS
from kho.warehouse.connection import connect
from tests.conftest import free_port
from tests.support import digital_address
from tests.support.digital_address import ADDRESS_POINTS, ADDRESSES, REGISTRY

pytestmark = pytest.mark.integration

AGENCY_CLIENT = RegistryCredentials("kho-province", "agency-issued secret +/=")
"""The client a registry other than the default simulator issued to kho."""


def kho(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`kho <args>` as its own process with exactly `env` on top of this one's (the repository on its path, so
    `tests.support` imports as a registry module would from an agency's own package)."""
    full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "kho.cli", *args], env=full, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


def warehouse_env(config: KhoConfig) -> dict[str, str]:
    return {**config.child_env(), "KHO_PG_PASSWORD": config.warehouse.password()}


@pytest.fixture
def digital_address_env(fresh_db_config: KhoConfig) -> dict[str, str]:
    """The environment of a deployment that added the digital-address platform: KHO_REGISTRY_MODULES naming the
    test suite's registry module, and a warehouse database migrated with it (its raw tables created)."""
    env = {**warehouse_env(fresh_db_config), "KHO_REGISTRY_MODULES": digital_address.MODULE}
    migrated = kho(env, "warehouse", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    return env


def rows(config: KhoConfig, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


# --- a registry defined outside kho ------------------------------------------------------------------------------

DAGBAG_REPORT = """
import json
from kho import demo
from kho.config import KhoConfig

bag = demo.load_dagbag(KhoConfig.from_env())
report = {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dag_ids)}
dag = bag.get_dag("sync_digital_address")
if dag is not None:
    report["dag"] = {
        "schedule": dag.timetable.expression,
        "timezone": str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone)),
        "tags": sorted(dag.tags),
        "owners": sorted({t.owner for t in dag.tasks}), "tasks": sorted(t.task_id for t in dag.tasks),
        "outlets": sorted(o.uri for t in dag.tasks for o in t.outlets), "description": dag.description,
    }
print(json.dumps(report))
"""


def test_a_registry_module_named_in_the_environment_gets_its_own_sync_dag(kho_config: KhoConfig) -> None:
    env = {**kho_config.child_env(), "KHO_REGISTRY_MODULES": digital_address.MODULE}
    full = {**os.environ, **env, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", DAGBAG_REPORT], env=full, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["import_errors"] == {}
    assert {"sync_population", "sync_digital_address", "build_warehouse"} <= set(report["dag_ids"])
    dag = report["dag"]
    assert dag["schedule"] == "0 3 * * 1-5" == REGISTRY.schedule
    assert dag["timezone"] == "Asia/Ho_Chi_Minh"
    assert dag["owners"] == ["kho-data-engineering"]
    assert "digital_address" in dag["tags"]
    assert "Department of Science and Technology" in dag["description"]
    assert {task.split(".")[0] for task in dag["tasks"]} == {"addresses", "address_points"}  # a group per entity
    assert {"addresses.extract_load", "address_points.extract_load"} <= set(dag["tasks"])
    assert [uri.rsplit("/", 2)[-2:] for uri in dag["outlets"]] == [["raw", "digital_address__address_points"],
                                                                   ["raw", "digital_address__addresses"]]


def test_without_the_module_setting_the_catalogue_is_kho_s_own(kho_config: KhoConfig) -> None:
    code = "from kho.sources import REGISTRIES; print(','.join(r.slug for r in REGISTRIES))"
    env = {k: v for k, v in os.environ.items() if k != "KHO_REGISTRY_MODULES"}
    done = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "population,insurance,civil_status,business"


def test_kho_load_writes_a_batch_of_the_added_registry_into_its_raw_table(
        digital_address_env: dict[str, str], fresh_db_config: KhoConfig, tmp_path: Path) -> None:
    served = digital_address.records(ADDRESSES, 40)
    path = digital_address.write_csv(tmp_path / "addresses.csv", ADDRESSES, served)

    done = kho(digital_address_env, "load", "digital_address", "addresses", str(path), "--no-progress")

    assert done.returncode == 0, done.stderr
    stored = rows(fresh_db_config, "SELECT address_code, commune_code, street_address "
                                   "FROM raw.digital_address__addresses ORDER BY address_code")
    assert stored == [(r["address_code"], r["commune_code"], r["street_address"]) for r in served]
    assert rows(fresh_db_config, "SELECT registry, entity, rows_read, rows_new, rows_rejected FROM kho.load_ledger"
                ) == [("digital_address", "addresses", 40, 40, 0)]


def test_the_added_registry_is_unknown_to_a_process_not_told_about_it(fresh_db_config: KhoConfig,
                                                                       tmp_path: Path) -> None:
    path = digital_address.write_csv(tmp_path / "addresses.csv", ADDRESSES, digital_address.records(ADDRESSES, 3))
    done = kho(warehouse_env(fresh_db_config), "load", "digital_address", "addresses", str(path), "--no-progress")
    assert done.returncode == 2  # a usage error: the command line names a registry this process does not have
    assert "argument registry: invalid choice: 'digital_address'" in done.stderr
    assert rows(fresh_db_config, "SELECT to_regclass('raw.digital_address__addresses')") == [(None,)]


@pytest.fixture
def platform() -> Iterator[RunningSimulator]:
    """The digital-address platform's API on a port of its own, issuing tokens to its own client only."""
    with serve_in_thread(digital_address.Platform(60), options=ServerOptions(credentials=AGENCY_CLIENT)) as server:
        yield server


def test_kho_sync_reads_the_added_registry_from_its_own_url_in_its_own_pages(
        digital_address_env: dict[str, str], fresh_db_config: KhoConfig, platform: RunningSimulator,
        tmp_path: Path) -> None:
    secret = tmp_path / "digital_address_secret"
    secret.write_text(AGENCY_CLIENT.client_secret + "\n", encoding="utf-8")
    home = tmp_path / "home"  # a home of its own: other tests of the session may have run the simulator's setup
    env = {**digital_address_env, "KHO_HOME": str(home), "KHO_REGISTRY_DIGITAL_ADDRESS_BASE_URL": platform.url,
           "KHO_REGISTRY_DIGITAL_ADDRESS_CLIENT_ID": AGENCY_CLIENT.client_id,
           "KHO_REGISTRY_DIGITAL_ADDRESS_CLIENT_SECRET_FILE": str(secret)}

    done = kho(env, "sync", "digital_address", "address_points")

    assert done.returncode == 0, done.stderr
    assert rows(fresh_db_config, "SELECT count(*) FROM raw.digital_address__address_points") == [(60,)]
    # The registry's paging: 25 records a page, 2 pages a batch -> pages of 25, 25, 10 in batches of 50 and 10.
    assert rows(fresh_db_config, "SELECT rows_read FROM kho.load_ledger ORDER BY batch_id") == [(50,), (10,)]
    assert not (home / "secrets" / "registry_client.json").exists()


# --- its GX suite and dbt sources, from `kho generate` ------------------------------------------------------------

STAGING = Path("dbt_project", "models", "staging", "digital_address")
ADDED_DBT_FILES = {STAGING / "_digital_address__sources.yml", STAGING / "_digital_address__models.yml",
                   STAGING / "stg_digital_address__addresses.sql", STAGING / "stg_digital_address__address_points.sql"}
ADDED_SUITES = {Path("expectations", "suites", "raw", "digital_address__addresses.json"),
                Path("expectations", "suites", "raw", "digital_address__address_points.json")}


@pytest.fixture
def generated(tmp_path: Path) -> tuple[Path, list[Path]]:
    """`kho generate --out ROOT` with the digital-address module named, ROOT holding a copy of the repository's dbt
    project: the root, and the files it wrote."""
    root = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", root / "dbt_project",
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    product = {a.path: (PROJECT_ROOT / a.path).read_bytes() for a in generate.artifacts()}
    env = {"KHO_HOME": str(tmp_path / "home"), "KHO_REGISTRY_MODULES": digital_address.MODULE}

    done = kho(env, "generate", "--out", str(root))

    assert done.returncode == 0, done.stderr
    assert {a.path: (PROJECT_ROOT / a.path).read_bytes() for a in generate.artifacts()} == product
    assert not any((PROJECT_ROOT / path).exists() for path in ADDED_DBT_FILES | ADDED_SUITES)
    written = [Path(line.removeprefix("wrote ")) for line in done.stdout.splitlines() if line.startswith("wrote ")]
    return root, written


def test_kho_generate_gives_the_added_registry_a_gx_suite_and_dbt_sources_and_touches_no_other_dbt_file(
        generated: tuple[Path, list[Path]]) -> None:
    root, written = generated
    assert {p for p in written if p.parts[0] == "dbt_project"} == ADDED_DBT_FILES
    assert set(written) >= ADDED_SUITES

    suite = load_suite(root / "expectations" / "suites" / "raw" / "digital_address__addresses.json")
    assert suite["name"] == "raw.digital_address__addresses"
    checks = {(e["type"], e["kwargs"].get("column")): e for e in suite["expectations"]}
    assert checks["expect_table_columns_to_match_set", None]["kwargs"]["column_set"] == [
        "address_code", "commune_code", "street_address", "updated_at", *RAW_META_COLUMNS, "_validation_id"]
    assert checks["expect_column_values_to_match_regex", "address_code"]["kwargs"]["regex"] == r"^(?:DA\d{10})$"
    assert checks["expect_column_value_lengths_to_be_between", "street_address"]["kwargs"]["max_value"] == 250
    commune = checks["expect_column_values_to_be_commune_code_valid_on_date", "commune_code"]
    assert (commune["severity"], commune["meta"]["rule"]) == ("warning", "commune_code_valid_for_date")
    assert {"raw.digital_address__addresses", "raw.digital_address__address_points"} <= set(
        yaml.safe_load((root / "expectations" / "great_expectations.yml").read_text(encoding="utf-8"))[
            "fluent_datasources"]["kho_warehouse"]["assets"])
    assert (root / "expectations" / "checkpoints" / "raw.digital_address__addresses.json").is_file()
    points = load_suite(root / "expectations" / "suites" / "raw" / "digital_address__address_points.json")
    bounds = {e["kwargs"]["column"]: e["kwargs"] for e in points["expectations"]
              if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] != "updated_at"}
    assert bounds == {"latitude": {"column": "latitude", "min_value": 8.0, "max_value": 24.0},
                      "longitude": {"column": "longitude", "min_value": 102.0, "max_value": 110.0}}

    sources = yaml.safe_load((root / STAGING / "_digital_address__sources.yml").read_text(encoding="utf-8"))
    (source,) = sources["sources"]
    assert (source["name"], source["schema"]) == ("digital_address", "raw")
    # Weekdays at 03:00: the longest gap is Friday to Monday, 3 days; a warning after two missed runs, an error
    # after seven.
    assert source["config"] == {"loaded_at_field": "_loaded_at",
                                "freshness": {"warn_after": {"count": 6, "period": "day"},
                                              "error_after": {"count": 21, "period": "day"}}}
    assert [(t["name"], [c["name"] for c in t["columns"]][:4]) for t in source["tables"]] == [
        ("digital_address__addresses", ["address_code", "commune_code", "street_address", "updated_at"]),
        ("digital_address__address_points", ["address_code", "latitude", "longitude", "updated_at"])]

    doc = (root / "docs" / "registries.md").read_text(encoding="utf-8")
    assert "### Registry `digital_address`" in doc and "`sync_digital_address` at `0 3 * * 1-5`" in doc
    assert "(schema drift): `discard_extra`" in doc
    assert "Fields the contract does not know: `freeze`" in doc.split("`digital_address.address_points`", 1)[1]


def test_the_added_registry_s_generated_suite_and_sources_run_on_its_loaded_tables(
        generated: tuple[Path, list[Path]], digital_address_env: dict[str, str], fresh_db_config: KhoConfig,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dbt.cli.main import dbtRunner

    root, _ = generated
    for entity, count in ((ADDRESSES, 40), (ADDRESS_POINTS, 10)):
        records = digital_address.records(entity, count)
        path = digital_address.write_csv(tmp_path / f"{entity.name}.csv", entity, records)
        loaded = kho(digital_address_env, "load", "digital_address", entity.name, str(path), "--no-progress")
        assert loaded.returncode == 0, loaded.stderr

    wh = fresh_db_config.warehouse
    for name, value in dbt_environment(fresh_db_config, wh.hosts[0], wh.ports[0]).items():
        monkeypatch.setenv(name, value)
    project = ["--project-dir", str(root / "dbt_project"), "--profiles-dir", str(root / "dbt_project"),
               "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
    built = dbtRunner().invoke(["build", "--select", "path:models/staging/digital_address", *project])
    assert built.success, built.exception
    fresh = dbtRunner().invoke(["source", "freshness", "--select", "source:digital_address", *project])
    assert fresh.success, fresh.exception
    assert sorted((r.node.name, str(r.status)) for r in fresh.result.results if r.node.resource_type == "source") == [
        ("digital_address__address_points", "pass"), ("digital_address__addresses", "pass")]
    assert rows(fresh_db_config, "SELECT count(*), min(address_code) FROM staging.stg_digital_address__addresses"
                ) == [(40, "DA0000000000")]

    gate = {**digital_address_env, "KHO_EXPECTATIONS_DIR": str(root / "expectations"),
            "KHO_HOME": str(tmp_path / "home")}
    (batches,) = rows(fresh_db_config, "SELECT min(batch_id) || '..' || max(batch_id) FROM kho.load_ledger "
                                       "WHERE entity = 'addresses'")
    clean = kho(gate, "quality", "validate", "digital_address", "addresses", batches[0])
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.startswith("raw.digital_address__addresses (batch") and ": passed," in clean.stdout
    rows(fresh_db_config, "UPDATE raw.digital_address__addresses SET address_code = 'DA12', commune_code = '99999' "
                          "WHERE address_code = 'DA0000000000' RETURNING 1")
    broken = kho(gate, "quality", "validate", "digital_address", "addresses", batches[0])
    assert broken.returncode == 1
    (line,) = broken.stderr.splitlines()
    assert "failed 1 blocking expectation(s)" in line and "expect_column_values_to_match_regex(address_code)" in line
    assert rows(fresh_db_config, "SELECT rule, row_key ->> 'address_code' FROM kho.quality_flags") == [
        ("commune_code_valid_for_date", "DA12")]


# --- a registry reached where its settings say ------------------------------------------------------------------

@pytest.fixture
def elsewhere() -> Iterator[RunningSimulator]:
    """A population registry that is not the default simulator: another instance, another port, another client."""
    with serve_in_thread(World.build(WorldSpec(11, 300)), options=ServerOptions(credentials=AGENCY_CLIENT)) as sim:
        yield sim


def pointed_at(config: KhoConfig, **settings: str) -> KhoConfig:
    """`config`'s warehouse, a home of its own (so a simulator credentials file in it can only be this test's),
    the default simulator on a port where nothing listens, and `settings`."""
    env = {**config.child_env(), "KHO_PG_PASSWORD": config.warehouse.password(), "KHO_SIM_PORT": str(free_port()),
           "KHO_HOME": tempfile.mkdtemp(prefix="kho-pointed-home-"), **settings}
    return KhoConfig.from_env(env)


def test_a_sync_reads_the_registry_its_environment_names(fresh_db_config: KhoConfig,
                                                         elsewhere: RunningSimulator) -> None:
    config = pointed_at(fresh_db_config, KHO_REGISTRY_POPULATION_BASE_URL=elsewhere.url,
                        KHO_REGISTRY_POPULATION_CLIENT_ID=AGENCY_CLIENT.client_id,
                        KHO_REGISTRY_POPULATION_CLIENT_SECRET=AGENCY_CLIENT.client_secret)

    entries = sync_api(config, CITIZENS, SyncOptions())

    served = elsewhere.world.count(CITIZENS)
    assert sum(e.rows_read for e in entries) == served
    assert rows(config, "SELECT count(*) FROM raw.population__citizens") == [(served,)]
    assert elsewhere.server.issuer.issued == 1
    assert not config.simulator_credentials_file.exists()


def test_the_cli_syncs_from_a_registry_set_only_in_its_environment(fresh_db_config: KhoConfig,
                                                                   elsewhere: RunningSimulator,
                                                                   tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**warehouse_env(fresh_db_config), "KHO_HOME": str(home), "KHO_SIM_PORT": str(free_port()),
           "KHO_PG_PASSWORD_FILE": str(fresh_db_config.warehouse.password_file),
           "KHO_REGISTRY_POPULATION_BASE_URL": elsewhere.url,
           "KHO_REGISTRY_POPULATION_TOKEN_URL": elsewhere.url + "/oauth/token",
           "KHO_REGISTRY_POPULATION_CLIENT_ID": AGENCY_CLIENT.client_id,
           "KHO_REGISTRY_POPULATION_CLIENT_SECRET": AGENCY_CLIENT.client_secret,
           "KHO_REGISTRY_POPULATION_TIMEOUT_S": "10"}

    done = kho(env, "sync", "population", "citizens")

    assert done.returncode == 0, done.stderr
    assert rows(fresh_db_config, "SELECT count(*) FROM raw.population__citizens") == [
        (elsewhere.world.count(CITIZENS),)]
    assert not home.exists(), "the sync created files under KHO_HOME"


def test_a_registry_with_a_url_and_no_credentials_fails_naming_the_setting(fresh_db_config: KhoConfig,
                                                                          elsewhere: RunningSimulator) -> None:
    config = pointed_at(fresh_db_config, KHO_REGISTRY_POPULATION_BASE_URL=elsewhere.url)

    with pytest.raises(ConfigError, match="set KHO_REGISTRY_POPULATION_CLIENT_ID and "
                                          "KHO_REGISTRY_POPULATION_CLIENT_SECRET") as caught:
        sync_api(config, CITIZENS, SyncOptions())

    assert "\n" not in str(caught.value)
    assert elsewhere.server.issuer.issued == 0
    assert not config.simulator_credentials_file.exists()
    assert rows(config, "SELECT count(*) FROM kho.load_ledger") == [(0,)]


def test_the_registry_refusing_kho_s_client_names_the_settings_it_came_from(fresh_db_config: KhoConfig,
                                                                           elsewhere: RunningSimulator) -> None:
    config = pointed_at(fresh_db_config, KHO_REGISTRY_POPULATION_BASE_URL=elsewhere.url,
                        KHO_REGISTRY_POPULATION_CLIENT_ID=AGENCY_CLIENT.client_id,
                        KHO_REGISTRY_POPULATION_CLIENT_SECRET="not the one it issued")
    done = kho(warehouse_env(config), "sync", "population", "citizens")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "401 invalid_client" in lines[0], done.stderr
    assert "KHO_REGISTRY_POPULATION_CLIENT_ID" in lines[0]


def test_kho_sync_against_a_registry_that_refuses_connections_fails_at_once_saying_how_to_start_it(
        fresh_db_config: KhoConfig) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = pointed_at(fresh_db_config, KHO_REGISTRY_POPULATION_BASE_URL=url,
                        KHO_REGISTRY_POPULATION_CLIENT_ID="kho", KHO_REGISTRY_POPULATION_CLIENT_SECRET="s")
    done = kho(warehouse_env(config), "sync", "population", "citizens")
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"kho: error: registry population: nothing answers at {url} (connection refused)")
    assert "`kho simulate serve`" in line and "`kho up`" in line
    logged = (config.home / "logs" / "kho.log").read_text(encoding="utf-8") if (
        config.home / "logs" / "kho.log").exists() else ""
    assert "retry" not in logged, "a refused connection is not retried by a sync a person waits for"
    assert rows(config, "SELECT count(*) FROM kho.load_ledger") == [(0,)]
