"""The national population registry (Cơ sở dữ liệu quốc gia về dân cư): citizens."""

from __future__ import annotations

from kho.sources.contract import Entity, Field, RowCheck, SchemaDrift
from kho.sources.identity import CCCD_PATTERN, cccd_contradicts_birth
from kho.sources.reference import commune_codes, province_codes

REGISTRY = "population"

CITIZENS = Entity(
    registry=REGISTRY,
    name="citizens",
    endpoint="/population/v1/citizens",
    description="One row per citizen known to the population registry, keyed by the 12-digit CCCD.",
    key=("cccd",),
    cursor="updated_at",
    fields=(
        Field("cccd", "text", required=True, pattern=CCCD_PATTERN, pii="direct",
              description="12-digit citizen identity number (số định danh cá nhân)"),
        Field("full_name", "text", required=True, normalise_nfc=True, pii="direct",
              description="Full name with diacritics, normalised to NFC"),
        Field("date_of_birth", "date", required=True, format="%Y-%m-%d", pii="quasi",
              description="Date of birth (ISO 8601 on the API)"),
        Field("sex", "text", required=True, allowed=frozenset({"M", "F"}), pii="quasi",
              description="M or F, as encoded in the CCCD's 4th digit"),
        Field("birth_province_code", "text", required=True, reference="province_codes",
              description="GSO code of the province where the birth was registered (CCCD digits 1-3)"),
        Field("permanent_commune_code", "text", required=True, reference="commune_codes",
              description="GSO 5-digit code of the commune of permanent residence"),
        Field("status", "text", required=True, allowed=frozenset({"alive", "deceased"}),
              description="alive or deceased"),
        Field("updated_at", "timestamptz", required=True,
              description="When the registry last changed this record: the incremental cursor"),
    ),
    checks=(
        RowCheck(
            name="cccd_matches_birth",
            code="inconsistent",
            message="inconsistent cccd: digits 1-6 contradict birth_province_code, sex or date_of_birth",
            violates=cccd_contradicts_birth,
            needs=("cccd", "birth_province_code", "sex", "date_of_birth"),
        ),
    ),
    drift=SchemaDrift.KEEP_EXTRA,
    references={"province_codes": province_codes(), "commune_codes": commune_codes()},
)

ENTITIES = (CITIZENS,)
