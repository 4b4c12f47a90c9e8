"""The national population registry (Cơ sở dữ liệu quốc gia về dân cư): citizens, households, residence changes."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from kho.sources.contract import UPDATED_AT, Entity, Field, RowCheck, SchemaDrift
from kho.sources.identity import cccd_contradicts_birth, cccd_field
from kho.sources.reference import reference_sets
from kho.sources.registry import Registry
from kho.sources.rules import before, date_order_check

SLUG = "population"
HOUSEHOLD_ID_PATTERN = r"HK\d{10}"
SEX = frozenset({"M", "F"})
CITIZEN_STATUS = frozenset({"alive", "deceased"})
RELATIONS_TO_HEAD = frozenset({"head", "spouse", "child", "parent", "grandchild", "sibling", "other"})
RESIDENCE_KINDS = frozenset({"permanent", "temporary"})
FULL_NAME_MAX_LENGTH = 100
"""Characters of a full name: the national population database holds about 100 (the longest real Vietnamese names,
with several middle names or a foreign-born spouse's, stay far below)."""
ADDRESS_MAX_LENGTH = 250
"""Characters of an address line within a commune (number, street, hamlet, residential group)."""
MAX_HOUSEHOLD_MEMBERS = 100
"""Members of one household: families of more than a few dozen do not exist, so more than 100 is a typing slip (an
extra digit). Collective residences (dormitories, religious houses) are not households of this registry."""
AHEAD_DAYS = 366
"""How far after the record's updated_at a residence may take effect: a move registered in advance, within a year."""


def _deceased_without_date(t: pa.Table) -> pa.ChunkedArray:
    return pc.and_(pc.equal(t.column("status"), "deceased"), pc.is_null(t.column("date_of_death")))


def _alive_with_date(t: pa.Table) -> pa.ChunkedArray:
    return pc.and_(pc.equal(t.column("status"), "alive"), pc.is_valid(t.column("date_of_death")))


CITIZENS = Entity(
    registry=SLUG,
    name="citizens",
    description="One row per citizen known to the population registry, keyed by the 12-digit CCCD.",
    key=("cccd",),
    cursor="updated_at",
    fields=(
        cccd_field("cccd", "12-digit citizen identity number (số định danh cá nhân)"),
        Field("full_name", "text", required=True, normalise_nfc=True, pii="direct", max_length=FULL_NAME_MAX_LENGTH,
              description="Full name with diacritics, normalised to NFC; at most 100 characters, what the national "
                          "population database holds"),
        Field("date_of_birth", "date", required=True, pii="quasi", days_after_update=0,
              description="Date of birth (ISO 8601 on the API, dd/mm/yyyy in exports); not after updated_at: the "
                          "registry records a birth once it happened"),
        Field("sex", "text", required=True, allowed=SEX, pii="quasi",
              description="M or F, as encoded in the CCCD's 4th digit"),
        Field("ethnicity", "text", required=True, normalise_nfc=True, reference="ethnicities", pii="quasi",
              description="Name of one of the 54 recognised ethnic groups (GSO catalogue), e.g. Kinh, Tày, Khmer"),
        Field("birth_province_code", "text", required=True, reference="province_codes",
              description="GSO code of the province where the birth was registered (CCCD digits 1-3)"),
        Field("hometown_province_code", "text", required=True, reference="province_codes",
              description="GSO code of the province of the citizen's hometown (quê quán)"),
        Field("permanent_commune_code", "text", required=True, reference="commune_codes",
              description="GSO 5-digit code of the commune of permanent residence"),
        Field("temporary_commune_code", "text", reference="commune_codes",
              description="GSO 5-digit code of the commune of temporary residence, if registered"),
        Field("household_id", "text", pattern=HOUSEHOLD_ID_PATTERN,
              description="Household (hộ khẩu) the citizen belongs to, if any"),
        Field("status", "text", required=True, allowed=CITIZEN_STATUS, description="alive or deceased"),
        Field("date_of_death", "date", pii="quasi", days_after_update=0,
              description="Date of death; present exactly when deceased; not after updated_at"),
        UPDATED_AT,
    ),
    checks=(
        RowCheck(
            name="cccd_matches_birth",
            code="inconsistent",
            message="inconsistent cccd: digits 1-6 contradict birth_province_code, sex or date_of_birth",
            violates=cccd_contradicts_birth,
            needs=("cccd", "birth_province_code", "sex", "date_of_birth"),
        ),
        RowCheck(
            name="deceased_has_date_of_death",
            code="missing_required",
            message="missing date_of_death: required when status is deceased",
            violates=_deceased_without_date,
            needs=("status", "date_of_death"),
        ),
        RowCheck(
            name="alive_has_no_date_of_death",
            code="inconsistent",
            message="inconsistent date_of_death: given for a citizen whose status is alive",
            violates=_alive_with_date,
            needs=("status", "date_of_death"),
        ),
        RowCheck(
            name="death_not_before_birth",
            code="inconsistent",
            message="inconsistent dates: date_of_death is before date_of_birth",
            violates=lambda t: before(t.column("date_of_birth"), t.column("date_of_death")),
            needs=("date_of_birth", "date_of_death"),
        ),
    ),
    references=reference_sets("province_codes", "commune_codes", "ethnicities"),
)

HOUSEHOLDS = Entity(
    registry=SLUG,
    name="households",
    description="One row per registered household (hộ khẩu): its head, commune, address and size.",
    key=("household_id",),
    cursor="updated_at",
    fields=(
        Field("household_id", "text", required=True, pattern=HOUSEHOLD_ID_PATTERN,
              description="Household identifier, HK followed by 10 digits"),
        cccd_field("head_cccd", "CCCD of the head of household (chủ hộ)"),
        Field("commune_code", "text", required=True, reference="commune_codes",
              description="GSO 5-digit code of the household's commune"),
        Field("address_line", "text", required=True, normalise_nfc=True, pii="quasi", max_length=ADDRESS_MAX_LENGTH,
              description="Street, number or hamlet within the commune, NFC; at most 250 characters"),
        Field("member_count", "integer", required=True, minimum=1, maximum=MAX_HOUSEHOLD_MEMBERS,
              description="Number of members, the head included (1 to 100; more is a typing slip)"),
        UPDATED_AT,
    ),
    references=reference_sets("commune_codes"),
)

HOUSEHOLD_MEMBERS = Entity(
    registry=SLUG,
    name="household_members",
    description="Membership of citizens in households over time: one row per (household, citizen).",
    key=("household_id", "cccd"),
    cursor="updated_at",
    fields=(
        Field("household_id", "text", required=True, pattern=HOUSEHOLD_ID_PATTERN,
              description="Household the citizen belongs or belonged to"),
        cccd_field("cccd", "CCCD of the member"),
        Field("relation_to_head", "text", required=True, allowed=RELATIONS_TO_HEAD,
              description="Relation to the head of household (head for the head)"),
        Field("joined_on", "date", required=True, days_after_update=0,
              description="Date the citizen joined the household; not after updated_at (recorded once it happened)"),
        Field("left_on", "date", days_after_update=0,
              description="Date the citizen left the household, if they did; not after updated_at"),
        UPDATED_AT,
    ),
    checks=(date_order_check("joined_on", "left_on"),),
)

RESIDENCE_CHANGES = Entity(
    registry=SLUG,
    name="residence_changes",
    description="Registrations of permanent or temporary residence moves, one row per registration.",
    key=("change_id",),
    cursor="updated_at",
    fields=(
        Field("change_id", "text", required=True, pattern=r"RC\d{12}",
              description="Registration identifier, RC followed by 12 digits"),
        cccd_field("cccd", "CCCD of the citizen who moved"),
        Field("kind", "text", required=True, allowed=RESIDENCE_KINDS, description="permanent or temporary residence"),
        Field("from_commune_code", "text", reference="commune_codes",
              description="Commune left (absent for a first registration)"),
        Field("to_commune_code", "text", required=True, reference="commune_codes", description="Commune moved to"),
        Field("effective_on", "date", required=True, days_after_update=AHEAD_DAYS,
              description="Date the new residence takes effect; may follow the registration (a move registered in "
                          "advance), by at most 366 days after updated_at"),
        Field("registered_at", "timestamptz", required=True, days_after_update=0,
              description="When the registry recorded the move; not on a later day than updated_at"),
        UPDATED_AT,
    ),
    references=reference_sets("commune_codes"),
)

REGISTRY = Registry(
    slug=SLUG,
    name="National population registry",
    local_name="Cơ sở dữ liệu quốc gia về dân cư",
    agency="Ministry of Public Security (Bộ Công an)",
    schedule="0 1 * * *",
    drift=SchemaDrift.KEEP_EXTRA,
    entities=(CITIZENS, HOUSEHOLDS, HOUSEHOLD_MEMBERS, RESIDENCE_CHANGES),
    simulation="kho.simulator.population",  # how `kho simulate` generates its records
)
CITIZENS, HOUSEHOLDS, HOUSEHOLD_MEMBERS, RESIDENCE_CHANGES = ENTITIES = REGISTRY.entities
"""The entities as the registry completed them (its defaults filled in): what every stage reads."""
