"""The dbt project stays in step with kho.sources and with what publishing needs: generated staging views carry
every column (`kho generate --check` keeps the committed files current, tests/unit/test_generate.py); every mart
has a primary key, documented columns and a GX suite; personal columns carry the masking agencies' access reads,
name columns the Vietnamese collation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kho import generate
from kho.build import project
from kho.config import PROJECT_ROOT
from kho.load.ddl import META_COLUMNS
from kho.sources import ENTITIES

DBT = PROJECT_ROOT / "dbt_project"
MARTS = DBT / "models" / "marts"


def test_every_raw_table_has_a_staging_view_with_every_column(tmp_path: Path) -> None:
    written = {stale.path for stale in generate.write(tmp_path)}
    for entity in ENTITIES:
        sql = Path("dbt_project", "models", "staging", entity.registry, f"stg_{entity.registry}__{entity.name}.sql")
        assert sql in written
        text = (tmp_path / sql).read_text(encoding="utf-8")
        for name in (*entity.field_names, *(project.META_RENAMES[n] for n, _ in META_COLUMNS)):
            assert f" as {name}," in text or f" as {name}\n" in text, f"{sql} drops {name}"


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
    suites = {f"{p.parent.name}.{p.stem}" for p in (PROJECT_ROOT / "expectations" / "suites").glob("mart_*/*.json")}
    assert suites == set(_mart_models())


def test_every_mart_folder_builds_into_its_private_build_schema() -> None:
    config = yaml.safe_load((DBT / "dbt_project.yml").read_text(encoding="utf-8"))["models"]["kho"]["marts"]
    domains = {p.name for p in MARTS.iterdir() if p.is_dir()}
    assert {d: config[d]["+schema"] for d in domains} == {d: f"build_mart_{d}" for d in domains}


# --- what agencies' access reads from the marts' yml --------------------------------------------------------------

PII_LEVELS = frozenset({"direct", "quasi"})
MASKS = {"identifier": "text", "initials": "text", "year": "date", "hide": None}
"""The masks agencies' masked views apply, and the column type each fits (None: any)."""
SOURCE_PII = {f.name: f.pii for e in ENTITIES for f in e.fields if f.pii != "none"}
PERSONAL_COLUMN = re.compile(r"(cccd|full_name|date_of_birth|date_of_death|social_insurance_code|address(_line)?)$")
"""A mart column named like a person's CCCD, name, birth or death date, social insurance code or street address."""
UNMASKED_QUASI = frozenset({"sex", "ethnicity"})
"""Quasi-identifiers of kho.sources the marts publish in clear: the issue masks CCCDs, social insurance codes,
names, dates of birth and addresses only, and the statistics agencies read are by sex and ethnicity."""
FREE_TEXT_ABOUT_PEOPLE = {
    "mart_audit.cross_registry_contradictions": {"detail", "subject_record", "event_date", "finding_id"},
}
"""Columns no name gives away: the audit's sentence quotes CCCDs and dates of birth and death, a membership's
subject_record holds the member's CCCD, event_date is a person's date of birth, death or marriage, and finding_id
is an md5 over keys that include a CCCD (a CCCD's few unknown digits are quickly guessed back from it)."""


def _marking(column: dict[str, Any]) -> dict[str, Any]:
    """A column's dbt meta, top-level or under config (dbt merges both into the manifest)."""
    return {**(column.get("meta") or {}), **((column.get("config") or {}).get("meta") or {})}


def _mart_columns() -> list[tuple[str, dict[str, Any]]]:
    return [(name, column) for name, model in _mart_models().items() for column in model["columns"]]


def test_every_personal_column_of_a_mart_is_marked_for_masking() -> None:
    direct = {name for name, pii in SOURCE_PII.items() if pii == "direct"}
    unmarked = [f"{mart}.{c['name']}" for mart, c in _mart_columns()
                if (c["name"] in direct or PERSONAL_COLUMN.search(c["name"])
                    or c["name"] in FREE_TEXT_ABOUT_PEOPLE.get(mart, ()))
                and not {"pii", "mask"} <= set(_marking(c))]
    assert not unmarked, f"personal columns without meta: {{pii, mask}} (agencies would read them in clear): {unmarked}"


def test_every_marking_has_the_shape_masking_reads_and_agrees_with_kho_sources() -> None:
    marked = [(mart, c, _marking(c)) for mart, c in _mart_columns() if {"pii", "mask"} & set(_marking(c))]
    assert marked, "no mart column is marked: masking would show everything"
    for mart, column, meta in marked:
        where = f"{mart}.{column['name']}: meta {meta}"
        assert set(meta) == {"pii", "mask"}, f"{where}: exactly pii and mask"
        assert meta["pii"] in PII_LEVELS and meta["mask"] in MASKS, where
        assert MASKS[meta["mask"]] in (None, column["data_type"]), f"{where}: a {column['data_type']} column"
        name = column["name"]
        if name.endswith("cccd") or name == "social_insurance_code":
            assert meta == {"pii": "direct", "mask": "identifier"}, where
        elif name in SOURCE_PII:
            assert meta["pii"] == SOURCE_PII[name], f"{where}: kho.sources says pii={SOURCE_PII[name]}"
        if name.endswith("full_name"):
            assert meta == {"pii": "direct", "mask": "initials"}, where


def test_quasi_identifiers_left_in_clear_are_the_ones_named() -> None:
    clear = {c["name"] for _, c in _mart_columns() if c["name"] in SOURCE_PII and not _marking(c)}
    assert clear <= UNMASKED_QUASI and all(SOURCE_PII[n] == "quasi" for n in UNMASKED_QUASI)


NAME_COLUMN = re.compile(r"(^|_)name(_pre_2025|_2025)?$")
"""A name column of a mart: a person's, a commune's, district's or province's, an enterprise's."""
VIETNAMESE = {"type": "custom", "expression": "collate reference.vietnamese"}


def test_name_columns_and_only_they_sort_in_vietnamese_order() -> None:
    """`collate` must come first: PostgreSQL wants it right after the type, before not null (dbt renders the
    constraints in their order); the contract's data_type stays text."""
    for mart, column in _mart_columns():
        constraints = column.get("constraints") or []
        if NAME_COLUMN.search(column["name"]):
            assert constraints[:1] == [VIETNAMESE] and column["data_type"] == "text", f"{mart}.{column['name']}"
        else:
            assert VIETNAMESE not in constraints, f"{mart}.{column['name']} is not a name"
    hooks = yaml.safe_load((DBT / "dbt_project.yml").read_text(encoding="utf-8"))["on-run-start"]
    assert "{{ kho_vietnamese_collation() }}" in hooks


def test_marts_persist_their_descriptions_as_comments() -> None:
    """Agencies' SQL tools show table and column comments; dbt writes them (persist_docs) and publishing copies them."""
    models = yaml.safe_load((DBT / "dbt_project.yml").read_text(encoding="utf-8"))["models"]["kho"]
    assert models["+persist_docs"] == {"relation": True, "columns": True}
    assert all("+persist_docs" not in config for config in models["marts"].values() if isinstance(config, dict))
    for name, model in _mart_models().items():
        assert str(model.get("description", "")).strip(), f"{name} has no description"
