"""Reference data shipped with kho (administrative units, ethnic groups), read from the CSV files beside this module.

Every accessor is cached and returns read-only values: the files are small, read once per process, and shared by
the contracts, the simulator and the tests. Where each fact comes from, and what is unsure, is in reference/README.md.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from datetime import date
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Literal, NamedTuple

REFERENCE_DIR = Path(__file__).parent / "reference"
REORGANISATION_DATE = date(2025, 7, 1)
"""Resolution 202/2025/QH15: 63 provincial units become 34 and districts end; commune mergers take effect too."""

ProvinceKind = Literal["city", "province"]
Share = Literal["whole", "part"]


class Province2025(NamedTuple):
    """A provincial unit after the 2025-07-01 reorganisation."""

    code: str
    name: str
    kind: ProvinceKind


class CommuneSuccessor(NamedTuple):
    """Where (part of) an old commune went on 2025-07-01; a commune split between several has one row per part."""

    old_commune_code: str
    new_commune_code: str
    new_commune_name: str
    new_province_code: str
    share: Share
    effective_from: date
    source: str


@cache
def _rows(name: str) -> tuple[dict[str, str], ...]:
    with (REFERENCE_DIR / name).open(encoding="utf-8", newline="") as fh:
        return tuple(csv.DictReader(fh))


@cache
def provinces() -> Mapping[str, str]:
    """GSO 2-digit province code → name, for the 63 pre-2025 provincial units (CCCD digits 1-3 use these)."""
    return MappingProxyType({r["province_code"]: r["province_name"] for r in _rows("provinces.csv")})


@cache
def province_codes() -> frozenset[str]:
    """The 63 pre-2025 province codes; the 34 new codes are all among them (each new unit kept one old code)."""
    return frozenset(provinces())


@cache
def provinces_2025() -> Mapping[str, Province2025]:
    """Code → the 34 provincial units from 2025-07-01 (6 centrally-run cities, 28 provinces)."""
    units = {}
    for r in _rows("provinces_2025.csv"):
        kind: ProvinceKind = "city" if r["kind"] == "city" else "province"
        units[r["province_code"]] = Province2025(r["province_code"], r["province_name"], kind)
    return MappingProxyType(units)


@cache
def province_codes_2025() -> frozenset[str]:
    return frozenset(provinces_2025())


@cache
def province_mapping_2025() -> Mapping[str, str]:
    """Old (63) province code → the new (34) province code that absorbed it on 2025-07-01."""
    rows = _rows("province_mapping_2025.csv")
    return MappingProxyType({r["old_province_code"]: r["new_province_code"] for r in rows})


def new_province_of(old_code: str) -> str:
    """The post-2025 province of an old province code; KeyError names the code when it is unknown."""
    mapping = province_mapping_2025()
    if old_code not in mapping:
        raise KeyError(f"unknown pre-2025 province code {old_code!r}")
    return mapping[old_code]


@cache
def communes() -> Mapping[str, dict[str, str]]:
    """GSO 5-digit commune code → its row (commune_name, district_code, district_name, province_code), pre-2025."""
    return MappingProxyType({r["commune_code"]: r for r in _rows("communes.csv")})


def province_of_commune(commune_code: str) -> str:
    """The pre-2025 province code of a commune in communes.csv; KeyError names the code when it is unknown."""
    row = communes().get(commune_code)
    if row is None:
        raise KeyError(f"commune {commune_code!r} is not in communes.csv")
    return row["province_code"]


@cache
def commune_codes() -> frozenset[str]:
    """Pre-2025 codes of the communes the simulator places people in (communes.csv)."""
    return frozenset(communes())


@cache
def commune_mapping_2025() -> Mapping[str, tuple[CommuneSuccessor, ...]]:
    """Old commune code → where it went on 2025-07-01: one successor, or several when the commune was split."""
    successors: dict[str, list[CommuneSuccessor]] = {}
    for r in _rows("commune_mapping_2025.csv"):
        share: Share = "part" if r["share"] == "part" else "whole"
        successors.setdefault(r["old_commune_code"], []).append(CommuneSuccessor(
            r["old_commune_code"], r["new_commune_code"], r["new_commune_name"], r["new_province_code"], share,
            date.fromisoformat(r["effective_from"]), r["source"],
        ))
    return MappingProxyType({code: tuple(parts) for code, parts in successors.items()})


def new_communes_of(old_code: str) -> tuple[CommuneSuccessor, ...]:
    """The successors of an old commune; KeyError names the code when the mapping does not cover it."""
    mapping = commune_mapping_2025()
    if old_code not in mapping:
        raise KeyError(f"commune {old_code!r} is not in commune_mapping_2025.csv")
    return mapping[old_code]


@cache
def commune_codes_2025() -> frozenset[str]:
    """Post-2025 codes of the communes our old communes became (a new unit usually kept one member's old code)."""
    return frozenset(s.new_commune_code for parts in commune_mapping_2025().values() for s in parts)


@cache
def known_commune_codes() -> frozenset[str]:
    """Old and new commune codes together: a registry may send either around the reorganisation date."""
    return commune_codes() | commune_codes_2025()


@cache
def ethnicities() -> Mapping[str, str]:
    """GSO 2-digit code (01-54) → name of the 54 recognised ethnic groups (catalogue of Decision 1019/QĐ-TCTK)."""
    return MappingProxyType({r["ethnicity_code"]: r["ethnicity_name"] for r in _rows("ethnicities.csv")})


@cache
def ethnicity_names() -> frozenset[str]:
    """The names registries send in `ethnicity` fields (NFC)."""
    return frozenset(ethnicities().values())


REFERENCE_SETS: Mapping[str, Callable[[], frozenset[str]]] = MappingProxyType({
    "province_codes": province_codes,
    "commune_codes": known_commune_codes,
    "ethnicities": ethnicity_names,
})
"""The named sets a contract field's `reference` may point to, and what each means."""


def reference_sets(*names: str) -> dict[str, frozenset[str]]:
    """The named reference sets an entity carries (its `references`), loaded once."""
    unknown = [n for n in names if n not in REFERENCE_SETS]
    if unknown:
        raise KeyError(f"unknown reference set(s) {', '.join(unknown)}; known: {', '.join(REFERENCE_SETS)}")
    return {name: REFERENCE_SETS[name]() for name in names}
