"""The Vietnam Social Security registry (Bảo hiểm xã hội Việt Nam): participants and their coverage periods."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from kho.sources.contract import UPDATED_AT, Entity, Field, RowCheck, SchemaDrift
from kho.sources.identity import SOCIAL_INSURANCE_CODE_PATTERN, cccd_field
from kho.sources.registry import Registry
from kho.sources.rules import date_order_check

SLUG = "insurance"
PARTICIPANT_TYPES = frozenset({
    "employee", "self_employed", "household", "student", "poor_household", "child_under_6", "pensioner",
})
CONTRIBUTION_STATUS = frozenset({"paid", "owing", "suspended"})
COVERAGE_TYPES = frozenset({"health", "social", "unemployment"})
COVERAGE_STATUS = frozenset({"active", "lapsed", "ended"})
FULL_NAME_MAX_LENGTH = 100
"""As the population registry's full names (`kho.sources.population.FULL_NAME_MAX_LENGTH`)."""
START_AHEAD_DAYS = 366
"""Cover bought or renewed in advance starts within a year of being recorded (it is bought for at most 12 months)."""
END_AHEAD_DAYS = 3653
"""A period's planned end lies at most ten years ahead: the longest card, a child's under 6, runs to the sixth
birthday; further is a typing slip (2125 for 2025), not a plan."""


def _foreign_identity_code(code: pa.ChunkedArray, cccd: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a 12-digit social insurance code (an identification number) is not the row's own cccd."""
    return pc.and_(pc.equal(pc.utf8_length(code), 12), pc.not_equal(code, cccd))


def _social_insurance_code(name: str, description: str) -> Field:
    return Field(name, "text", required=True, pattern=SOCIAL_INSURANCE_CODE_PATTERN, pii="direct",
                 description=description)


PARTICIPANTS = Entity(
    registry=SLUG,
    name="participants",
    description="One row per insured person, keyed by the social insurance code (mã số BHXH): 10 digits, or "
                "the personal identification number for codes issued from 2025-07-01.",
    key=("social_insurance_code",),
    cursor="updated_at",
    fields=(
        _social_insurance_code(
            "social_insurance_code",
            "Social insurance code: 10 digits (its first two commonly the issuing province, not enforced), or from "
            "2025-07-01 the participant's 12-digit personal identification number (Law 41/2024/QH15)",
        ),
        cccd_field("cccd", "CCCD of the participant"),
        Field("full_name", "text", required=True, normalise_nfc=True, pii="direct", max_length=FULL_NAME_MAX_LENGTH,
              description="Full name as the insurer holds it, NFC; at most 100 characters"),
        Field("participant_type", "text", required=True, allowed=PARTICIPANT_TYPES,
              description="Who pays: employee, self_employed, household, student, poor_household, ..."),
        Field("registered_hospital_code", "text", required=True, pattern=r"\d{5}",
              description="Registered primary-care facility: 2-digit province + 3-digit facility"),
        Field("contribution_status", "text", required=True, allowed=CONTRIBUTION_STATUS,
              description="paid, owing or suspended"),
        Field("registered_on", "date", days_after_update=0,
              description="Date the participant was first registered with social insurance (when the code was "
                          "issued); older records may lack it"),
        UPDATED_AT,
    ),
    checks=(
        RowCheck(
            name="social_insurance_code_is_own_cccd",
            code="inconsistent",
            message="inconsistent social_insurance_code: a 12-digit code is a personal identification number and "
                    "must be the participant's cccd",
            violates=lambda t: _foreign_identity_code(t.column("social_insurance_code"), t.column("cccd")),
            needs=("social_insurance_code", "cccd"),
        ),
    ),
)

COVERAGE_PERIODS = Entity(
    registry=SLUG,
    name="coverage_periods",
    description="Periods of health, social or unemployment insurance cover, one row per period.",
    key=("coverage_id",),
    cursor="updated_at",
    fields=(
        Field("coverage_id", "text", required=True, pattern=r"CV\d{12}",
              description="Coverage period identifier, CV followed by 12 digits"),
        _social_insurance_code("social_insurance_code", "Participant covered"),
        Field("coverage_type", "text", required=True, allowed=COVERAGE_TYPES,
              description="health, social or unemployment"),
        Field("valid_from", "date", required=True, days_after_update=START_AHEAD_DAYS,
              description="First day of cover; may be in the future (cover bought in advance), at most 366 days "
                          "after updated_at"),
        Field("valid_to", "date", days_after_update=END_AHEAD_DAYS,
              description="Last day of cover; absent while open-ended; usually in the future, at most 3653 days "
                          "(ten years) after updated_at"),
        Field("status", "text", required=True, allowed=COVERAGE_STATUS, description="active, lapsed or ended"),
        UPDATED_AT,
    ),
    checks=(date_order_check("valid_from", "valid_to"),),
)

REGISTRY = Registry(
    slug=SLUG,
    name="Vietnam Social Security registry",
    local_name="Bảo hiểm xã hội Việt Nam",
    agency="Vietnam Social Security (Bảo hiểm xã hội Việt Nam)",
    schedule="15 1 * * *",
    drift=SchemaDrift.KEEP_EXTRA,
    entities=(PARTICIPANTS, COVERAGE_PERIODS),
    simulation="kho.simulator.insurance",  # how `kho simulate` generates its records
)
PARTICIPANTS, COVERAGE_PERIODS = ENTITIES = REGISTRY.entities
"""The entities as the registry completed them (its defaults filled in): what every stage reads."""
