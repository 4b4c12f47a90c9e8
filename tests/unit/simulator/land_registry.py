"""A registry kho does not ship, defined only in the test suite: the province's land registration office.

It joins the catalogue through `KHO_REGISTRY_MODULES=tests.unit.simulator.land_registry` and names its simulation
module, `tests.unit.simulator.land_simulation`: the proof that a registry defined outside kho is simulated, served
and exported with no change to the simulator. The simulation lives in a module of its own because the catalogue
imports this one while `kho.sources` is still being built.
"""

from __future__ import annotations

from kho.sources.contract import UPDATED_AT, Entity, Field
from kho.sources.reference import reference_sets
from kho.sources.registry import Registry

MODULE = __name__
SLUG = "land"

PARCELS = Entity(
    registry=SLUG,
    name="parcels",
    description="Land parcels with a land-use certificate, one per household here, with their surveyed area.",
    key=("parcel_id",),
    cursor="updated_at",
    fields=(
        Field("parcel_id", "text", required=True, pattern=r"LD\d{10}", description="LD and ten digits"),
        Field("household_id", "text", required=True, pattern=r"HK\d{10}", description="The holding household"),
        Field("commune_code", "text", required=True, reference="commune_codes", description="Where it lies"),
        Field("area_m2", "numeric", required=True, minimum=1, maximum=1_000_000, description="Surveyed area"),
        UPDATED_AT,
    ),
    references=reference_sets("commune_codes"),
)

REGISTRY = Registry(
    slug=SLUG,
    name="Provincial land registration office",
    local_name="Văn phòng đăng ký đất đai tỉnh",
    agency="Provincial Department of Agriculture and Environment (Sở Nông nghiệp và Môi trường)",
    schedule="0 4 * * *",
    entities=(PARCELS,),
    simulation="tests.unit.simulator.land_simulation",
)
(PARCELS,) = REGISTRY.entities
