"""Injected faults: the ways a real registry fails a client (5xx, slow answers, dropped connections), on purpose.

A testing aid. Each data request draws one fault (or none) from a seeded generator, so the same seed and the
same sequence of requests give the same faults: a test can assert "about 20 % of 500 requests failed" and get
the same count on every run.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["error", "slow", "drop"]
ERROR_STATUSES: tuple[int, ...] = (500, 502, 503)


@dataclass(frozen=True)
class FaultSpec:
    """Shares of data requests that fail, each way; the shares are exclusive, so they may add up to at most 1."""

    error_rate: float = 0.0
    """Answered 500, 502 or 503 with a JSON error body (503 also says Retry-After)."""
    slow_rate: float = 0.0
    """Answered correctly, but only after `slow_seconds`."""
    slow_seconds: float = 2.0
    drop_rate: float = 0.0
    """The connection is closed after the request is read, without any response."""
    seed: int = 0

    def __post_init__(self) -> None:
        rates = {"error_rate": self.error_rate, "slow_rate": self.slow_rate, "drop_rate": self.drop_rate}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be a share from 0 to 1, not {rate}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"error_rate + slow_rate + drop_rate is {sum(rates.values()):g}; at most 1 request "
                             "in 1 can fail")
        if self.slow_seconds < 0:
            raise ValueError(f"slow_seconds must not be negative, not {self.slow_seconds}")

    @property
    def active(self) -> bool:
        return self.error_rate > 0 or self.slow_rate > 0 or self.drop_rate > 0


@dataclass(frozen=True)
class Fault:
    """What happens to one request: the kind, and for errors the status to answer."""

    kind: FaultKind
    status: int = 0


class FaultInjector:
    """Draws the fault of each request in arrival order from one seeded generator (thread-safe)."""

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._rng = random.Random(f"kho.simulator.faults:{spec.seed}")
        self._lock = threading.Lock()
        self.counts: dict[FaultKind, int] = {"error": 0, "slow": 0, "drop": 0}
        """Faults injected so far, by kind: what a test compares with what its client saw."""

    def draw(self) -> Fault | None:
        """The next request's fault, or None to serve it normally."""
        spec = self.spec
        with self._lock:
            u = self._rng.random()
            status = self._rng.choice(ERROR_STATUSES)
            fault: Fault | None = None
            if u < spec.drop_rate:
                fault = Fault("drop")
            elif u < spec.drop_rate + spec.error_rate:
                fault = Fault("error", status)
            elif u < spec.drop_rate + spec.error_rate + spec.slow_rate:
                fault = Fault("slow")
            if fault is not None:
                self.counts[fault.kind] += 1
        return fault
