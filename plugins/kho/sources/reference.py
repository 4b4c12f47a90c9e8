"""Reference data shipped with kho (administrative units), read from the CSV files beside this module."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

REFERENCE_DIR = Path(__file__).parent / "reference"


@cache
def _rows(name: str) -> tuple[dict[str, str], ...]:
    with (REFERENCE_DIR / name).open(encoding="utf-8", newline="") as fh:
        return tuple(csv.DictReader(fh))


def provinces() -> dict[str, str]:
    """GSO 2-digit province code → name, for the 63 pre-2025 provincial units."""
    return {r["province_code"]: r["province_name"] for r in _rows("provinces.csv")}


def communes() -> dict[str, dict[str, str]]:
    """GSO 5-digit commune code → its row (name, district, province)."""
    return {r["commune_code"]: r for r in _rows("communes.csv")}


def province_codes() -> frozenset[str]:
    return frozenset(provinces())


def commune_codes() -> frozenset[str]:
    return frozenset(communes())
