"""The published figures hold together, and each measure of `kho.simulator.statistics` counts what it says on
small record sets made by hand (the same `Exports` path the world's measurement reads)."""

from __future__ import annotations

from datetime import date

import pytest

from kho.simulator import demography as demo
from kho.simulator.generate import WorldSpec
from kho.simulator.spec import Record
from kho.simulator.statistics import (
    Exports,
    Measure,
    enterprises,
    fertility,
    format_table,
    households,
    insurance,
    judge,
    marriages,
    measure,
    migration,
    naming,
    overlaps,
    places,
    pyramid,
    reform,
    vital_rates,
)
from kho.sources.business import LEGAL_FORMS
from kho.sources.reference import commune_codes_2025, commune_mapping_2025, communes, ethnicity_names, province_codes

# --- the figures ------------------------------------------------------------------------------------------------


def test_pyramid_covers_ages_0_to_99_and_sums_to_100() -> None:
    assert demo.AGE_GROUPS[0][0] == 0 and demo.AGE_GROUPS[-1][1] == 99
    assert all(a[1] + 1 == b[0] for a, b in zip(demo.AGE_GROUPS, demo.AGE_GROUPS[1:], strict=False))
    assert len(demo.PYRAMID_MALE) == len(demo.PYRAMID_FEMALE) == len(demo.AGE_GROUPS)
    assert sum(demo.PYRAMID_MALE) + sum(demo.PYRAMID_FEMALE) == pytest.approx(100, abs=0.01)


def test_birth_rate_is_what_the_asfr_give_on_the_pyramid() -> None:
    assert demo.implied_crude_birth_rate() == pytest.approx(demo.CRUDE_BIRTH_RATE, abs=0.3)
    assert 5 * sum(demo.ASFR) / 1000 == pytest.approx(demo.TOTAL_FERTILITY_RATE, abs=0.01)
    assert sum(demo.mother_age_shares()) == pytest.approx(1.0)


def test_death_rate_is_what_the_life_table_gives_on_the_pyramid() -> None:
    assert demo.implied_crude_death_rate() == pytest.approx(demo.CRUDE_DEATH_RATE, abs=0.2)


def test_life_table_gives_published_life_expectancy() -> None:
    """GSO PCS 2024: men 72.3, women 77.2 years."""
    assert demo.life_expectancy(demo.MORTALITY_MALE) == pytest.approx(72.3, abs=1.0)
    assert demo.life_expectancy(demo.MORTALITY_FEMALE) == pytest.approx(77.2, abs=1.0)


def test_shares_sum_to_one() -> None:
    for shares in (demo.MARITAL_STATUS.values(), demo.HOUSEHOLD_SIZE_SHARES, demo.BIRTH_INTERVAL_SHARES.values(),
                   demo.LEGAL_FORM_SHARES.values()):
        assert sum(shares) == pytest.approx(1.0)
    assert sum(demo.MIGRANT_ORIGINS.values()) + demo.MIGRANT_ORIGIN_OTHER == pytest.approx(1.0)
    assert sum(demo.SURNAME_SHARES.values()) + demo.SURNAME_OTHER == pytest.approx(1.0)


def test_codes_and_names_are_the_reference_data() -> None:
    assert set(demo.MIGRANT_ORIGINS) <= province_codes() - {"74"}
    assert set(demo.ETHNICITY_BY_PROVINCE) <= province_codes()
    assert set(demo.LEGAL_FORM_SHARES) == LEGAL_FORMS
    for shares in (*demo.ETHNICITY_BY_PROVINCE.values(), demo.ETHNICITY_DEFAULT):
        assert set(shares) <= ethnicity_names()
        assert sum(shares.values()) == pytest.approx(1.0)


# --- judging ----------------------------------------------------------------------------------------------------


def test_judge_rules() -> None:
    assert judge("a", 10, 1, "s", 10.9).ok and not judge("a", 10, 1, "s", 11.1).ok
    assert judge("a", 1, 0, "s", 5, rule="at_least").ok and not judge("a", 1, 0, "s", 0, rule="at_least").ok
    assert judge("a", 0, 0.5, "s", 0.4, rule="at_most").ok and not judge("a", 0, 0.5, "s", 0.6, rule="at_most").ok
    assert not judge("a", 0, 10, "s", None).ok


