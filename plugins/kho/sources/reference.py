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
CommuneKind = Literal["commune", "ward", "special_zone"]


class Province2025(NamedTuple):
    """A provincial unit after the 2025-07-01 reorganisation."""

    code: str
    name: str
    kind: ProvinceKind


class Commune2025(NamedTuple):
    """A commune-level unit from 2025-07-01 (Công văn 1027/CTK-CSCL): a xã, phường or đặc khu under its province."""

    code: str
    name: str
    kind: CommuneKind
    province_code: str


class CommuneSuccessor(NamedTuple):
    """Where (part of) an old commune went on 2025-07-01; a commune split between several has one row per part."""

    old_commune_code: str
    new_commune_code: str
    new_commune_name: str
    new_province_code: str
    share: Share
    effective_from: date
    source: str

    @property
    def area_only(self) -> bool:
        """The resolution moves only land of the old commune here ('một phần diện tích tự nhiên của xã X'), none of
        its people: a resident of the old commune never lives in this part."""
        return self.source.endswith("(area only)")


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
    """GSO 5-digit commune code → its row (commune_name, district_code, district_name, province_code) for the 10,035
    commune-level units in force until 2025-07-01, the whole country."""
    return MappingProxyType({r["commune_code"]: r for r in _rows("communes.csv")})


def province_of_commune(commune_code: str) -> str:
    """The pre-2025 province code of a commune in communes.csv; KeyError names the code when it is unknown."""
    row = communes().get(commune_code)
    if row is None:
        raise KeyError(f"commune {commune_code!r} is not in communes.csv")
    return row["province_code"]


@cache
def commune_codes() -> frozenset[str]:
    """Pre-2025 codes of every commune (communes.csv); the simulator places people in these."""
    return frozenset(communes())


@cache
def communes_2025() -> Mapping[str, Commune2025]:
    """Code → the 3,321 commune-level units from 2025-07-01 (2,621 xã, 687 phường, 13 đặc khu), communes_2025.csv."""
    kinds: dict[str, CommuneKind] = {"commune": "commune", "ward": "ward", "special_zone": "special_zone"}
    units = {}
    for r in _rows("communes_2025.csv"):
        kind = kinds[r["kind"]]
        units[r["commune_code"]] = Commune2025(r["commune_code"], r["commune_name"], kind, r["province_code"])
    return MappingProxyType(units)


@cache
def commune_mapping_2025() -> Mapping[str, tuple[CommuneSuccessor, ...]]:
    """Old commune code → where it went on 2025-07-01: one successor, or several when the commune was split. Five
    keys are 3-digit district codes: the districts that had no communes (Bạch Long Vĩ 318, Cồn Cỏ 471, Hoàng Sa 498,
    Lý Sơn 536, Côn Đảo 755) became special zones whole."""
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
def commune_predecessors_2025() -> Mapping[str, tuple[CommuneSuccessor, ...]]:
    """New commune code → the mapping rows that lead to it (its predecessors, whole or in part)."""
    found: dict[str, list[CommuneSuccessor]] = {}
    for parts in commune_mapping_2025().values():
        for part in parts:
            found.setdefault(part.new_commune_code, []).append(part)
    return MappingProxyType({code: tuple(parts) for code, parts in found.items()})


def old_communes_of(new_code: str) -> tuple[CommuneSuccessor, ...]:
    """The mapping rows whose successor is `new_code`; KeyError names the code when no row leads to it."""
    found = commune_predecessors_2025()
    if new_code not in found:
        raise KeyError(f"commune {new_code!r} is no successor in commune_mapping_2025.csv")
    return found[new_code]


@cache
def commune_codes_2025() -> frozenset[str]:
    """Post-2025 codes of all 3,321 units (a new unit usually kept one member's old code, so many are old codes too)."""
    return frozenset(communes_2025())


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
