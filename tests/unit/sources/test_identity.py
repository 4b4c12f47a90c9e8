"""Identity-number rules: the tax-code check digit (scalar and vectorised agree) and CCCD birth digits."""

from __future__ import annotations

import random
from datetime import date
from itertools import product

import pyarrow as pa
import pytest

from kho.sources.identity import (
    TAX_CODE_WEIGHTS,
    cccd_contradicts_sex_and_year,
    cccd_prefix,
    complete_tax_code,
    is_valid_tax_code,
    tax_code_check_digit,
    tax_code_check_digits,
    valid_tax_codes,
)

VALID_CODES = ["0100047516", "0100233488", "0314409058", "0314409058002", "0100047516999"]


def _no_digit_prefix() -> str:
    """Nine digits whose weighted sum is divisible by 11: the formula gives 10, which is not a digit."""
    for digits in product("0123456789", repeat=3):
        first9 = "010000" + "".join(digits)
        if sum(w * int(d) for w, d in zip(TAX_CODE_WEIGHTS, first9, strict=True)) % 11 == 0:
            return first9
    raise AssertionError("no such prefix")


def test_the_reference_example_is_valid_and_its_check_digit_is_6() -> None:
    assert tax_code_check_digit("010004751") == 6
    assert is_valid_tax_code("0100047516")
    assert complete_tax_code("010004751") == "0100047516"


@pytest.mark.parametrize("code", VALID_CODES)
def test_known_codes_and_branches_are_valid(code: str) -> None:
    assert is_valid_tax_code(code)


@pytest.mark.parametrize(("position", "digit"), [(p, d) for p in range(10) for d in "0123456789"])
def test_changing_any_one_digit_of_a_valid_code_makes_it_invalid(position: int, digit: str) -> None:
    code = "0100047516"
    changed = code[:position] + digit + code[position + 1:]
    assert is_valid_tax_code(changed) == (changed == code)


def test_a_prefix_whose_formula_gives_10_has_no_valid_code() -> None:
    first9 = _no_digit_prefix()
    assert tax_code_check_digit(first9) is None
    assert complete_tax_code(first9) is None
    assert not any(is_valid_tax_code(first9 + d) for d in "0123456789")
    assert tax_code_check_digits(pa.array([first9])).to_pylist() == [None]


@pytest.mark.parametrize(
    "code", ["", "010004751", "01000475166", "0100047516-001", "0100047516000", "010004751a", "０１００047516"],
)
def test_malformed_codes_are_invalid(code: str) -> None:
    assert not is_valid_tax_code(code)


def test_the_all_zero_sequence_is_invalid_even_with_a_matching_digit() -> None:
    code = complete_tax_code("010000000")
    assert code is not None and not is_valid_tax_code(code)


@pytest.mark.parametrize("bad", ["01000475", "0100047516", "01000475a", "０１０００４７５１"])
def test_check_digit_refuses_anything_but_nine_ascii_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="nine digits"):
        tax_code_check_digit(bad)


def test_vectorised_and_scalar_validity_agree_on_ten_thousand_codes() -> None:
    rng = random.Random(20250701)
    codes: list[str | None] = []
    for i in range(10_000):
        first9 = f"{rng.randrange(1, 100):02d}{rng.randrange(10**7):07d}"
        if i % 3 == 0:
            codes.append(complete_tax_code(first9) or first9 + "0")
        elif i % 3 == 1:
            codes.append(first9 + str(rng.randrange(10)))
        else:
            codes.append(first9 + str(rng.randrange(10)) + f"{rng.randrange(1000):03d}")
    codes += [None, "", "abc", "0100047516-001"]
    vectorised = valid_tax_codes(pa.array(codes)).to_pylist()
    assert vectorised == [None if c is None else is_valid_tax_code(c) for c in codes]
    assert 3_000 < sum(bool(v) for v in vectorised) < 7_000


def test_vectorised_and_scalar_check_digits_agree() -> None:
    rng = random.Random(7)
    prefixes = [f"{rng.randrange(10**9):09d}" for _ in range(10_000)]
    assert tax_code_check_digits(pa.array(prefixes)).to_pylist() == [tax_code_check_digit(p) for p in prefixes]


def test_vectorised_functions_accept_chunked_columns() -> None:
    chunked = pa.chunked_array([["0100047516"], ["0100047517", None]])
    assert valid_tax_codes(chunked).to_pylist() == [True, False, None]


@pytest.mark.parametrize(
    ("cccd", "born", "sex", "contradicts"),
    [
        (cccd_prefix("74", 2025, "M") + "000001", date(2025, 6, 1), "M", False),
        (cccd_prefix("74", 2025, "M") + "000001", date(2025, 6, 1), "F", True),
        (cccd_prefix("74", 2024, "M") + "000001", date(2025, 6, 1), "M", True),
        (cccd_prefix("74", 1999, "F") + "000001", date(1999, 6, 1), "F", False),
        ("074" + "4" + "99" + "000001", date(1899, 6, 1), "M", True),
    ],
)
def test_cccd_digits_4_to_6_follow_sex_and_birth_year(cccd: str, born: date, sex: str, contradicts: bool) -> None:
    result = cccd_contradicts_sex_and_year(pa.array([cccd]), pa.array([born]), pa.array([sex]))
    assert result.to_pylist() == [contradicts]