def test_table_names_every_measure_and_marks_failures() -> None:
    table = format_table([judge("fine", 1, 0, "src", 1), judge("broken", 0, 0, "src", 3, unit="births")])
    lines = table.splitlines()
    assert lines[0].startswith("| measure | target | tolerance | source | kho | ok |")
    assert lines[2].endswith("| ok |") and lines[3].endswith("| FAIL |") and "| 3 |" in lines[3]


# --- record sets ------------------------------------------------------------------------------------------------

_serial = iter(range(1, 10**6))


def cccd(province: str = "074", sex_year: str = "190") -> str:
    return f"{province}{sex_year}{next(_serial):06d}"


def citizen(number: str, born: str, sex: str = "F", *, province: str = "74", ethnicity: str = "Kinh",
            status: str = "alive", name: str | None = None) -> Record:
    return {"cccd": number, "full_name": name or f"Nguyễn Thị {number}", "date_of_birth": born, "sex": sex,
            "ethnicity": ethnicity, "birth_province_code": province, "status": status,
            "date_of_death": None if status == "alive" else "2025-01-01"}


def birth(child: str, born: str, mother: str, place: str, sex: str = "F") -> Record:
    return {"registration_id": f"KS{next(_serial):012d}", "child_cccd": child, "child_sex": sex,
            "date_of_birth": born, "place_commune_code": place, "mother_cccd": mother, "registered_on": born}


def find(measures: list[Measure], name: str) -> Measure:
    (found,) = [m for m in measures if m.name == name]
    return found


def _home_old_and_new() -> tuple[str, str]:
    """An abolished commune code of Bình Dương and the new code it became."""
    old = sorted(c for c, r in communes().items() if r["province_code"] == "74" and c not in commune_codes_2025())[0]
    return old, commune_mapping_2025()[old][0].new_commune_code


OLD, NEW = _home_old_and_new()
ELSEWHERE = sorted(c for c, r in communes().items() if r["province_code"] != "74")[0]


def test_pyramid_counts_the_living_by_age_and_sex() -> None:
    people = [citizen(cccd(), "2023-01-01", "M"), citizen(cccd(), "2023-01-01", "F"),
              citizen(cccd(), "1990-01-01", "F"), citizen(cccd(), "1990-01-01", "F", status="deceased")]
    found = pyramid(Exports.from_records({"citizens": people}))
    assert find(found, "pyramid M 0-4").value == pytest.approx(100 / 3)
    assert find(found, "pyramid F 35-39").value == pytest.approx(100 / 3)
    assert find(found, "pyramid M 35-39").value == 0


def test_vital_rates_count_the_year_before_day_0() -> None:
    people = [citizen(cccd(), "1990-01-01") for _ in range(998)]
    people += [citizen(cccd(), "2024-07-01", "M"), citizen(cccd(), "2024-06-30", "F")]  # only the first is in
    deaths = [{"registration_id": "KT000000000001", "cccd": "x", "date_of_death": "2025-06-30"},
              {"registration_id": "KT000000000002", "cccd": "y", "date_of_death": "2024-06-30"}]
    found = vital_rates(Exports.from_records({"citizens": people, "deaths": deaths}))
    assert find(found, "crude birth rate (born in the 12 months to day 0)").value == pytest.approx(1.0)
    assert find(found, "crude death rate (deaths in the 12 months to day 0)").value == pytest.approx(1000 / 1000.5)


def test_fertility_finds_short_intervals_but_not_twins() -> None:
    mother = cccd()
    other = cccd()
    people = [citizen(mother, "1995-01-01"), citizen(other, "1990-06-01")]
    births = [birth(cccd(), "2021-01-01", mother, OLD), birth(cccd(), "2021-09-01", mother, OLD),  # 243 days
              birth(cccd(), "2023-01-01", other, OLD), birth(cccd(), "2023-01-01", other, OLD),  # twins
              birth(cccd(), "2025-01-01", other, OLD)]  # 731 days after the twins
    found = fertility(Exports.from_records({"citizens": people, "births": births}))
    assert find(found, "siblings born under 270 days apart, not twins").value == 1
    assert find(found, "twin deliveries").value == pytest.approx(100 / 4)
    assert find(found, "mother's age 25-29 at birth").value == pytest.approx(40)  # both of 1995's
    assert find(found, "mother's age 30-34 at birth").value == pytest.approx(60)


