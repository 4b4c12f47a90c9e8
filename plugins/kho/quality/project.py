"""kho's Great Expectations project, declared once as data under `expectations/`: GX reads it, never writes it.

`expectations/` is a GX file project (`context_root_dir`): `great_expectations.yml` declares the warehouse
datasource, one asset per checked relation and their batch definitions; `suites/<layer>/<table>.json` holds the
expectation suites (GX's own layout); `validation_definitions/` and `checkpoints/` pair each suite with its data.
Everything but the mart suites is generated from the contracts and the mart suites by `kho generate` (and checked
by `kho generate --check`), with ids derived from names, so a run only reads the declarations: nothing is declared
per run and no lock is taken on the hot path.

What GX writes goes under `KHO_GX_HOME` (validation results, Data Docs), named in the declarations as
`${KHO_GX_HOME}`; the warehouse URL, with its password, reaches GX only as `${KHO_GX_WAREHOUSE_URL}` at run time.

- A raw table's asset is its gate view (`gate.<registry>__<entity>`, made by `kho warehouse migrate`): the runner
  opens a validation over a run's batch range, which points the view at that range, and runs the checkpoint, so one
  validation covers every batch the run committed.
- A mart's asset is its build table (`build_mart_<domain>.<table>`), validated whole before publication.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from kho.sources import Entity
from kho.warehouse.migrations import GATE_SCHEMA

DATASOURCE = "kho_warehouse"
URL_VARIABLE = "KHO_GX_WAREHOUSE_URL"
HOME_VARIABLE = "KHO_GX_HOME"
SUITES = "suites"
PROJECT_FILE = "great_expectations.yml"
VALIDATION_DEFINITIONS = "validation_definitions"
CHECKPOINTS = "checkpoints"
WHOLE_TABLE = "whole_table"
RAW_LAYER: Layer = "raw"
MART_LAYER: Layer = "mart"
Layer = Literal["raw", "mart"]
_NAMESPACE = uuid.UUID("6f1d3a52-8c2e-4d0b-9a57-1c5b0e7d2a15")
"""uuid5 namespace of kho's GX ids: an object's id is a function of its name, so regenerating changes nothing."""

RAW_RESULT_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 0}
"""Counts, no samples: GX fetches a sample with one query per expectation, a scan of the whole batch when nothing
is unexpected; kho.quality_flags lists every failing row of a warning instead, and a blocking failure names SQL."""
MART_RESULT_FORMAT: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
"""Marts are small: a sample of what failed helps in Data Docs."""



def object_id(kind: str, name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}/{name}"))


@dataclass(frozen=True)
class Target:
    """One checked relation: its suite, the relation GX reads, and how a run selects its rows."""

    suite: str
    """`<layer>.<table>`: the raw table or the published mart the suite describes."""
    layer: Layer
    schema: str
    table: str
    """What GX reads: the raw table's gate view, or the mart's build table."""

    @property
    def batch_definition(self) -> str:
        """Whole: a raw gate view shows the open validation's rows only, a mart's build table is validated whole."""
        return WHOLE_TABLE

    @property
    def result_format(self) -> dict[str, Any]:
        return RAW_RESULT_FORMAT if self.layer == RAW_LAYER else MART_RESULT_FORMAT

    @property
    def updates_data_docs(self) -> bool:
        """Marts rebuild Data Docs (one build at a time); raw gates run in parallel and leave the site to them."""
        return self.layer != RAW_LAYER


def raw_target(entity: Entity) -> Target:
    return raw_table_target(entity.raw_table)


def raw_table_target(raw_table: str) -> Target:
    """A raw table's gate: GX reads `gate.<table>`, the view of its running validations' rows."""
    return Target(f"{RAW_LAYER}.{raw_table}", RAW_LAYER, GATE_SCHEMA, raw_table)


def mart_target(suite: str, build_prefix: str) -> Target:
    """dbt builds `mart_<domain>` into `<build_prefix>mart_<domain>` (kho.build.publish): GX audits the build."""
    schema, table = suite.split(".", 1)
    return Target(suite, MART_LAYER, build_prefix + schema, table)


def suite_path(project: Path, suite: str) -> Path:
    """Where GX's expectations store keeps a suite: `suites/<layer>/<table>.json`."""
    layer, table = suite.split(".", 1)
    return project / SUITES / layer / f"{table}.json"


def mart_suites(project: Path) -> list[str]:
    """The mart suites written by hand under `suites/mart_<domain>/`, by name."""
    return sorted(f"{p.parent.name}.{p.stem}" for p in (project / SUITES).glob("mart_*/*.json"))


