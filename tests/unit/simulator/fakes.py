"""A small world that speaks `ServedWorld`, and a hand-advanced clock: server and client tests need neither the
real generator nor real waiting."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kho.config import RegistryCredentials
from kho.sources.contract import Entity, Field
from kho.sources.population import CITIZENS

CLIENT = RegistryCredentials("kho-test", "s3cret+/=")
"""The one client the fake registries accept."""

THINGS = Entity(
    registry="civil_status",
    name="things",
    key=("book", "line"),
    cursor="updated_at",
    fields=(
        Field("book", "text", required=True, max_length=20),
        Field("line", "text", required=True, max_length=20),
        Field("registered_on", "date", required=True),
        Field("note", "text", max_length=200),
        Field("updated_at", "timestamptz", required=True),
    ),
)
"""A second registry's entity with a two-field key, so paging by (updated_at, *key) is tested beyond one key."""

START = datetime(2025, 6, 30, tzinfo=UTC)


def stamp(second: int) -> str:
    return (START + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")


class ManualClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class FakePage:
    records: list[dict[str, str | None]]
    last: tuple[str, ...] | None
    has_more: bool


class FakeWorld:
    """Citizens and things; many records share an updated_at, so the key breaks ties. Thread-safe."""

    def __init__(self, citizens: int = 300, things: int = 200) -> None:
        self._lock = threading.Lock()
        self.day = 0
        self.entities = (CITIZENS, THINGS)
        self._records: dict[str, dict[tuple[str, ...], dict[str, str | None]]] = {
            CITIZENS.name: {(f"{i:012d}",): self._citizen(i) for i in range(citizens)},
            THINGS.name: {(f"B{i % 7}", f"{i:05d}"): self._thing(i) for i in range(things)},
        }
        self._latest = max(r["updated_at"] or "" for rs in self._records.values() for r in rs.values())

    @staticmethod
    def _citizen(i: int) -> dict[str, str | None]:
        return {"cccd": f"{i:012d}", "full_name": f"Nguyễn Văn {i}", "date_of_birth": "1990-02-28",
                "status": "alive", "updated_at": stamp(i // 10)}

    @staticmethod
    def _thing(i: int) -> dict[str, str | None]:
        return {"book": f"B{i % 7}", "line": f"{i:05d}", "registered_on": "2025-06-01", "note": None,
                "updated_at": stamp(i // 25)}

    def _sort_key(self, entity: Entity, record: dict[str, str | None]) -> tuple[str, ...]:
        return (str(record["updated_at"]), *(str(record[k]) for k in entity.key))

    def page(self, entity: Entity, *, updated_since: datetime | None, after: tuple[str, ...] | None,
             limit: int) -> FakePage:
        since = updated_since.strftime("%Y-%m-%dT%H:%M:%SZ") if updated_since is not None else ""
        with self._lock:
            ordered = sorted((self._sort_key(entity, r), dict(r)) for r in self._records[entity.name].values())
        chosen = [(k, r) for k, r in ordered if k[0] >= since and (after is None or k > after)]
        page = chosen[:limit]
        return FakePage([r for _, r in page], page[-1][0] if page else None, len(chosen) > limit)

    def count(self, entity: Entity) -> int:
        with self._lock:
            return len(self._records[entity.name])

    def snapshot(self, entity: Entity) -> list[dict[str, str | None]]:
        with self._lock:
            return sorted((dict(r) for r in self._records[entity.name].values()),
                          key=lambda r: self._sort_key(entity, r))

    def update(self, entity: Entity, every: int, offset: int = 0) -> int:
        """Change every `every`-th record (from `offset`) one second after the latest change; how many changed."""
        with self._lock:
            moment = datetime.strptime(self._latest, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) + timedelta(seconds=1)
            self._latest = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
            keys = sorted(self._records[entity.name])[offset::every]
            for key in keys:
                record = dict(self._records[entity.name][key])
                record["updated_at"] = self._latest
                if "status" in record:
                    record["status"] = "deceased"
                else:
                    record["note"] = f"changed at {self._latest}"
                self._records[entity.name][key] = record
            return len(keys)