def test_names_count_everyone_who_shares_a_full_name() -> None:
    people = [citizen(cccd(), "1990-01-01", name="Nguyễn Văn An"), citizen(cccd(), "1991-01-01", name="Nguyễn Văn An"),
              citizen(cccd(), "1992-01-01", name="Huỳnh Thị Mai"), citizen(cccd(), "1993-01-01", name="Ông Thị Lan")]
    found = naming(Exports.from_records({"citizens": people}))
    assert find(found, "citizens sharing their exact full name").value == pytest.approx(50)
    assert find(found, "surname Hoàng/Huỳnh").value == pytest.approx(25)
    assert find(found, "surnames outside the 14 commonest").value == pytest.approx(25)


def test_households_count_open_members_and_generations() -> None:
    homes = [{"household_id": f"HK{i:010d}"} for i in range(2)]
    members = [{"household_id": "HK0000000000", "cccd": "a", "relation_to_head": "parent", "left_on": None},
               {"household_id": "HK0000000000", "cccd": "b", "relation_to_head": "head", "left_on": None},
               {"household_id": "HK0000000000", "cccd": "c", "relation_to_head": "child", "left_on": None},
               {"household_id": "HK0000000001", "cccd": "d", "relation_to_head": "head", "left_on": None},
               {"household_id": "HK0000000001", "cccd": "e", "relation_to_head": "child", "left_on": "2024-01-01"}]
    found = households(Exports.from_records({"households": homes, "household_members": members}))
    assert find(found, "households of three or more generations").value == pytest.approx(50)
    assert find(found, "households of 1 members").value == pytest.approx(50)
    assert find(found, "households of 3 members").value == pytest.approx(50)


def test_migration_reads_birth_province_and_ethnicity() -> None:
    people = [citizen(cccd("094"), "1990-01-01", province="94", ethnicity="Khmer" if i % 2 else "Kinh")
              for i in range(60)]
    people += [citizen(cccd(), "2010-01-01") for _ in range(40)]
    found = migration(Exports.from_records({"citizens": people}))
    assert find(found, "residents born in another province").value == pytest.approx(60)
    assert find(found, "migrants born in province 94").value == pytest.approx(100)
    assert find(found, "Khmer among those born in 94").value == pytest.approx(50)
    assert find(found, "Khmer among those born in 84").value is None  # nobody born there: cannot say


def test_births_before_the_move_belong_to_the_origin() -> None:
    mother = cccd("094")
    people = [citizen(mother, "1995-01-01", province="94")]
    moves = [{"change_id": "RC000000000001", "cccd": mother, "kind": "permanent", "from_commune_code": ELSEWHERE,
              "to_commune_code": OLD, "effective_on": "2020-01-01"},
             # a later move between Bình Dương's communes is no arrival
             {"change_id": "RC000000000002", "cccd": mother, "kind": "permanent", "from_commune_code": OLD,
              "to_commune_code": OLD, "effective_on": "2019-03-01"}]
    births = [birth(cccd(), "2019-01-01", mother, OLD), birth(cccd("094"), "2019-06-01", mother, ELSEWHERE),
              birth(cccd(), "2021-01-01", mother, OLD)]
    found = places(Exports.from_records({"citizens": people, "residence_changes": moves, "births": births}))
    wrong = find(found, "births before the mother's move, registered in Bình Dương")
    assert (wrong.value, wrong.detail) == (1, "of 2 births before a move")


def test_a_birth_carries_the_province_of_its_place() -> None:
    mother = cccd()
    births = [birth(cccd("074"), "2020-01-01", mother, OLD),  # right before the reform
              birth(cccd("079", "225"), "2025-07-02", mother, NEW),  # right after
              birth(cccd("094"), "2021-01-01", mother, OLD)]  # wrong
    found = places(Exports.from_records({"births": births}))
    assert find(found, "births whose CCCD province is not the place's").value == 1


