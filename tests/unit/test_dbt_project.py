"""The dbt project stays in step with kho.sources: the seed is the loader's reference list, the sources file
declares the raw table the loader creates."""

from __future__ import annotations

from typing import Any

import pytest
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


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.qualified_name)
def test_dbt_source_declares_the_raw_table_with_the_contract_columns(entity) -> None:
    source = _sources().get(entity.registry)
    assert source is not None, f"no dbt source {entity.registry!r} under dbt_project/models/staging/"
    assert source["schema"] == RAW_SCHEMA
    tables = {t["name"]: t for t in source["tables"]}
    assert entity.raw_table in tables
    columns = [c["name"] for c in tables[entity.raw_table]["columns"]]
    assert columns == [*entity.field_names, *(name for name, _ in META_COLUMNS)]
