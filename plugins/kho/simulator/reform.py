"""The 2025-07-01 reorganisation as the simulated registries apply it: new commune codes and new provinces.

Resolution 202/2025/QH15 and the Standing Committee's commune resolutions (kho.sources.reference, reference/README.md)
took effect on 2025-07-01, the day after every world's day 0. So:

- day-0 records (dated up to 2025-06-30) keep the old commune codes;
- every record a registry writes on a day from 2025-07-01 carries the new commune codes, in every commune field,
  including fields an event did not change (the registries converted their addresses, so a record sent in a
  July feed never names an abolished commune);
- a birth registered from 2025-07-01 gets the CCCD prefix of the new province where it is registered (a birth in
  former Bình Dương: 079, TP Hồ Chí Minh), and its birth_province_code says so.

An old commune split between several new ones ("part of the area and population", no shares published) sends
each household (or enterprise) to one of its successors, chosen by a hash of a salt (the household number, or the
record's key) so that a household's members, its record and its events always agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from kho.simulator.rng import hash_py, stream_key
from kho.sources.contract import Entity
from kho.sources.reference import REORGANISATION_DATE, commune_mapping_2025, province_mapping_2025

REFORM_ORD = REORGANISATION_DATE.toordinal()
COMMUNE_REFERENCE = "commune_codes"
"""The reference set of commune fields (`Field.reference`): the fields a conversion rewrites."""
_SALT_KEY = 0x5EF0_2025


@cache
def _successors() -> Mapping[str, tuple[str, ...]]:
    return {old: tuple(part.new_commune_code for part in parts) for old, parts in commune_mapping_2025().items()}


def successor(old_code: str, salt: int) -> str:
    """The new commune an old one's household (or enterprise) `salt` belongs to from 2025-07-01; an old code the
    mapping lacks is a reference-data error, named in the KeyError."""
    parts = _successors().get(old_code)
    if parts is None:
        raise KeyError(f"commune {old_code!r} has no successor in commune_mapping_2025.csv")
    if len(parts) == 1:
        return parts[0]
    return parts[hash_py(_SALT_KEY, salt) % len(parts)]


def code_on(old_code: str, on: int, salt: int) -> str:
    """The code a record dated `on` (a date ordinal) uses for a place that was `old_code` before the reform."""
    return old_code if on < REFORM_ORD else successor(old_code, salt)


def province_on(old_province: int, on: int) -> int:
    """The province code in force on `on` for a place in `old_province` (e.g. Bình Dương 74 → 79 from 2025-07-01)."""
    if on < REFORM_ORD:
        return old_province
    return int(province_mapping_2025()[f"{old_province:02d}"])


def commune_fields(entity: Entity) -> tuple[str, ...]:
    """The fields of `entity` holding a commune code."""
    return tuple(f.name for f in entity.fields if f.reference == COMMUNE_REFERENCE)


def record_salt(record: Mapping[str, str | None], entity: Entity) -> int:
    """The salt that places a record's split communes: its household's number when it names one (so a citizen,
    its household and its membership agree), else its key."""
    household = record.get("household_id")
    if isinstance(household, str) and household[4:].isdigit():
        return int(household[4:])
    return stream_key(_SALT_KEY, "|".join(str(record.get(k)) for k in entity.key))


def converted(record: Mapping[str, str | None], entity: Entity, on: int) -> dict[str, str | None]:
    """The commune fields of a pre-reform record, rewritten on `on`, that change to new codes (none before it).

    Every value is read as an old code: an old code can be a new unit's code too, for another place (old 25750 Phú
    Hòa is not new 25750 Phú Lợi), so a code is never kept merely because it is in force."""
    if on < REFORM_ORD:
        return {}
    salt = record_salt(record, entity)
    out: dict[str, str | None] = {}
    for name in commune_fields(entity):
        value = record.get(name)
        if isinstance(value, str):
            new = successor(value, salt)
            if new != value:
                out[name] = new
    return out