def test_marriages_clamped_dates_and_remarriage() -> None:
    husband, first_wife, second_wife = cccd(), cccd(), cccd()
    rows = [{"registration_id": "KH000000000001", "husband_cccd": husband, "wife_cccd": first_wife,
             "registered_on": "2010-05-05", "place_commune_code": OLD},
            {"registration_id": "KH000000000002", "husband_cccd": husband, "wife_cccd": second_wife,
             "registered_on": "2021-05-05", "place_commune_code": OLD},
            {"registration_id": "KH000000000003", "husband_cccd": cccd(), "wife_cccd": cccd(),
             "registered_on": "2021-05-05", "place_commune_code": OLD}]
    for row in rows:
        row.update(husband_date_of_birth="1990-05-05", wife_date_of_birth="1995-05-05")
    found = marriages(Exports.from_records({"marriages": rows}))
    assert find(found, "largest share of day-0 marriages on one date").value == pytest.approx(200 / 3)
    assert find(found, "marriages where a partner married before").value == pytest.approx(100 / 3)
    first = find(found, "husband's mean age at first marriage (2020-07 to day 0)")  # the remarried husband is out
    assert (first.value, first.detail) == (pytest.approx(31, abs=0.01), "1 first marriages")
    assert find(found, "wife's mean age at first marriage (2020-07 to day 0)").value == pytest.approx(26, abs=0.01)


def test_enterprise_names_repeated() -> None:
    rows = [{"enterprise_code": str(i), "name": "Công ty TNHH An Phát" if i < 2 else f"Công ty TNHH Số {i}",
             "legal_form": "hop_danh" if i == 3 else "tnhh_1tv"} for i in range(4)]
    found = enterprises(Exports.from_records({"enterprises": rows}))
    assert find(found, "enterprises sharing a name").value == 2
    assert find(found, "legal form hop_danh").value == pytest.approx(25)


def test_reform_reads_the_feeds() -> None:
    number = cccd("079", "225")
    day0 = {"participants": [{"social_insurance_code": "7400000001", "cccd": cccd()}]}
    feeds = {1: {"households": [{"household_id": "HK0000000001", "commune_code": OLD},
                                {"household_id": "HK0000000002", "commune_code": NEW}],
                 "participants": [{"social_insurance_code": number, "cccd": number},
                                  {"social_insurance_code": "7400000002", "cccd": cccd()}],
                 "births": [birth(number, "2025-07-01", cccd(), NEW)]}}
    found = reform(Exports.from_records(day0, feeds))
    assert find(found, "feed records using an abolished commune code").value == 1
    assert find(found, "feed records using the new commune codes").value == 2  # the birth and one household
    assert find(found, "newborns of former Bình Dương with CCCD prefix 079").value == 100
    assert find(found, "new participants whose code is their CCCD").value == pytest.approx(50)


def test_insurance_cover_before_birth_and_overlaps() -> None:
    child = cccd("074", "225")
    people = [citizen(child, "2024-03-01")]
    participants = [{"social_insurance_code": "7400000001", "cccd": child}]
    periods = [{"coverage_id": "CV000000000001", "social_insurance_code": "7400000001", "coverage_type": "health",
                "valid_from": "2024-02-01", "valid_to": "2024-12-31"},
               {"coverage_id": "CV000000000002", "social_insurance_code": "7400000001", "coverage_type": "health",
                "valid_from": "2024-12-31", "valid_to": None}]
    found = insurance(Exports.from_records({"citizens": people, "participants": participants,
                                            "coverage_periods": periods}))
    assert find(found, "coverage starting before the participant's birth").value == 1
    assert find(found, "participants with overlapping periods of one kind").value == 1
    assert find(found, "children's health cover starting within 60 days of birth").value == 0


def test_overlaps() -> None:
    d = date
    assert not overlaps([(d(2020, 1, 1), d(2020, 12, 31)), (d(2021, 1, 1), None)])
    assert overlaps([(d(2021, 1, 1), None), (d(2020, 1, 1), d(2021, 1, 1))])
    assert overlaps([(d(2020, 1, 1), d(2022, 1, 1)), (d(2020, 6, 1), d(2020, 7, 1)), (d(2021, 1, 1), None)])
    assert overlaps([(d(2020, 1, 1), None), (d(2020, 1, 1), d(2020, 2, 1))])


def test_a_small_world_is_measured_from_its_streams() -> None:
    found = measure(WorldSpec(seed=3, citizens=400, days=2))
    names = [m.name for m in found]
    assert len(names) == len(set(names)) > 100
    assert all(m.source for m in found)
    assert find(found, "feed records using the new commune codes").value is not None
