"""Vietnamese identity-number rules, scalar (for generators) and vectorised (for contract checks).

CCCD (Decree 137/2015/ND-CP art. 13; Circular 07/2016/TT-BCA art. 7): 12 digits, 3 for the birth-registration
province (GSO code zero-padded), 1 for century and sex, 2 for the birth year's last two digits, 6 random. There is
no check digit, so the only structural check is that digits 1-6 agree with birth province, sex and birth year.

Enterprise code = tax code (mã số doanh nghiệp / MST): 10 digits, 2 for the tax authority's province numbering
(not the GSO code: Hà Nội 01, TP Hồ Chí Minh 03), 7 for a sequence, 1 check digit; a branch or dependent unit has
13 digits, the parent's 10 plus 001..999 (written `0100047516-001`, sent without the dash on the wire).

Check digit: c = 10 - (Σ dᵢ·wᵢ mod 11) over the first nine digits with weights 31, 29, 23, 19, 17, 13, 7, 5, 3.
Σ mod 11 lies in 0..10, so c lies in 0..10: 11 cannot occur, and c = 10 (Σ divisible by 11) is not a digit, so
no valid code starts with those nine digits; issuers skip such sequence numbers. This module therefore treats a
10-digit code whose first nine digits give c = 10 as invalid whatever its last digit. The same reading is used by
python-stdnum (`stdnum.vn.mst`), which also rejects the all-zero sequence `0000000` and the branch suffix `000`;
so do we. Example: 0100047516 (Σ = 158, 158 mod 11 = 4, c = 6) is valid.

Social insurance code (mã số BHXH): 10 digits since Decision 1666/QD-BHXH (2021). Its first two digits are commonly
the issuing province but that is observed, not regulated, so only the length is a contract rule. From 2025-07-01
the Law on Social Insurance 41/2024/QH15 makes a Vietnamese citizen's code their personal identification number
(12 digits, the CCCD); codes issued before keep their 10 digits, so both lengths are valid.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from kho.sources.contract import Column, Field

CCCD_PATTERN = r"\d{12}"
CENTURY_BASE = {1900: 0, 2000: 2, 2100: 4}
TAX_CODE_PATTERN = r"\d{10}"
BRANCH_CODE_PATTERN = r"\d{13}"
SOCIAL_INSURANCE_CODE_PATTERN = r"\d{10}(\d{2})?"
TAX_CODE_WEIGHTS: tuple[int, ...] = (31, 29, 23, 19, 17, 13, 7, 5, 3)
_NO_CHECK_DIGIT = 10
"""What the formula gives when the weighted sum is divisible by 11: not a digit, so no valid code exists."""


def cccd_field(name: str, description: str, *, required: bool = True) -> Field:
    """A field holding a citizen identity number: 12 digits, direct personal data."""
    return Field(name, "text", required=required, pattern=CCCD_PATTERN, pii="direct", description=description)


def century_sex_digit(birth_year: int, sex: str) -> int:
    """The 4th CCCD digit: 1900s male 0 / female 1; 2000s 2 / 3; 2100s 4 / 5."""
    century = birth_year // 100 * 100
    return CENTURY_BASE[century] + (1 if sex == "F" else 0)


def cccd_prefix(province_code: str, birth_year: int, sex: str) -> str:
    """The first six digits a CCCD must have for this birth province, year and sex."""
    return f"{int(province_code):03d}{century_sex_digit(birth_year, sex)}{birth_year % 100:02d}"


def cccd_birth_digits(date_of_birth: Column, sex: Column) -> pa.ChunkedArray:
    """CCCD digits 4-6 (century/sex and year) expected for each row; null outside 1900-2199, which has no digit."""
    year = pc.year(date_of_birth)
    century = pc.multiply(pc.divide(year, 100), 100)
    base = pc.if_else(pc.equal(century, 1900), 0,
                      pc.if_else(pc.equal(century, 2000), 2,
                                 pc.if_else(pc.equal(century, 2100), 4, pa.scalar(None, pa.int64()))))
    digit = pc.add(base, pc.if_else(pc.equal(sex, "F"), 1, 0))
    yy = pc.utf8_lpad(pc.cast(pc.subtract(year, century), pa.string()), width=2, padding="0")
    return _chunked(pc.binary_join_element_wise(pc.cast(digit, pa.string()), yy, ""))


def cccd_contradicts_birth(table: pa.Table) -> pa.ChunkedArray:
    """True where digits 1-6 of `cccd` disagree with birth_province_code, sex and date_of_birth."""
    province = pc.utf8_lpad(table.column("birth_province_code"), width=3, padding="0")
    birth = cccd_birth_digits(table.column("date_of_birth"), table.column("sex"))
    expected = pc.binary_join_element_wise(province, birth, "")
    return _contradicts(pc.utf8_slice_codeunits(table.column("cccd"), 0, 6), expected, table.column("date_of_birth"))


def cccd_contradicts_sex_and_year(cccd: Column, date_of_birth: Column, sex: Column) -> pa.ChunkedArray:
    """True where CCCD digits 4-6 disagree with sex and birth year (for records without a birth province)."""
    expected = cccd_birth_digits(date_of_birth, sex)
    return _contradicts(pc.utf8_slice_codeunits(cccd, 3, 6), expected, date_of_birth)


def _contradicts(actual: Column, expected: Column, date_of_birth: Column) -> pa.ChunkedArray:
    """Mismatch, counting a birth year outside 1900-2199 (no century digit exists) as a mismatch too."""
    unsupported = pc.and_(pc.is_valid(date_of_birth), pc.is_null(expected))
    return _chunked(pc.or_kleene(pc.not_equal(actual, expected), unsupported))


def tax_code_check_digit(first9: str) -> int | None:
    """The check digit completing these nine digits, or None when the formula gives 10 (no valid code exists).

    Pure and cheap, for generators; raises ValueError unless `first9` is exactly nine ASCII digits.
    """
    if len(first9) != 9 or not (first9.isascii() and first9.isdigit()):
        raise ValueError(f"a tax code's first part is nine digits, not {first9!r}")
    check = 10 - sum(w * (ord(d) - 48) for w, d in zip(TAX_CODE_WEIGHTS, first9, strict=True)) % 11
    return None if check == _NO_CHECK_DIGIT else check


def complete_tax_code(first9: str) -> str | None:
    """`first9` plus its check digit, or None when no valid code starts with these nine digits."""
    check = tax_code_check_digit(first9)
    return None if check is None else f"{first9}{check}"


def is_valid_tax_code(code: str) -> bool:
    """A 10-digit enterprise code or 13-digit branch code (no dash) with a valid check digit and components."""
    if len(code) not in (10, 13) or not (code.isascii() and code.isdigit()):
        return False
    if code[2:9] == "0000000" or code[10:] == "000":
        return False
    return tax_code_check_digit(code[:9]) == ord(code[9]) - 48


def tax_code_check_digits(first9: Column) -> pa.ChunkedArray:
    """Vectorised `tax_code_check_digit`: int64 per row, null where there is no digit or the input is malformed."""
    well_formed = pc.match_substring_regex(first9, r"^\d{9}")
    safe = pc.if_else(well_formed, first9, "000000000")
    total = None
    for i, weight in enumerate(TAX_CODE_WEIGHTS):
        digit = pc.cast(pc.utf8_slice_codeunits(safe, i, i + 1), pa.int64())
        term = pc.multiply(digit, weight)
        total = term if total is None else pc.add(total, term)
    check = pc.subtract(10, pc.modulo(total, 11))
    usable = pc.and_(well_formed, pc.not_equal(check, _NO_CHECK_DIGIT))
    return _chunked(pc.if_else(usable, check, pa.scalar(None, pa.int64())))


def valid_tax_codes(codes: Column) -> pa.ChunkedArray:
    """Vectorised `is_valid_tax_code`: True/False per row, null where the input is null."""
    shaped = pc.match_substring_regex(codes, r"^(?:\d{10}|\d{13})$")
    components = pc.and_(
        pc.not_equal(pc.utf8_slice_codeunits(codes, 2, 9), "0000000"),
        pc.not_equal(pc.utf8_slice_codeunits(codes, 10, 13), "000"),
    )
    last = pc.cast(pc.if_else(shaped, pc.utf8_slice_codeunits(codes, 9, 10), "0"), pa.int64())
    matches = pc.fill_null(pc.equal(tax_code_check_digits(codes), last), False)
    return _chunked(pc.and_(pc.and_(shaped, components), matches))


def _chunked(values: Column) -> pa.ChunkedArray:
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
