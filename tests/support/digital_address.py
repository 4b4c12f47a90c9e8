"""A fifth registry that exists only in the test suite: the province's digital-address platform.

It joins kho's catalogue through `KHO_REGISTRY_MODULES=tests.support.digital_address`, with no product file naming
it: the proof that adding a registry is one module. Beside the registry, what tests need to feed it: records
(`addresses`, `address_points`), a CSV export file, and a tiny world the simulator's HTTP server can serve.
"""

from __future__ import annotations

import csv
import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kho.sources.contract import UPDATED_AT, Entity, Field, SchemaDrift
from kho.sources.reference import commune_codes_2025, reference_sets
from kho.sources.registry import Paging, Registry

MODULE = __name__
"""What KHO_REGISTRY_MODULES names to add this registry."""
SLUG = "digital_address"
ADDRESS_CODE = r"DA\d{10}"

ADDRESSES = Entity(
    registry=SLUG,
    name="addresses",
    description="Digital addresses (địa chỉ số): one code per dwelling or business place, with its commune.",
    key=("address_code",),
    cursor="updated_at",
    fields=(
        Field("address_code", "text", required=True, pattern=ADDRESS_CODE,
              description="Digital address code, DA followed by 10 digits"),
        Field("commune_code", "text", required=True, reference="commune_codes",
              description="GSO 5-digit code of the commune"),
        Field("street_address", "text", max_length=250, description="House number, street, hamlet"),
        UPDATED_AT,
    ),
    references=reference_sets("commune_codes"),
)
"""Inherits the registry's drift policy."""

ADDRESS_POINTS = Entity(
    registry=SLUG,
    name="address_points",
    description="Where a digital address is on the map (WGS 84), as the platform surveyed it.",
    key=("address_code",),
    cursor="updated_at",
    fields=(
        Field("address_code", "text", required=True, pattern=ADDRESS_CODE, description="The address located"),
        Field("latitude", "numeric", required=True, minimum=8.0, maximum=24.0, description="Degrees north"),
        Field("longitude", "numeric", required=True, minimum=102.0, maximum=110.0, description="Degrees east"),
        UPDATED_AT,
    ),
    drift=SchemaDrift.FREEZE,
)
"""Sets its own drift policy: a surveyed point with an unknown field is refused, not guessed at."""

REGISTRY = Registry(
    slug=SLUG,
    name="Provincial digital-address platform",
    local_name="Nền tảng địa chỉ số tỉnh",
    agency="Provincial Department of Science and Technology (Sở Khoa học và Công nghệ)",
    schedule="0 3 * * 1-5",
    drift=SchemaDrift.DISCARD_EXTRA,
    paging=Paging(page_size=25, pages_per_batch=2),
    entities=(ADDRESSES, ADDRESS_POINTS),
)
ADDRESSES, ADDRESS_POINTS = ENTITIES = REGISTRY.entities

START = dt.datetime(2025, 7, 1, 8, tzinfo=dt.UTC)


def records(entity: Entity, count: int) -> list[dict[str, str | None]]:
    """`count` valid records of `entity` in wire form (ISO instants), a few seconds apart."""
    communes = sorted(commune_codes_2025())  # records written after the 2025 reorganisation carry its units
    out: list[dict[str, str | None]] = []
    for i in range(count):
        stamp = (START + dt.timedelta(seconds=i // 3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        code = f"DA{i:010d}"
        if entity.name == "addresses":
            out.append({"address_code": code, "commune_code": communes[i % len(communes)],
                        "street_address": f"Số {i + 1}, đường Trần Phú", "updated_at": stamp})
        else:
            out.append({"address_code": code, "latitude": f"{10 + i % 10 / 10:.4f}",
                        "longitude": f"{105 + i % 7 / 10:.4f}", "updated_at": stamp})
    return out


def write_csv(path: Path, entity: Entity, rows: list[dict[str, str | None]]) -> Path:
    """An export file of `rows`, header first, as `kho load` reads one."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(entity.field_names))
        writer.writeheader()
        writer.writerows(rows)
    return path


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    last: tuple[str, ...] | None
    has_more: bool


class Platform:
    """The platform's records behind the simulator's HTTP server (`ServedWorld`), in (updated_at, *key) order."""

    day = 0

    def __init__(self, count: int) -> None:
        self.entities = REGISTRY.entities
        self._lock = threading.Lock()
        self._records = {e.name: records(e, count) for e in self.entities}

    @staticmethod
    def _order(entity: Entity, record: dict[str, Any]) -> tuple[str, ...]:
        return (str(record["updated_at"]), *(str(record[k]) for k in entity.key))

    def page(self, entity: Entity, *, updated_since: dt.datetime | None, after: tuple[str, ...] | None,
             limit: int) -> Page:
        since = updated_since.strftime("%Y-%m-%dT%H:%M:%SZ") if updated_since is not None else ""
        with self._lock:
            ordered = sorted((self._order(entity, r), r) for r in self._records[entity.name])
        chosen = [(k, r) for k, r in ordered if k[0] >= since and (after is None or k > after)]
        page = chosen[:limit]
        return Page([dict(r) for _, r in page], page[-1][0] if page else None, len(chosen) > limit)

    def count(self, entity: Entity) -> int:
        with self._lock:
            return len(self._records[entity.name])
