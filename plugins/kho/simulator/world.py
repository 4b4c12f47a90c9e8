"""The served world: every registry entity in cursor order, for the HTTP API, advanced one published day at a time.

Memory stays compact by keeping, per entity, only the sort keys of what is served: four numpy arrays (updated_at
and key fields as bytes, row id, copy number). A page's records are rebuilt from their row ids when asked for (the
generator is a pure function of the row), so 200,000 citizens with their linked records cost tens of megabytes,
not millions of dicts.

Order and paging: records sort by (updated_at, *key), then by copy number. Copies that share (updated_at, *key)
(an exact or near duplicate, a conflicting update) are never split across pages, because a cursor `after` names
only (updated_at, *key): a page ends before such a group, or, when the group starts the page, holds it whole
(then a page may hold one record more than `limit`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from kho.errors import ConfigError
from kho.simulator import calendar as cal
from kho.simulator.defects import Defect
from kho.simulator.generate import Engine, Record, Served, WorldSpec
from kho.sources.contract import Entity

SortKey = tuple[str, ...]
"""(updated_at, *key): the API's order and the content of its cursor."""


@dataclass(frozen=True)
class Page:
    """One page in cursor order; `last` is the (updated_at, *key) of its last record, for the next `after`."""

    records: list[Record]
    last: SortKey | None
    has_more: bool


@dataclass(frozen=True)
class _Index:
    """Sort keys of one entity's served records, in cursor order."""

    stamps: np.ndarray
    keys: tuple[np.ndarray, ...]
    rows: np.ndarray
    copies: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def sort_key(self, i: int) -> tuple[bytes, ...]:
        return (self.stamps[i], *(k[i] for k in self.keys))


def _index(entity: Entity, served: Iterable[Served]) -> tuple[_Index, list[Defect]]:
    stamps: list[str] = []
    keys: list[list[str]] = [[] for _ in entity.key]
    rows: list[int] = []
    copies: list[int] = []
    defects: list[Defect] = []
    for s in served:
        defects += s.defects
        for n, record in enumerate(s.copies):
            stamps.append(str(record.get("updated_at")))
            for values, name in zip(keys, entity.key, strict=True):
                values.append(str(record.get(name, "")))
            rows.append(s.row)
            copies.append(n)
    return _sorted(_Index(np.array(stamps, dtype="S"), tuple(np.array(k, dtype="S") for k in keys),
                          np.array(rows, dtype=np.int64), np.array(copies, dtype=np.int8))), defects


def _sorted(index: _Index) -> _Index:
    order = np.lexsort((index.copies, *reversed(index.keys), index.stamps))
    return _Index(index.stamps[order], tuple(k[order] for k in index.keys), index.rows[order],
                  index.copies[order])


def _concat(a: _Index, b: _Index) -> _Index:
    return _sorted(_Index(np.concatenate([a.stamps, b.stamps]),
                          tuple(np.concatenate([x, y]) for x, y in zip(a.keys, b.keys, strict=True)),
                          np.concatenate([a.rows, b.rows]), np.concatenate([a.copies, b.copies])))


