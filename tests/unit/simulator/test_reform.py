"""The 2025-07-01 reorganisation as the simulator applies it (kho.simulator.reform), on the reference data."""

from __future__ import annotations

from collections import Counter

import pytest

from kho.simulator import reform
from kho.sources import get_entity
from kho.sources.reference import commune_mapping_2025, communes

CITIZENS = get_entity("population", "citizens")
WHOLE = next(old for old, parts in commune_mapping_2025().items()
             if len(parts) == 1 and parts[0].new_commune_code != old)
SPLIT = next(old for old, parts in commune_mapping_2025().items() if len(parts) >= 2)


def test_a_record_dated_before_the_reform_keeps_its_old_code_and_one_after_takes_the_successor() -> None:
    new = commune_mapping_2025()[WHOLE][0].new_commune_code
    assert reform.code_on(WHOLE, reform.REFORM_ORD - 1, salt=1) == WHOLE
    assert reform.code_on(WHOLE, reform.REFORM_ORD, salt=1) == new


def test_a_split_commune_sends_each_household_to_one_of_its_successors_always_the_same() -> None:
    parts = {p.new_commune_code for p in commune_mapping_2025()[SPLIT]}
    chosen = Counter(reform.successor(SPLIT, salt) for salt in range(2000))
    assert set(chosen) == parts  # every successor receives households
    assert all(reform.successor(SPLIT, salt) == reform.successor(SPLIT, salt) for salt in range(50))


def test_an_old_code_without_a_successor_is_a_reference_error_naming_it() -> None:
    with pytest.raises(KeyError, match="99999"):
        reform.successor("99999", 1)


def test_a_rewritten_day_0_record_has_every_commune_field_converted_by_its_household() -> None:
    record = {"cccd": "074190000001", "household_id": "HK7400000042", "permanent_commune_code": SPLIT,
              "temporary_commune_code": WHOLE, "updated_at": "2025-06-01T00:00:00Z"}
    before = reform.converted(record, CITIZENS, reform.REFORM_ORD - 1)
    after = reform.converted(record, CITIZENS, reform.REFORM_ORD)
    assert before == {}
    assert after == {"permanent_commune_code": reform.successor(SPLIT, 42),
                     "temporary_commune_code": commune_mapping_2025()[WHOLE][0].new_commune_code}


def test_binh_duong_becomes_ho_chi_minh_city_for_births_registered_from_the_reform() -> None:
    assert reform.province_on(74, reform.REFORM_ORD - 1) == 74
    assert reform.province_on(74, reform.REFORM_ORD) == 79
    assert all(int(commune_mapping_2025()[c][0].new_province_code) == 79
               for c, row in communes().items() if row["province_code"] == "74")
