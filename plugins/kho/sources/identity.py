"""Vietnamese identity-number rules (Decree 137/2015/ND-CP art. 13; Circular 07/2016/TT-BCA art. 7).

A CCCD has 12 digits: 3 for the birth-registration province (GSO code zero-padded), 1 for century and sex,
2 for the birth year's last two digits, 6 random. There is no check digit, so the only structural check is that
digits 1-6 agree with the person's birth province, sex and birth year.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

CCCD_PATTERN = r"\d{12}"
CENTURY_BASE = {1900: 0, 2000: 2, 2100: 4}


def century_sex_digit(birth_year: int, sex: str) -> int:
    """The 4th CCCD digit: 1900s male 0 / female 1; 2000s 2 / 3; 2100s 4 / 5."""
    century = birth_year // 100 * 100
    return CENTURY_BASE[century] + (1 if sex == "F" else 0)


def cccd_prefix(province_code: str, birth_year: int, sex: str) -> str:
    """The first six digits a CCCD must have for this birth province, year and sex."""
    return f"{int(province_code):03d}{century_sex_digit(birth_year, sex)}{birth_year % 100:02d}"


def cccd_contradicts_birth(table: pa.Table) -> pa.ChunkedArray:
    """True where digits 1-6 of `cccd` disagree with birth_province_code, sex and date_of_birth."""
    year = pc.year(table.column("date_of_birth"))
    century = pc.multiply(pc.divide(year, 100), 100)
    base = pc.if_else(pc.equal(century, 1900), 0, pc.if_else(pc.equal(century, 2000), 2, 4))
    digit = pc.add(base, pc.if_else(pc.equal(table.column("sex"), "F"), 1, 0))
    province = pc.utf8_lpad(table.column("birth_province_code"), width=3, padding="0")
    yy = pc.utf8_lpad(pc.cast(pc.subtract(year, pc.multiply(pc.divide(year, 100), 100)), pa.string()), 2, "0")
    expected = pc.binary_join_element_wise(province, pc.cast(digit, pa.string()), yy, "")
    actual = pc.utf8_slice_codeunits(table.column("cccd"), 0, 6)
    return pc.not_equal(actual, expected)