class World:
    """Every registry entity of one spec, as served at the end of `day`; safe to read from many threads."""

    def __init__(self, spec: WorldSpec) -> None:
        self.spec = spec
        self._engine = Engine(spec)
        self._lock = threading.RLock()
        self._day = 0
        self._truth: list[Defect] = []
        self._indexes: dict[str, _Index] = {}
        for entity in self._engine.entities:
            index, defects = _index(entity, self._engine.snapshot(entity, 0))
            self._indexes[entity.qualified_name] = index
            self._truth += defects

    @classmethod
    def build(cls, spec: WorldSpec) -> World:
        """The world of `spec` at day 0; `advance` publishes its daily feeds."""
        return cls(spec)

    @property
    def entities(self) -> tuple[Entity, ...]:
        """What the world serves: every entity of the catalogue's simulated registries."""
        return self._engine.entities

    @property
    def day(self) -> int:
        """The latest published day (0 = the initial state)."""
        return self._day

    @property
    def ground_truth(self) -> list[Defect]:
        """Every defect served so far (day 0 up to `day`)."""
        with self._lock:
            return list(self._truth)

    def advance(self, to_day: int) -> None:
        """Publish the feeds of the days after `day` up to `to_day`: the served state then includes their changes."""
        with self._lock:
            if to_day < self._day:
                raise ValueError(f"the world is at day {self._day}; it cannot go back to day {to_day}")
            if to_day == self._day:
                return
            engine = self._engine
            engine.reach(to_day)
            for day in range(self._day + 1, to_day + 1):
                self._truth += engine.truth(day)
            touched_days = engine.timeline.touched[self._day:to_day + 1]
            for entity in self._engine.entities:
                name = entity.qualified_name
                if any(engine.injector.drift_on(name, d) for d in range(self._day, to_day + 1)):
                    self._indexes[name] = _index(entity, engine.snapshot(entity, to_day))[0]
                    continue  # a drift day changes how every record of the entity is served, so re-serve all
                rows = sorted({r for day in touched_days for r in day.get(name, [])})
                if not rows:
                    continue
                old = self._indexes[name]
                keep = ~np.isin(old.rows, np.array(rows, dtype=np.int64))
                kept = _Index(old.stamps[keep], tuple(k[keep] for k in old.keys), old.rows[keep], old.copies[keep])
                served = engine.serve_rows(entity, rows, to_day)
                fresh, _ = _index(entity, (served[r] for r in rows if r in served))
                self._indexes[name] = _concat(kept, fresh)
            self._day = to_day

    def count(self, entity: Entity) -> int:
        """Records served for `entity` (duplicates counted twice)."""
        return len(self._index(entity))

    def _index(self, entity: Entity) -> _Index:
        found = self._indexes.get(entity.qualified_name)
        if found is None:
            self._engine.simulation(entity)  # names what is simulated
            raise ConfigError(f"{entity.qualified_name} is not served by this world")
        return found

    def page(self, entity: Entity, *, updated_since: datetime | None = None, after: SortKey | None = None,
             limit: int = 500) -> Page:
        """Up to `limit` records with updated_at >= updated_since and (updated_at, *key) > after, in that order."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if after is not None and len(after) != len(entity.key) + 1:
            raise ValueError(f"after must be (updated_at, {', '.join(entity.key)}), not {after!r}")
        with self._lock:
            index = self._index(entity)
            start = 0
            if updated_since is not None:
                since = cal.timestamp(cal.seconds_of(updated_since)).encode()
                start = int(np.searchsorted(index.stamps, since, side="left"))
            if after is not None:
                start = max(start, _after(index, tuple(v.encode() for v in after)))
            end = _page_end(index, start, limit)
            rows = index.rows[start:end].tolist()
            copies = index.copies[start:end].tolist()
            served = self._engine.serve_rows(entity, sorted(set(rows)), self._day)
            records = [dict(served[r].copies[c]) for r, c in zip(rows, copies, strict=True)]
            last = tuple(v.decode() for v in index.sort_key(end - 1)) if end > start else None
            return Page(records, last, end < len(index))

    def snapshot(self, entity: Entity) -> list[Record]:
        """Every served record of `entity` in cursor order: what a client paging to the end holds (for tests)."""
        out: list[Record] = []
        after: SortKey | None = None
        while True:
            page = self.page(entity, after=after, limit=5000)
            out += page.records
            if not page.has_more or page.last is None:
                return out
            after = page.last


def _after(index: _Index, after: tuple[bytes, ...]) -> int:
    """The first position whose (updated_at, *key) is greater than `after`."""
    lo = int(np.searchsorted(index.stamps, after[0], side="left"))
    hi = int(np.searchsorted(index.stamps, after[0], side="right"))
    while lo < hi:
        mid = (lo + hi) // 2
        if index.sort_key(mid) <= after:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _page_end(index: _Index, start: int, limit: int) -> int:
    """End of a page of `limit` from `start`, never splitting copies that share (updated_at, *key)."""
    end = min(start + limit, len(index))
    if end >= len(index) or end <= start or index.sort_key(end - 1) != index.sort_key(end):
        return end
    tie = index.sort_key(end)
    cut = end - 1
    while cut > start and index.sort_key(cut - 1) == tie:
        cut -= 1
    if cut > start:
        return cut
    while end < len(index) and index.sort_key(end) == tie:
        end += 1
    return end