def targets(entities: Iterable[Entity], marts: Iterable[str], build_prefix: str) -> list[Target]:
    return [*(raw_target(e) for e in entities), *(mart_target(m, build_prefix) for m in marts)]


def project_config(all_targets: Sequence[Target]) -> str:
    """great_expectations.yml: stores under the project (declarations) and under ${KHO_GX_HOME} (what runs write),
    one Postgres datasource, an asset per target with its batch definition."""
    assets = {}
    for t in all_targets:
        assets[t.suite] = {
            "type": "table",
            "id": object_id("asset", t.suite),
            "batch_metadata": {},
            "batch_definitions": {t.batch_definition: {"id": object_id("batch_definition", t.suite),
                                                       "partitioner": None}},
            "table_name": t.table,
            "schema_name": t.schema,
        }

    def store(base: str, *, suppress_id: bool = True) -> dict[str, Any]:
        backend: dict[str, Any] = {"class_name": "TupleFilesystemStoreBackend", "base_directory": base}
        if suppress_id:
            backend["suppress_store_backend_id"] = True
        return backend

    config = {
        "config_version": 4.0,
        "config_variables_file_path": None,
        "plugins_directory": None,
        "stores": {
            "expectations_store": {"class_name": "ExpectationsStore", "store_backend": store(f"{SUITES}/")},
            "validation_results_store": {"class_name": "ValidationResultsStore",
                                         "store_backend": store(f"${{{HOME_VARIABLE}}}/validations/")},
            "checkpoint_store": {"class_name": "CheckpointStore", "store_backend": store(f"{CHECKPOINTS}/")},
            "validation_definition_store": {"class_name": "ValidationDefinitionStore",
                                            "store_backend": store(f"{VALIDATION_DEFINITIONS}/")},
        },
        "expectations_store_name": "expectations_store",
        "validation_results_store_name": "validation_results_store",
        "checkpoint_store_name": "checkpoint_store",
        "data_docs_sites": {
            "local_site": {  # GX's site builder on shipped CSS/JS instead of CDNs (kho.quality.datadocs)
                "module_name": "kho.quality.datadocs",
                "class_name": "OfflineSiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": store(f"${{{HOME_VARIABLE}}}/data_docs/local_site/"),
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        },
        "analytics_enabled": False,
        "data_context_id": object_id("project", "kho"),
        "progress_bars": {"globally": False, "metric_calculations": False},
        "fluent_datasources": {
            DATASOURCE: {
                "type": "postgres",
                "id": object_id("datasource", DATASOURCE),
                "connection_string": f"${{{URL_VARIABLE}}}",
                "assets": assets,
            },
        },
    }
    header = ("# Generated by `kho generate` from kho.sources and the mart suites; GX reads it and never writes it.\n"
              "# ${KHO_GX_HOME} (results, Data Docs) and ${KHO_GX_WAREHOUSE_URL} are given at run time.\n")
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=120)


def validation_definition(target: Target) -> str:
    return _json({
        "data": {
            "asset": {"id": object_id("asset", target.suite), "name": target.suite},
            "batch_definition": {"id": object_id("batch_definition", target.suite), "name": target.batch_definition},
            "datasource": {"id": object_id("datasource", DATASOURCE), "name": DATASOURCE},
        },
        "id": object_id("validation_definition", target.suite),
        "name": target.suite,
        "suite": {"id": object_id("suite", target.suite), "name": target.suite},
    })


def checkpoint(target: Target) -> str:
    actions = [{"name": "update_data_docs", "site_names": [], "type": "update_data_docs"}] \
        if target.updates_data_docs else []
    return _json({
        "actions": actions,
        "id": object_id("checkpoint", target.suite),
        "name": target.suite,
        "result_format": target.result_format,
        "validation_definitions": [{"id": object_id("validation_definition", target.suite), "name": target.suite}],
    })


def with_suite_id(current: bytes | None, suite: str) -> bytes:
    """A hand-written mart suite with its GX ids set, the suite's and each expectation's (`kho generate` keeps the
    rest as written): GX refuses to run a checkpoint whose suite has no id, and results are matched to expectations
    by id. Ids are functions of names and positions, like every other."""
    if current is None:
        raise ValueError(f"the mart suite {suite} is missing")
    from kho.quality.suites import with_expectation_ids

    data = json.loads(current.decode("utf-8"))
    expectations = data.get("expectations")
    ordered = {"name": data.get("name"), "id": object_id("suite", suite), **{k: v for k, v in data.items()
                                                                            if k not in ("name", "id")}}
    if isinstance(expectations, list) and all(isinstance(e, dict) for e in expectations):
        ordered["expectations"] = with_expectation_ids(suite, expectations)
    wanted = _json(ordered).encode()
    return current if json.loads(wanted) == data else wanted


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
