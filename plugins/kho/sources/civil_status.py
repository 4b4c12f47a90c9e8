"""The civil status registry (hộ tịch, Law on Civil Status 60/2014/QH13): births, marriages, deaths.

Registrations are legal acts: an unknown field means the registry changed its form, so drift freezes the batch
rather than guessing what the new field means.
"""

from __future__ import annotations

import pyarrow as pa

from kho.sources.contract import UPDATED_AT, Entity, Field, PiiLevel, RowCheck, SchemaDrift
from kho.sources.identity import cccd_contradicts_sex_and_year, cccd_field
from kho.sources.reference import reference_sets
from kho.sources.registry import Registry
from kho.sources.rules import date_order_check, younger_than

SLUG = "civil_status"
SEX = frozenset({"M", "F"})
MIN_MARRIAGE_AGE = {"husband": 20, "wife": 18}
"""Law on Marriage and Family 52/2014/QH13 art. 8: men from full 20 years, women from full 18."""
FULL_NAME_MAX_LENGTH = 100
"""As the population registry's full names (`kho.sources.population.FULL_NAME_MAX_LENGTH`)."""


def _registration_id(prefix: str, what: str) -> Field:
    return Field("registration_id", "text", required=True, pattern=rf"{prefix}\d{{12}}",
                 description=f"{what} registration number, {prefix} followed by 12 digits")


def _past(name: str, description: str, *, pii: PiiLevel = "none") -> Field:
    """A required date of something that had happened when the registry recorded it: not after updated_at."""
    return Field(name, "date", required=True, pii=pii, days_after_update=0,
                 description=f"{description}; not after updated_at")


def _place() -> Field:
    return Field("place_commune_code", "text", required=True, reference="commune_codes",
                 description="GSO 5-digit code of the commune where the event was registered")


def _under_age(party: str) -> RowCheck:
    years = MIN_MARRIAGE_AGE[party]

    def violates(t: pa.Table) -> pa.ChunkedArray:
        return younger_than(t.column(f"{party}_date_of_birth"), t.column("registered_on"), years)

    return RowCheck(
        name=f"{party}_of_marriageable_age",
        code="inconsistent",
        message=f"inconsistent marriage: the {party} is under {years} on registered_on",
        violates=violates,
        needs=(f"{party}_date_of_birth", "registered_on"),
    )


BIRTHS = Entity(
    registry=SLUG,
    name="births",
    description="Birth registrations (khai sinh): the child, the parents' CCCDs and the place.",
    key=("registration_id",),
    cursor="updated_at",
    fields=(
        _registration_id("KS", "Birth"),
        cccd_field("child_cccd", "CCCD issued to the child at registration"),
        Field("child_full_name", "text", required=True, normalise_nfc=True, pii="direct",
              max_length=FULL_NAME_MAX_LENGTH, description="Child's full name, NFC; at most 100 characters"),
        Field("child_sex", "text", required=True, allowed=SEX, pii="quasi", description="M or F"),
        _past("date_of_birth", "Child's date of birth", pii="quasi"),
        _place(),
        cccd_field("father_cccd", "Father's CCCD, when the father is registered", required=False),
        cccd_field("mother_cccd", "Mother's CCCD"),
        _past("registered_on", "Registration date, not before date_of_birth (within 60 days of birth is normal, "
                               "not a contract rule)"),
        UPDATED_AT,
    ),
    checks=(
        RowCheck(
            name="child_cccd_matches_sex_and_year",
            code="inconsistent",
            message="inconsistent child_cccd: digits 4-6 contradict child_sex or date_of_birth",
            violates=lambda t: cccd_contradicts_sex_and_year(
                t.column("child_cccd"), t.column("date_of_birth"), t.column("child_sex")),
            needs=("child_cccd", "child_sex", "date_of_birth"),
        ),
        date_order_check("date_of_birth", "registered_on"),
    ),
    references=reference_sets("commune_codes"),
)

MARRIAGES = Entity(
    registry=SLUG,
    name="marriages",
    description="Marriage registrations (kết hôn): both parties, their dates of birth, date and place, and the "
                "divorce when one is noted.",
    key=("registration_id",),
    cursor="updated_at",
    fields=(
        _registration_id("KH", "Marriage"),
        cccd_field("husband_cccd", "Husband's CCCD"),
        cccd_field("wife_cccd", "Wife's CCCD"),
        _past("husband_date_of_birth", "Husband's date of birth", pii="quasi"),
        _past("wife_date_of_birth", "Wife's date of birth", pii="quasi"),
        _past("registered_on", "Date the marriage was registered"),
        _place(),
        Field("divorced_on", "date", days_after_update=0,
              description="Date the divorce took effect (the court's judgment or decision), noted on the registration "
                          "(Law on Civil Status art. 3, Decree 123/2015/ND-CP); absent while the marriage lasts; not "
                          "after updated_at"),
        UPDATED_AT,
    ),
    checks=(_under_age("husband"), _under_age("wife"), date_order_check("registered_on", "divorced_on")),
    references=reference_sets("commune_codes"),
)

DEATHS = Entity(
    registry=SLUG,
    name="deaths",
    description="Death registrations (khai tử); the population registry then marks the citizen deceased.",
    key=("registration_id",),
    cursor="updated_at",
    fields=(
        _registration_id("KT", "Death"),
        cccd_field("cccd", "CCCD of the deceased"),
        _past("date_of_death", "Date of death", pii="quasi"),
        _place(),
        _past("registered_on", "Registration date, not before date_of_death (within 15 days of the death is normal, "
                               "not a contract rule)"),
        UPDATED_AT,
    ),
    checks=(date_order_check("date_of_death", "registered_on"),),
    references=reference_sets("commune_codes"),
)

REGISTRY = Registry(
    slug=SLUG,
    name="Civil status registry",
    local_name="Cơ sở dữ liệu hộ tịch điện tử",
    agency="Ministry of Justice (Bộ Tư pháp)",
    schedule="30 1 * * *",
    drift=SchemaDrift.FREEZE,
    entities=(BIRTHS, MARRIAGES, DEATHS),
    simulation="kho.simulator.civil_status",  # how `kho simulate` generates its records
)
BIRTHS, MARRIAGES, DEATHS = ENTITIES = REGISTRY.entities
"""The entities as the registry completed them (its defaults filled in): what every stage reads."""
