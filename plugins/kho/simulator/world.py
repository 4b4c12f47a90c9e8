"""The registry's current state: the citizens the simulator serves, kept in cursor order and changed on demand.

Held in memory and sorted by (updated_at, cccd), the order the API pages in, so a page is two bisections and a
slice. One lock guards it: the HTTP server reads from many threads while a test changes records.
"""

from __future__ import annotations

import bisect
import random
import re
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kho.simulator.generate import (
    DEFECT_KINDS,
    UPDATED_TO,
    Defect,
    DefectKind,
    Record,
    generate_with_truth,
)
from kho.sources.reference import commune_codes

SortKey = tuple[str, str]
"""(updated_at, cccd): the order of the API and the content of its cursor."""

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
"""One fixed form of updated_at, so that comparing the strings compares the instants."""
_MOVE_SHARE = 0.9
"""Of the records `touch` changes, this share move commune; the rest die."""
_COMMUNES = tuple(sorted(commune_codes()))


def timestamp_key(moment: datetime) -> str:
    """`moment` as an updated_at string, rounded up to the second so '>= moment' keeps its meaning."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; give an aware datetime (UTC or with an offset)")
    try:
        moment = moment.astimezone(UTC)
        if moment.microsecond:
            moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is outside the years 0001-9999 once moved to UTC") from None
    # Formatted by hand: strftime does not zero-pad years before 1000 on every platform.
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
            f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z")


@dataclass(frozen=True)
class Page:
    """One page of records in cursor order, and where the next page starts (None when nothing follows).

    The records are the world's own (shared, to keep serving cheap): read them, do not change them.
    """

    records: list[Record]
    next_after: SortKey | None


class World:
    """The population registry's records, as served; build with `World.generate` or from records."""

    def __init__(self, records: Iterable[Mapping[str, str | None]], *, seed: int = 0,
                 defects: Iterable[Defect] = ()) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._touches = 0
        self._defects = tuple(defects)
        self._records: dict[str, Record] = {}
        for record in records:
            cccd, updated_at = record.get("cccd"), record.get("updated_at")
            if not isinstance(cccd, str) or cccd in self._records:
                raise ValueError(f"every record needs a unique cccd to be served; {cccd!r} is missing or repeated")
            if not isinstance(updated_at, str) or not _TIMESTAMP.fullmatch(updated_at):
                raise ValueError(f"record {cccd}: updated_at {updated_at!r} is not YYYY-MM-DDTHH:MM:SSZ")
            self._records[cccd] = dict(record)
        self._order: list[SortKey] = sorted((str(r["updated_at"]), c) for c, r in self._records.items())

    @classmethod
    def generate(cls, seed: int, count: int, *, defect_rate: float = 0.0,
                 defect_kinds: Collection[DefectKind] = DEFECT_KINDS) -> World:
        """The world `generate_citizens` describes, with its ground truth kept in `defects`."""
        records: list[Record] = []
        defects: list[Defect] = []
        for record, defect in generate_with_truth(seed, count, defect_rate=defect_rate, defect_kinds=defect_kinds):
            records.append(record)
            if defect is not None:
                defects.append(defect)
        return cls(records, seed=seed, defects=defects)

    @property
    def defects(self) -> tuple[Defect, ...]:
        """The injected defects; `touch` never changes a defective record, so this stays true."""
        return self._defects

    def __len__(self) -> int:
        return len(self._order)

    def get(self, cccd: str) -> Record | None:
        with self._lock:
            record = self._records.get(cccd)
            return dict(record) if record is not None else None

    def snapshot(self) -> list[Record]:
        """Every record as it is now, in cursor order: what a client that pages to the end should hold."""
        with self._lock:
            return [dict(self._records[cccd]) for _, cccd in self._order]

    @property
    def latest_updated_at(self) -> str | None:
        with self._lock:
            return self._order[-1][0] if self._order else None

    def page(self, *, updated_since: datetime | None = None, after: SortKey | None = None,
             limit: int = 500) -> Page:
        """Up to `limit` records with updated_at >= updated_since and sort key > after, in cursor order."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        with self._lock:
            start = 0
            if updated_since is not None:
                start = bisect.bisect_left(self._order, (timestamp_key(updated_since), ""))
            if after is not None:
                start = max(start, bisect.bisect_right(self._order, after))
            keys = self._order[start:start + limit]
            # Records are replaced, never mutated, so the page can hold them after the lock is released.
            records = [self._records[cccd] for _, cccd in keys]
            more = start + limit < len(self._order)
        return Page(records=records, next_after=keys[-1] if more and keys else None)

    def touch(self, n: int, at: datetime | None = None) -> list[Record]:
        """Change `n` clean, living citizens at `at` (default: a second after the latest change); return them.

        Most move to another commune, some die. The choice depends only on the seed and how many touches came
        before, so a test replays the same history. The clock never goes back: `at` may not precede the latest
        change, which is what lets a client that keeps paging reach every change.
        """
        with self._lock:
            latest = self._order[-1][0] if self._order else UPDATED_TO.strftime(TIMESTAMP_FORMAT)
            stamp = timestamp_key(at) if at is not None else _next_second(latest)
            if stamp < latest:
                raise ValueError(f"touch at {stamp} precedes the latest change {latest}; the registry's clock "
                                 "does not go back: omit `at` or give a later time")
            defective = {d.key for d in self._defects}
            eligible = sorted(c for c, r in self._records.items() if c not in defective and r["status"] == "alive")
            if not 0 <= n <= len(eligible):
                raise ValueError(f"cannot touch {n} records: {len(eligible)} are clean and alive")
            rng = random.Random(f"kho.simulator.population:{self._seed}:touch:{self._touches}")
            self._touches += 1
            changed = [self._change(rng, cccd, stamp) for cccd in rng.sample(eligible, n)]
            return [dict(record) for record in changed]

    def _change(self, rng: random.Random, cccd: str, stamp: str) -> Record:
        """Replace one record by its changed copy and move its sort key; the caller holds the lock."""
        old = self._records[cccd]
        new = dict(old)
        if rng.random() < _MOVE_SHARE:
            new["permanent_commune_code"] = rng.choice([c for c in _COMMUNES if c != old["permanent_commune_code"]])
        else:
            new["status"] = "deceased"
        new["updated_at"] = stamp
        del self._order[bisect.bisect_left(self._order, (str(old["updated_at"]), cccd))]
        bisect.insort(self._order, (stamp, cccd))
        self._records[cccd] = new
        return new


def _next_second(stamp: str) -> str:
    moment = datetime.strptime(stamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    return (moment + timedelta(seconds=1)).strftime(TIMESTAMP_FORMAT)
