"""The national business registry (Cơ sở dữ liệu quốc gia về đăng ký doanh nghiệp): enterprises and branches.

The enterprise code is the tax code (see `kho.sources.identity`). Registries of this kind add descriptive fields
(phone, website, e-mail) from time to time; they are dropped and reported rather than kept, since nothing
downstream reads them and they may carry contact data the warehouse should not hold.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from kho.sources.contract import UPDATED_AT, Entity, Field, RowCheck, SchemaDrift
from kho.sources.identity import BRANCH_CODE_PATTERN, TAX_CODE_PATTERN, cccd_field, valid_tax_codes
from kho.sources.reference import reference_sets
from kho.sources.registry import Registry

SLUG = "business"
LEGAL_FORMS = frozenset({"tnhh_1tv", "tnhh_2tv", "co_phan", "tu_nhan", "hop_danh"})
"""Law on Enterprises 59/2020/QH14: single- and multi-member LLC, joint-stock, sole proprietorship, partnership."""
ENTERPRISE_STATUS = frozenset({"active", "suspended", "dissolved"})
NAME_MAX_LENGTH = 255
"""Characters of an enterprise's or branch's registered name (Vietnamese name in full, legal form included)."""
REASON_MAX_LENGTH = 500
"""Characters of a free-text reason for a status change: a sentence or two, not a document."""
MAX_REGISTERED_CAPITAL = 10**15
"""VND: ten times the largest charter capitals on record (state economic groups, a few 10^14 VND); more is a slip."""
AHEAD_DAYS = 366
"""A status change may be notified ahead of the day it takes effect (a suspension, at least three working days
before, Law on Enterprises 59/2020/QH14 art. 206), but not by more than a year."""


def _enterprise_code(description: str) -> Field:
    return Field("enterprise_code", "text", required=True, pattern=TAX_CODE_PATTERN, description=description)


def _commune() -> Field:
    return Field("commune_code", "text", required=True, reference="commune_codes",
                 description="GSO 5-digit code of the commune of the registered address")


def _status(description: str) -> Field:
    return Field("status", "text", required=True, allowed=ENTERPRISE_STATUS, description=description)


def _bad_check_digit(t: pa.Table) -> pa.ChunkedArray:
    return pc.invert(valid_tax_codes(t.column("enterprise_code")))


CHECK_DIGIT = RowCheck(
    name="enterprise_code_check_digit",
    code="malformed",
    message="malformed enterprise_code: check digit or components invalid (10 - Σdᵢwᵢ mod 11)",
    violates=_bad_check_digit,
    needs=("enterprise_code",),
)
"""A tax code whose 10th digit does not match its first nine is mistyped or invented: reject it like bad syntax."""


def _branch_suffix_zero(t: pa.Table) -> pa.ChunkedArray:
    return pc.equal(pc.utf8_slice_codeunits(t.column("branch_code"), 10, 13), "000")


def _branch_of_other_parent(t: pa.Table) -> pa.ChunkedArray:
    return pc.not_equal(pc.utf8_slice_codeunits(t.column("branch_code"), 0, 10), t.column("enterprise_code"))


ENTERPRISES = Entity(
    registry=SLUG,
    name="enterprises",
    description="One row per registered enterprise, keyed by its 10-digit enterprise (tax) code.",
    key=("enterprise_code",),
    cursor="updated_at",
    fields=(
        _enterprise_code("10-digit enterprise code = tax code (MST), with a valid check digit"),
        Field("name", "text", required=True, normalise_nfc=True, max_length=NAME_MAX_LENGTH,
              description="Registered name, NFC; at most 255 characters"),
        Field("legal_form", "text", required=True, allowed=LEGAL_FORMS,
              description="tnhh_1tv, tnhh_2tv, co_phan, tu_nhan or hop_danh"),
        Field("industry_code", "text", required=True, pattern=r"\d{4}",
              description="Main business line, VSIC 2018 4-digit code"),
        _commune(),
        Field("registered_capital", "numeric", required=True, minimum=0, minimum_exclusive=True,
              maximum=MAX_REGISTERED_CAPITAL,
              description="Registered charter capital in VND (> 0, at most 10^15: above any on record)"),
        cccd_field("legal_rep_cccd", "CCCD of the legal representative"),
        _status("active, suspended or dissolved"),
        Field("established_on", "date", required=True, days_after_update=0,
              description="Date of first registration; not after updated_at: registered before it was recorded"),
        UPDATED_AT,
    ),
    checks=(CHECK_DIGIT,),
    references=reference_sets("commune_codes"),
)

BRANCHES = Entity(
    registry=SLUG,
    name="branches",
    description="Branches and dependent units: 13-digit code = the parent's 10 digits + 001..999.",
    key=("branch_code",),
    cursor="updated_at",
    fields=(
        Field("branch_code", "text", required=True, pattern=BRANCH_CODE_PATTERN,
              description="13-digit branch code, the parent's code plus 001..999, without the dash"),
        _enterprise_code("Parent enterprise code"),
        Field("name", "text", required=True, normalise_nfc=True, max_length=NAME_MAX_LENGTH,
              description="Branch name, NFC; at most 255 characters"),
        _commune(),
        _status("active, suspended or dissolved"),
        UPDATED_AT,
    ),
    checks=(
        CHECK_DIGIT,
        RowCheck(
            name="branch_suffix_not_000",
            code="malformed",
            message="malformed branch_code: the suffix must be 001..999",
            violates=_branch_suffix_zero,
            needs=("branch_code",),
        ),
        RowCheck(
            name="branch_code_extends_parent",
            code="inconsistent",
            message="inconsistent branch_code: its first 10 digits are not enterprise_code",
            violates=_branch_of_other_parent,
            needs=("branch_code", "enterprise_code"),
        ),
    ),
    references=reference_sets("commune_codes"),
)

ENTERPRISE_STATUS_CHANGES = Entity(
    registry=SLUG,
    name="enterprise_status_changes",
    description="History of enterprise status: one row per change (opening, suspension, dissolution).",
    key=("enterprise_code", "effective_on"),
    cursor="updated_at",
    fields=(
        _enterprise_code("Enterprise whose status changed"),
        _status("Status from effective_on: active, suspended or dissolved"),
        Field("effective_on", "date", required=True, days_after_update=AHEAD_DAYS,
              description="Date the status takes effect; may follow the notice, at most 366 days after updated_at"),
        Field("reason", "text", normalise_nfc=True, max_length=REASON_MAX_LENGTH,
              description="Free-text reason, if given; at most 500 characters"),
        UPDATED_AT,
    ),
    checks=(CHECK_DIGIT,),
)

REGISTRY = Registry(
    slug=SLUG,
    name="National business registry",
    local_name="Cơ sở dữ liệu quốc gia về đăng ký doanh nghiệp",
    agency="Ministry of Finance (Bộ Tài chính)",
    schedule="45 1 * * *",
    drift=SchemaDrift.DISCARD_EXTRA,
    entities=(ENTERPRISES, BRANCHES, ENTERPRISE_STATUS_CHANGES),
    simulation="kho.simulator.business",  # how `kho simulate` generates its records
)
ENTERPRISES, BRANCHES, ENTERPRISE_STATUS_CHANGES = ENTITIES = REGISTRY.entities
"""The entities as the registry completed them (its defaults filled in): what every stage reads."""
