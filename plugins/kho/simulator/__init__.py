"""Synthetic population registry: deterministic citizens with injected defects, served over HTTP.

It reads the same contract (`kho.sources.population.CITIZENS`) as the loader, so the two cannot drift apart;
`ground_truth` says which records the loader must quarantine and why. The HTTP contract is in `server.py`.
"""

from kho.simulator.generate import (
    DEFECT_KINDS,
    EXPECTED_REASON,
    MAX_CITIZENS,
    Defect,
    DefectKind,
    Record,
    citizen,
    generate_citizens,
    generate_with_truth,
    ground_truth,
)
from kho.simulator.server import (
    CITIZENS_PATH,
    DEFAULT_PAGE_SIZE,
    HEALTH_PATH,
    MAX_PAGE_SIZE,
    RunningSimulator,
    decode_cursor,
    encode_cursor,
    serve_forever,
    serve_in_thread,
)
from kho.simulator.world import Page, World

__all__ = [
    "CITIZENS_PATH", "DEFAULT_PAGE_SIZE", "DEFECT_KINDS", "EXPECTED_REASON", "HEALTH_PATH", "MAX_CITIZENS",
    "MAX_PAGE_SIZE", "Defect", "DefectKind", "Page", "Record", "RunningSimulator", "World", "citizen",
    "decode_cursor", "encode_cursor", "generate_citizens", "generate_with_truth", "ground_truth", "serve_forever",
    "serve_in_thread",
]
