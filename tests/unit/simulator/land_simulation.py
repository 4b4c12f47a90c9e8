"""How kho's simulator generates the test suite's land registry (`land_registry.py`): one parcel per household of
the simulated population, and a daily re-survey that changes a parcel's area. Written as an agency would write one
for its own registry: only `kho.simulator.spec`, the shared `Base` facts and the calendar."""

from __future__ import annotations

import random

import numpy as np

from kho.simulator import calendar as cal
from kho.simulator.base import Base, stamp_after
from kho.simulator.rng import I64, unit_np
from kho.simulator.spec import Columns, Defects, EntitySimulation, Event, RegistrySimulation, Rows, per_citizen
from kho.simulator.timeline import Timeline
from tests.unit.simulator.land_registry import PARCELS, REGISTRY

RESURVEY_RATE = 0.01


def parcels(base: Base, ids: I64) -> Columns:
    numbers, first, _ = base.households_of(ids)
    head = base.people(first)
    key = base.key("land.parcels")
    area = 40 + np.floor(460 * unit_np(key, numbers, 0)).astype(np.int64)
    return numbers, {
        "parcel_id": [f"LD{n:010d}" for n in numbers.tolist()],
        "household_id": base.household_codes(numbers),
        "commune_code": base.commune_codes(head.commune),
        "area_m2": [str(a) for a in area.tolist()],
        "updated_at": cal.timestamps(stamp_after(key, numbers, 1, head.joined_on + 1)),
    }


def resurvey(t: Timeline, rng: random.Random, at: int) -> None:
    """A household's parcel is surveyed again and its area corrected."""
    if not t.base.citizens:
        return
    household = int(t.base.people(np.array([rng.randrange(t.base.citizens)], dtype=np.int64)).household[0])
    t.write(PARCELS, household, {"area_m2": str(40 + rng.randrange(460)), "updated_at": cal.timestamp(at)})


SIMULATION = RegistrySimulation(
    registry=REGISTRY,
    entities=(EntitySimulation(PARCELS, Rows("household"), parcels,
                               Defects(id_field="parcel_id", conflict_field="commune_code",
                                       commune_field="commune_code")),),
    added_field="cadastral_sheet",
    events=(Event("resurvey", RESURVEY_RATE, per_citizen, resurvey),),
)
