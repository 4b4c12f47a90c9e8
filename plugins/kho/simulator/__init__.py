"""Synthetic national registries: one seeded, linked, time-varying world with defects and their ground truth.

`generate.py` streams the world (`WorldSpec`, `stream_snapshot`, `stream_changes`, `stream_ground_truth`); `world.py`
serves it in memory for the HTTP API (`World.build`, `advance`, `page`); `server.py` is that API. Records follow the
same contracts (`kho.sources`) as the loader, so the two cannot drift apart: each registry's simulation
(`spec.RegistrySimulation`, in `population.py`, `insurance.py`, `civil_status.py`, `business.py`, or a module of a
registry defined outside kho) renders its entities' fields by their contract names.
"""

from kho.simulator.defects import ALL_DEFECT_KINDS, DEFECT_KINDS, Defect, DefectKind
from kho.simulator.generate import (
    MAX_CITIZENS,
    Record,
    WorldSpec,
    stream_changes,
    stream_ground_truth,
    stream_snapshot,
    write_manifest,
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
    "ALL_DEFECT_KINDS", "CITIZENS_PATH", "DEFAULT_PAGE_SIZE", "DEFECT_KINDS", "HEALTH_PATH", "MAX_CITIZENS",
    "MAX_PAGE_SIZE", "Defect", "DefectKind", "Page", "Record", "RunningSimulator", "World", "WorldSpec",
    "decode_cursor", "encode_cursor", "serve_forever", "serve_in_thread", "stream_changes", "stream_ground_truth",
    "stream_snapshot", "write_manifest",
]
