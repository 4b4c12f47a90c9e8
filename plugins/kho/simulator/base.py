"""Day-0 facts every registry's records are rendered from, many rows at a time: the machinery the registries'
simulations (`population.py`, `insurance.py`, `civil_status.py`, `business.py`) share.

Each entity has an integer row-id space derived from the citizen (or enterprise) it belongs to (`spec.Rows`), so
that a row's record is a pure function of (seed, row id): a citizen's k-th coverage period is row 4 * index + k, a
household is numbered block * 16 + position. A renderer takes candidate ids (any order), drops those that do not
exist and returns the records of the rest, so the same code streams a snapshot in id order and rebuilds one page of
records in cursor order for the HTTP API.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from kho.simulator import anomalies
from kho.simulator import calendar as cal
from kho.simulator.people import BLOCK, GEOGRAPHY, HOME_PROVINCE, CccdIndex, Citizens, Model
from kho.simulator.rng import B1, I64, stream_key, unit_np
from kho.simulator.spec import Rows

CHUNK = 4096
"""Citizens (or enterprises) rendered per step of a stream: large enough for numpy, small enough for memory."""
CITIZENS_PER_ENTERPRISE = 40
"""Bình Dương has roughly one registered enterprise per 45 residents."""
DAY0_END = cal.DAY0_END


def stamp_after(key: int, ids: I64, slot: int, after_ord: I64) -> I64:
    """Seconds of a last change, uniform from the start of `after_ord` (at least 2020-01-01) to the end of day 0
    (`DAY0_END`, in Vietnam)."""
    start = cal.ords_to_seconds(np.clip(after_ord, cal.HISTORY_FROM_ORD, cal.DAY0_ORD))
    return start + np.floor((DAY0_END + 1 - start) * unit_np(key, ids, slot)).astype(np.int64)


def between(key: int, ids: I64, slot: int, lo: I64, hi: I64) -> I64:
    """A date ordinal uniform in [lo, hi] (hi below lo gives lo)."""
    span = np.maximum(hi - lo, 0) + 1
    return lo + np.floor(span * unit_np(key, ids, slot)).astype(np.int64)


def take(p: Citizens, mask: B1) -> Citizens:
    """The citizens where `mask` holds."""
    return Citizens(**{name: getattr(p, name)[mask] for name in p.__dataclass_fields__})


class Base:
    """The day-0 facts of world (seed, citizens) that more than one registry's records read."""

    def __init__(self, seed: int, citizens: int, anomaly_rates: Mapping[str, float] | None = None) -> None:
        self.seed = seed
        self.citizens = citizens
        self.enterprises = citizens // CITIZENS_PER_ENTERPRISE
        self.model = Model(seed, citizens)
        self.anomaly_rates: dict[str, float] = dict(anomaly_rates or {})
        """Per cross-registry anomaly kind (and flagged defect an event injects, `anomalies.FlaggedKind`), the share
        of eligible rows that carry it (`anomalies.py`)."""
        self._index: CccdIndex | None = None
        self._keys: dict[str, int] = {}

    def key(self, stream: str) -> int:
        """The key of draw stream `base.<stream>` (e.g. `base.households`) of this world."""
        known = self._keys.get(stream)
        if known is None:
            known = self._keys[stream] = stream_key(self.seed, f"base.{stream}")
        return known

    def rate(self, kind: str) -> float:
        """The share of eligible rows carrying anomaly (or flagged defect) `kind` (0 when the world injects none)."""
        return self.anomaly_rates.get(kind, 0.0)

    @property
    def index(self) -> CccdIndex:
        """The CCCD rank index, built on first use (one vectorised pass over every citizen)."""
        if self._index is None:
            self._index = CccdIndex(self.model, self.citizens)
        return self._index

    def people(self, index: I64) -> Citizens:
        return self.model.citizens(index)

    def cccd(self, people: Citizens) -> list[str]:
        return [f"{v:012d}" for v in self.index.cccd_numbers(people).tolist()]

    def cccd_of(self, index: I64) -> list[str | None]:
        """CCCDs of citizens by index; -1 gives None (no such person)."""
        present = index >= 0
        out: list[str | None] = [None] * len(index)
        if present.any():
            where = np.flatnonzero(present)
            for pos, text in zip(where.tolist(), self.cccd(self.people(index[present])), strict=True):
                out[pos] = text
        return out

    def household_codes(self, households: I64) -> list[str]:
        return [f"HK{HOME_PROVINCE}{h:08d}" for h in households.tolist()]

    def commune_codes(self, communes: I64) -> list[str | None]:
        codes = GEOGRAPHY.communes
        return [codes[c] if c >= 0 else None for c in communes.tolist()]

    def household_slots(self, households: I64) -> tuple[I64, I64]:
        """(first citizen, size) of each candidate household number; size 0 where no such household exists."""
        blocks = households // BLOCK
        unique, inverse = np.unique(blocks, return_inverse=True)
        sizes, starts = self.model.partition(unique)
        local = households % BLOCK
        return blocks * BLOCK + starts[inverse, local], sizes[inverse, local]

    def households_of(self, households: I64) -> tuple[I64, I64, I64]:
        """(existing households, their first citizen, their size) among candidate household numbers."""
        first, size = self.household_slots(households)
        exists = size > 0
        return households[exists], first[exists], size[exists]

    def odd_heads(self, households: I64, size: I64) -> tuple[B1, B1]:
        """(anomalous, two heads) of households: the `household_without_one_head` anomaly of day 0, which the
        population's records carry and the daily events respect (nobody dies or marries in such a household)."""
        return anomalies.odd_heads(self.key("anomaly"), households, size, self.rate("household_without_one_head"))

    def candidate_chunks(self, rows: Rows) -> Iterator[I64]:
        """Candidate row ids of an entity's day-0 rows, ascending, a chunk at a time."""
        if rows.per == "household":
            blocks_per_chunk = CHUNK // BLOCK
            blocks = -(-self.citizens // BLOCK)
            for lo in range(0, blocks, blocks_per_chunk):
                hi = min(lo + blocks_per_chunk, blocks)
                yield self.model.households_of_blocks(np.arange(lo, hi, dtype=np.int64))[0]
            return
        total = self.enterprises if rows.per == "enterprise" else self.citizens
        for lo in range(0, total, CHUNK):
            hi = min(lo + CHUNK, total)
            yield np.arange(lo * rows.fanout, hi * rows.fanout, dtype=np.int64)
