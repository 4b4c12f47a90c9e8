"""The dbt project stays in step with kho.sources: the seed is the loader's reference list, the sources file
declares the raw table the loader creates."""

from __future__ import annotations

from typing import Any

import yaml

from kho.config import PROJECT_ROOT
from kho.load.ddl import META_COLUMNS, RAW_SCHEMA
from kho.sources import ENTITIES
from kho.sources.reference import REFERENCE_DIR

DBT = PROJECT_ROOT / "dbt_project"


def _sources() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in (DBT / "models" / "staging").glob("*/_*__sources.yml"):
        for source in yaml.safe_load(path.read_text(encoding="utf-8"))["sources"]:
            found[source["name"]] = source
    return found


def test_seed_ref_communes_is_an_exact_copy_of_the_reference_csv() -> None:
    seed = DBT / "seeds" / "ref_communes.csv"
    assert seed.read_bytes() == (REFERENCE_DIR / "communes.csv").read_bytes(), (
        f"{seed} drifted: copy plugins/kho/sources/reference/communes.csv over it"
    )


def _declared_tables() -> dict[str, dict[str, Any]]:
    return {t["name"]: {**t, "schema": s["schema"]} for s in _sources().values() for t in s["tables"]}


def test_dbt_sources_declare_the_population_citizens() -> None:
    assert "population__citizens" in _declared_tables()


def test_every_declared_dbt_source_has_the_contract_columns_of_its_entity() -> None:
    """A declared raw table must match its contract exactly; entities without staging models are not declared."""
    by_table = {e.raw_table: e for e in ENTITIES}
    declared = _declared_tables()
    assert declared, "no dbt sources declared"
    for name, table in declared.items():
        assert name in by_table, f"dbt declares {name}, which no kho.sources entity loads"
        entity = by_table[name]
        assert table["schema"] == RAW_SCHEMA
        columns = [c["name"] for c in table["columns"]]
        assert columns == [*entity.field_names, *(n for n, _ in META_COLUMNS)], f"{name} drifted from its contract"
