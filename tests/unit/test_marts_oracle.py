"""The marts oracle reads docs/datasets.md literally: eras, names, ages, deaths, cover, rounding, a real world."""

from __future__ import annotations

import unicodedata
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest

from kho.simulator import World
from kho.simulator.generate import WorldSpec
from kho.sources import ENTITIES
from tests.support import marts_oracle as mo

AS_OF = date(2025, 7, 2)
Record = dict[str, str | None]


def citizen(cccd: str, *, name: str = "Nguyễn Văn An", born: str = "1990-01-15", sex: str = "M",
            commune: str = "25747", status: str = "alive", died: str | None = None,
            updated: str = "2025-06-01T00:00:00Z") -> Record:
    return {"cccd": cccd, "full_name": name, "date_of_birth": born, "sex": sex, "ethnicity": "Kinh",
            "birth_province_code": "74", "hometown_province_code": "74", "permanent_commune_code": commune,
            "temporary_commune_code": None, "household_id": None, "status": status, "date_of_death": died,
            "updated_at": updated}


def death(registration_id: str, cccd: str, died: str, *, place: str = "25747") -> Record:
    return {"registration_id": registration_id, "cccd": cccd, "date_of_death": died, "place_commune_code": place,
            "registered_on": died, "updated_at": "2025-06-01T00:00:00Z"}


def participant(code: str, cccd: str, name: str = "Nguyễn Văn An") -> Record:
    return {"social_insurance_code": code, "cccd": cccd, "full_name": name, "participant_type": "employee",
            "registered_hospital_code": "74001", "contribution_status": "paid", "updated_at": "2025-06-01T00:00:00Z"}


def cover(coverage_id: str, code: str, valid_from: str, valid_to: str | None, *, status: str = "active",
          kind: str = "health") -> Record:
    return {"coverage_id": coverage_id, "social_insurance_code": code, "coverage_type": kind,
            "valid_from": valid_from, "valid_to": valid_to, "status": status, "updated_at": "2025-06-01T00:00:00Z"}


def birth(registration_id: str, child: str, *, name: str = "Nguyễn Văn An", born: str = "1990-01-15",
          sex: str = "M", place: str = "25747", registered: str | None = None, mother: str = "074190000001",
          father: str | None = None) -> Record:
    return {"registration_id": registration_id, "child_cccd": child, "child_full_name": name, "child_sex": sex,
            "date_of_birth": born, "place_commune_code": place, "father_cccd": father, "mother_cccd": mother,
            "registered_on": registered or born, "updated_at": "2025-06-01T00:00:00Z"}


def member(household: str, cccd: str, relation: str, *, joined: str = "2010-01-01",
           left: str | None = None) -> Record:
    return {"household_id": household, "cccd": cccd, "relation_to_head": relation, "joined_on": joined,
            "left_on": left, "updated_at": "2025-06-01T00:00:00Z"}


def enterprise(code: str, rep: str, *, commune: str = "25747", industry: str = "1410",
               status: str = "active") -> Record:
    return {"enterprise_code": code, "name": "Công ty TNHH An Phát", "legal_form": "tnhh_1tv",
            "industry_code": industry, "commune_code": commune, "registered_capital": "1500000000.50",
            "legal_rep_cccd": rep, "status": status, "established_on": "2015-03-01",
            "updated_at": "2025-06-01T00:00:00Z"}


def golden(records: mo.RawRecords, as_of: date = AS_OF) -> dict[str, dict[str, object]]:
    return {row["cccd"]: row for row in mo.golden_citizens(records, as_of)}


# --- eras and units ---------------------------------------------------------------------------------------------

def test_code_of_both_eras_is_read_in_the_era_of_its_date() -> None:
    before = mo.commune_units("25747", date(2025, 6, 30))
    after = mo.commune_units("25747", date(2025, 7, 1))
    assert (before["commune_era"], before["commune_name_pre_2025"]) == ("pre_2025", "Phường Phú Cường")
    assert (before["commune_code_2025"], before["commune_name_2025"]) == ("25747", "Phường Thủ Dầu Một")
    assert (after["commune_era"], after["commune_name_2025"], after["province_code_2025"]) == (
        "2025", "Phường Thủ Dầu Một", "79")
    assert after["commune_code_pre_2025"] is None  # five old communes went into it


def test_pre_2025_code_dated_after_the_reform_is_read_as_pre_2025() -> None:
    units = mo.commune_units("25744", date(2025, 8, 1))
    assert units == {
        "commune_era": "pre_2025", "commune_code_pre_2025": "25744", "commune_name_pre_2025": "Phường Phú Lợi",
        "district_name_pre_2025": "Thành phố Thủ Dầu Một", "province_code_pre_2025": "74",
        "commune_code_2025": "25750", "commune_name_2025": "Phường Phú Lợi", "province_code_2025": "79",
        "commune_is_split": False,
    }


def test_2025_code_dated_before_the_reform_is_read_as_2025_with_its_only_predecessor() -> None:
    # Since the full reference, the only 2025-only codes are the special zones made of districts without communes
    units = mo.commune_units("26732", date(2024, 1, 1))
    assert units["commune_era"] == "2025"
    assert (units["commune_code_2025"], units["commune_name_2025"], units["province_code_2025"]) == (
        "26732", "Đặc khu Côn Đảo", "79")
    assert (units["commune_code_pre_2025"], units["province_code_pre_2025"]) == (None, None), "huyện Côn Đảo"


def test_split_commune_has_no_2025_commune_but_always_a_2025_province() -> None:
    units = mo.commune_units("25741", date(2025, 1, 1))
    assert units["commune_era"] == "pre_2025" and units["commune_is_split"] is True
    assert (units["commune_code_2025"], units["commune_name_2025"], units["province_code_2025"]) == (None, None, "79")


def test_2025_code_with_several_predecessors_keeps_only_their_common_province() -> None:
    units = mo.commune_units("25750", date(2025, 7, 1))
    assert (units["commune_code_pre_2025"], units["commune_name_pre_2025"], units["district_name_pre_2025"]) == (
        None, None, None)
    assert (units["province_code_pre_2025"], units["commune_name_2025"], units["commune_is_split"]) == (
        "74", "Phường Phú Lợi", False)


def test_code_of_neither_era_has_the_era_unknown_and_no_units() -> None:
    assert mo.commune_units("99999", date(2025, 7, 1)) == {**dict.fromkeys(mo.UNIT_COLUMNS), "commune_era": "unknown"}


def test_era_of_a_state_record_is_the_ho_chi_minh_date_of_its_updated_at() -> None:
    records = {"population.citizens": [citizen("074090000001", updated="2025-06-30T16:59:59Z"),
                                       citizen("074090000002", updated="2025-06-30T17:00:00Z")]}
    rows = golden(records)
    assert rows["074090000001"]["commune_era"] == "pre_2025"
    assert rows["074090000002"]["commune_era"] == "2025"


# --- names, ages, matching --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b"), [
    ("Nguyễn Thị Hương", unicodedata.normalize("NFD", "Nguyễn Thị Hương")),
    ("Lê Thị Hoà", "Lê Thị Hòa"),
    ("Trần Thị Thuỷ", "Trần Thị Thủy"),
    ("NGUYỄN VĂN AN", "nguyễn văn an"),
    ("  Phạm   Thị\tThúy ", "phạm thị thúy"),
    ("Ðặng Văn Đức", "Đặng Văn Đức"),
])
def test_names_that_normalise_equal(a: str, b: str) -> None:
    assert mo.normalise_name(a) == mo.normalise_name(b)


@pytest.mark.parametrize(("a", "b"), [("Hương", "Hướng"), ("Đặng", "Dang"), ("Hòa", "Hoa"), ("Thu", "Thư")])
def test_names_that_stay_different(a: str, b: str) -> None:
    assert mo.normalise_name(a) != mo.normalise_name(b)


def test_normalised_name_is_nfc_lower_case_with_d_and_tone_at_the_end() -> None:
    assert mo.normalise_name(" Đặng  Thị HÒA ") == unicodedata.normalize("NFC", "dăng\u0323 thi\u0323 hoa\u0300")
    assert mo.normalise_name("Hòa") == "hoà"
    assert mo.normalise_name(None) is None


@pytest.mark.parametrize(("on", "years"), [
    (date(2026, 2, 28), 17), (date(2026, 3, 1), 18), (date(2028, 2, 28), 19), (date(2028, 2, 29), 20),
])
def test_someone_born_on_29_february_comes_of_age_on_1_march(on: date, years: int) -> None:
    assert mo.completed_years(date(2008, 2, 29), on) == years


def test_match_quality_of_a_link() -> None:
    person = {"full_name": "Nguyễn Văn Hòa", "date_of_birth": date(1990, 1, 15), "sex": "M"}
    assert mo.match_quality(None, name="Nguyễn Văn Hòa") == "unmatched"
    assert mo.match_quality(person) == "exact"
    assert mo.match_quality(person, name="Nguyễn Văn Hòa", date_of_birth=date(1990, 1, 15), sex="M") == "exact"
    assert mo.match_quality(person, name="Nguyễn Văn Hoà") == "normalised"
    assert mo.match_quality(person, name="Nguyễn Văn Hoa") == "conflicting"
    assert mo.match_quality(person, name="Nguyễn Văn Hòa", sex="F") == "conflicting"
    assert mo.match_quality(person, date_of_birth=date(1990, 1, 16)) == "conflicting"


def test_golden_citizen_takes_the_worst_named_link_and_every_registry_that_mentions_it() -> None:
    hoa, lan, minh = "074090000001", "074190000002", "074090000003"
    records = {
        "population.citizens": [citizen(hoa, name="Nguyễn Văn Hòa"), citizen(lan, name="Trần Thị Lan", sex="F"),
                                citizen(minh)],
        "insurance.participants": [participant("7400000001", hoa, "Nguyễn Văn Hoà"),
                                   participant("7400000002", lan, unicodedata.normalize("NFD", "Trần Thị Lan"))],
        "civil_status.births": [birth("KS000000000001", hoa, name="Nguyễn Văn Hòa", born="1990-01-16",
                                      mother=lan)],
        "business.enterprises": [enterprise("3700000001", minh)],
    }
    rows = golden(records)
    assert (rows[hoa]["name_match_quality"], rows[hoa]["known_to_registries"]) == (
        "conflicting", ["civil_status", "insurance", "population"])
    assert (rows[lan]["name_match_quality"], rows[lan]["known_to_registries"]) == (
        "exact", ["civil_status", "insurance", "population"])
    assert (rows[minh]["name_match_quality"], rows[minh]["known_to_registries"]) == (
        None, ["business", "population"])
    links = mo.by_primary_key("citizen_identity", mo.citizen_identity(records))
    assert links[(hoa, "insurance", "participants", "7400000001", "participant")]["match_quality"] == "normalised"
    assert links[(hoa, "civil_status", "births", "KS000000000001", "child")]["match_quality"] == "conflicting"
    assert len(links) == 5  # participant x2, child, mother, legal representative; no father given


def test_link_to_a_cccd_the_population_registry_lacks_is_unmatched() -> None:
    records = {"business.enterprises": [enterprise("3700000001", "074090999999")]}
    assert mo.citizen_identity(records) == [{
        "cccd": "074090999999", "registry": "business", "entity": "enterprises", "record_key": "3700000001",
        "role": "legal_representative", "match_quality": "unmatched"}]
    row = mo.enterprises(records, AS_OF)[0]
    assert (row["legal_rep_known"], row["legal_rep_full_name"], row["legal_rep_is_alive"]) == (False, None, None)


# --- loading ----------------------------------------------------------------------------------------------------

def test_the_greatest_updated_at_wins_and_the_later_record_on_a_tie() -> None:
    cccd = "074090000001"
    records = {"population.citizens": [
        citizen(cccd, name="Newest", updated="2025-06-02T00:00:00Z"),
        citizen(cccd, name="Older", updated="2025-06-01T00:00:00Z"),
        citizen(cccd, name="Same time, later", updated="2025-06-02T00:00:00Z"),
    ]}
    assert golden(records)[cccd]["full_name"] == "Same time, later"


def test_loaded_values_take_the_contracts_types() -> None:
    records: dict[str, list[Record]] = {"business.enterprises": [enterprise("3700000001", "074090000001")],
               "population.households": [{"household_id": "HK7400000001", "head_cccd": "074090000001",
                                          "commune_code": "25747", "address_line": " Ấp 1 ", "member_count": "3",
                                          "updated_at": "2025-06-01T00:00:00Z"}]}
    assert mo.enterprises(records, AS_OF)[0]["registered_capital"] == Decimal("1500000000.50")
    household = mo.households(records, AS_OF)[0]
    assert (household["member_count"], household["address_line"]) == (3, "Ấp 1")


# --- deaths and households --------------------------------------------------------------------------------------

def test_earliest_civil_status_death_wins_over_later_ones_and_the_population_registry() -> None:
    records = {
        "population.citizens": [citizen("074090000001", status="deceased", died="2024-04-01"),
                                citizen("074090000002", status="deceased", died="2024-04-01")],
        "civil_status.deaths": [death("KT000000000009", "074090000001", "2024-05-02"),
                                death("KT000000000008", "074090000001", "2024-05-01"),
                                death("KT000000000007", "074090000003", "2024-05-01"),
                                death("KT000000000006", "074090000003", "2024-05-01")],
    }
    deaths = mo.citizen_deaths(records)
    assert deaths["074090000001"] == {"cccd": "074090000001", "date_of_death": date(2024, 5, 1),
                                      "death_registration_id": "KT000000000008", "death_source": "civil_status"}
    assert deaths["074090000002"] == {"cccd": "074090000002", "date_of_death": date(2024, 4, 1),
                                      "death_registration_id": None, "death_source": "population"}
    assert deaths["074090000003"]["death_registration_id"] == "KT000000000006"


@pytest.mark.parametrize(("died", "alive"), [(AS_OF - timedelta(days=1), False), (AS_OF, False),
                                             (AS_OF + timedelta(days=1), True)])
def test_is_alive_on_as_of_while_the_date_of_death_is_always_shown(died: date, alive: bool) -> None:
    records = {"population.citizens": [citizen("074090000001")],
               "civil_status.deaths": [death("KT000000000001", "074090000001", died.isoformat())]}
    row = golden(records)["074090000001"]
    assert (row["is_alive"], row["date_of_death"], row["death_source"]) == (alive, died, "civil_status")


def test_households_count_current_living_members_and_heads() -> None:
    head, spouse, child, parent, gone = (f"07409000000{i}" for i in range(1, 6))
    records: dict[str, list[Record]] = {
        "population.citizens": [citizen(c) for c in (head, spouse, child, parent, gone)],
        "population.households": [{"household_id": "HK7400000001", "head_cccd": head, "commune_code": "25747",
                                   "address_line": "Ấp 1", "member_count": "4",
                                   "updated_at": "2025-06-01T00:00:00Z"}],
        "population.household_members": [
            member("HK7400000001", head, "head"), member("HK7400000001", spouse, "spouse"),
            member("HK7400000001", child, "child", left="2024-01-01"), member("HK7400000001", parent, "parent"),
            member("HK7400000001", gone, "head"),
        ],
        "civil_status.deaths": [death("KT000000000001", spouse, "2025-01-01"),
                                death("KT000000000002", gone, (AS_OF + timedelta(days=1)).isoformat())],
    }
    row = mo.households(records, AS_OF)[0]
    assert (row["current_living_members"], row["current_heads"]) == (3, 2)
    assert golden(records)[child]["household_id"] is None


def test_current_membership_is_the_latest_joined_then_the_largest_household() -> None:
    cccd, other = "074090000001", "074090000002"
    records = {"population.citizens": [citizen(cccd), citizen(other)], "population.household_members": [
        member("HK7400000009", cccd, "child", joined="2000-01-01"), member("HK7400000002", cccd, "head"),
        member("HK7400000001", cccd, "spouse"), member("HK7400000005", cccd, "head", joined="2020-01-01",
                                                       left="2021-01-01"),
        member("HK7400000003", other, "other", joined="2015-01-01"),
        member("HK7400000004", other, "head", joined="2016-01-01"),
    ]}
    rows = golden(records)
    assert (rows[cccd]["household_id"], rows[cccd]["relation_to_head"]) == ("HK7400000002", "head")
    assert (rows[other]["household_id"], rows[other]["relation_to_head"]) == ("HK7400000004", "head")


# --- health cover and rates -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("valid_from", "valid_to", "status", "kind", "covered"), [
    ("2025-01-01", AS_OF.isoformat(), "active", "health", True),
    ("2025-01-01", (AS_OF - timedelta(days=1)).isoformat(), "active", "health", False),
    (AS_OF.isoformat(), None, "active", "health", True),
    ((AS_OF + timedelta(days=1)).isoformat(), None, "active", "health", False),
    ("2025-01-01", None, "lapsed", "health", False),
    ("2025-01-01", None, "active", "social", False),
])
def test_active_health_cover_on_as_of(valid_from: str, valid_to: str | None, status: str, kind: str,
                                      covered: bool) -> None:
    records = {"population.citizens": [citizen("074090000001")],
               "insurance.participants": [participant("7400000001", "074090000001")],
               "insurance.coverage_periods": [cover("CV000000000001", "7400000001", valid_from, valid_to,
                                                    status=status, kind=kind)]}
    assert golden(records)["074090000001"]["has_active_health_cover"] is covered


@pytest.mark.parametrize(("numerator", "denominator", "places", "rounded"), [
    (1, 32, 4, Decimal("0.0313")), (1000, 320, 2, Decimal("3.13")), (1000, 1600, 2, Decimal("0.63")),
    (2, 3, 2, Decimal("0.67")), (-1, 8, 2, Decimal("-0.13")), (0, 7, 4, Decimal("0.0000")),
])
def test_rates_round_half_away_from_zero(numerator: int, denominator: int, places: int, rounded: Decimal) -> None:
    value = mo.round_half_away(numerator, denominator, places)
    assert value == rounded and value.as_tuple().exponent == -places


def test_coverage_rate_over_living_citizens_rounds_half_away() -> None:
    people = [f"0740900{i:05d}" for i in range(33)]
    records = {"population.citizens": [citizen(c) for c in people],
               "civil_status.deaths": [death("KT000000000001", people[32], "2025-01-01")],
               "insurance.participants": [participant("7400000001", people[0])],
               "insurance.coverage_periods": [cover("CV000000000001", "7400000001", "2025-01-01", None)]}
    [commune] = mo.insurance_coverage_by_commune(records, AS_OF)
    [province] = mo.insurance_coverage_by_province(records, AS_OF)
    assert (commune["living_population"], commune["insured"], commune["coverage_rate"]) == (32, 1, Decimal("0.0313"))
    assert (province["province_code_2025"], province["province_name_2025"], province["coverage_rate"]) == (
        "79", "Thành phố Hồ Chí Minh", Decimal("0.0313"))
    every = mo.insurance_coverage_by_province(records, AS_OF, every_province=True)
    assert len(every) == 34 and sum(r["coverage_rate"] is None for r in every) == 33


def test_enterprises_per_1000_residents_rounds_half_away_and_is_null_without_residents() -> None:
    people = [f"0740900{i:05d}" for i in range(320)]
    records: dict[str, list[Record]] = {"population.citizens": [citizen(c) for c in people],
               "business.enterprises": [enterprise("3700000001", people[0]),
                                        enterprise("3700000002", people[1], status="dissolved"),
                                        enterprise("8900000003", people[2], commune="30292")],
               "business.branches": [
                   {"branch_code": "3700000001001", "enterprise_code": "3700000001", "name": "Chi nhánh 1",
                    "commune_code": "25750", "status": "active", "updated_at": "2025-06-01T00:00:00Z"},
                   {"branch_code": "3700000001002", "enterprise_code": "3700000001", "name": "Chi nhánh 2",
                    "commune_code": "25750", "status": "suspended", "updated_at": "2025-06-01T00:00:00Z"}]}
    rows = mo.by_primary_key("active_enterprises_by_industry_province",
                             mo.active_enterprises_by_industry_province(records, AS_OF))
    assert rows[("79", "1410")]["enterprises_per_1000_residents"] == Decimal("3.13")
    assert (rows[("91", "1410")]["residents"], rows[("91", "1410")]["enterprises_per_1000_residents"]) == (0, None)
    assert len(rows) == 2
    firms = mo.by_primary_key("enterprises", mo.enterprises(records, AS_OF))
    assert firms[("3700000001",)]["active_branches"] == 1
    assert (firms[("3700000001",)]["legal_rep_known"], firms[("3700000001",)]["legal_rep_is_alive"]) == (True, True)


# --- civil status -----------------------------------------------------------------------------------------------

def test_vital_events_count_by_month_at_the_place_in_the_era_of_registration() -> None:
    records = {
        "civil_status.births": [birth("KS000000000001", "074250000001", born="2025-06-15", registered="2025-07-03"),
                                birth("KS000000000002", "074250000002", born="2025-06-01", registered="2025-06-20"),
                                birth("KS000000000003", "074250000003", born="2025-06-30", registered="2025-07-01")],
        "civil_status.deaths": [death("KT000000000001", "074090000001", "2025-06-29")],
    }
    rows = mo.by_primary_key("vital_events_by_commune_month", mo.vital_events_by_commune_month(records))
    assert {pk: row["events"] for pk, row in rows.items()} == {
        (date(2025, 6, 1), "birth", "25747", "2025"): 2,
        (date(2025, 6, 1), "birth", "25747", "pre_2025"): 1,
        (date(2025, 6, 1), "death", "25747", "pre_2025"): 1,
    }
    assert rows[(date(2025, 6, 1), "birth", "25747", "pre_2025")]["commune_name_pre_2025"] == "Phường Phú Cường"


# --- a real simulated world -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world_records() -> dict[str, list[Record]]:
    world = World.build(WorldSpec(7, 500, 2))
    world.advance(2)
    return {e.qualified_name: world.snapshot(e) for e in ENTITIES}


def test_every_dataset_of_a_simulated_world_holds_together(world_records: dict[str, list[Record]]) -> None:
    as_of = date(2025, 7, 2)
    out = mo.compute_all(world_records, as_of)
    assert set(out) == set(mo.DATASETS)
    for name, rows in out.items():
        assert rows, name
        assert all(tuple(row) == mo.COLUMNS[name] for row in rows), name
        assert all(row[c] is not None for row in rows for c in mo.primary_key(name)), name
        assert len(mo.by_primary_key(name, rows)) == len(rows)
        assert rows == mo.DATASETS[name](world_records, as_of), name

    people = out["golden_citizens"]
    cccds = {r["cccd"] for r in world_records["population.citizens"]}
    assert len(people) == len(cccds) == len({p["cccd"] for p in people})
    assert all(p["commune_era"] is not None and "population" in p["known_to_registries"]
               and p["known_to_registries"] == sorted(p["known_to_registries"]) for p in people)
    alive = sum(p["is_alive"] for p in people)
    assert 0 < alive < len(people)

    per_commune = out["citizens_per_commune"]
    assert sum(r["citizens_total"] for r in per_commune) == len(people)
    assert sum(r["citizens_alive"] for r in per_commune) == alive
    assert sum(r["citizens_male"] + r["citizens_female"] for r in per_commune) == len(people)

    def totals(rows: list[dict[str, object]]) -> tuple[int, int]:
        return sum(r["living_population"] for r in rows), sum(r["insured"] for r in rows)  # type: ignore[misc]

    assert totals(out["insurance_coverage_by_commune"]) == totals(out["insurance_coverage_by_province"])
    assert totals(out["insurance_coverage_by_commune"]) == (
        alive, sum(p["is_alive"] and p["has_active_health_cover"] for p in people))

    registrations = sum(len({r["registration_id"] for r in world_records[f"civil_status.{e}"]})
                        for e in ("births", "deaths", "marriages"))
    assert sum(r["events"] for r in out["vital_events_by_commune_month"]) == registrations

    firms = out["enterprises"]
    assert sum(r["active_enterprises"] for r in out["active_enterprises_by_industry_province"]) == sum(
        f["status"] == "active" for f in firms)
    assert all(h["current_heads"] <= h["current_living_members"] for h in out["households"])

    by_cccd = {p["cccd"]: p for p in people}
    linked = Counter(link["match_quality"] == "unmatched" for link in out["citizen_identity"]
                     if link["cccd"] in by_cccd)
    assert linked[True] == 0 and linked[False] > 0


def test_a_commune_code_reused_by_the_reform_lies_in_one_2025_province_in_both_eras() -> None:
    """What lets citizens_per_commune give one 2025 province per code without an era."""
    from kho.sources import reference as ref

    reused = ref.commune_codes() & ref.commune_codes_2025()
    assert reused
    for code in reused:
        assert (mo.units_in_era(code, mo.PRE_2025)["province_code_2025"]
                == mo.units_in_era(code, mo.ERA_2025)["province_code_2025"]), code


def test_citizens_per_commune_gives_the_2025_province_beside_the_old_one() -> None:
    records = {"population.citizens": [citizen("074090000001", commune="25744"),
                                       citizen("074090000002", commune="26732", updated="2025-07-02T00:00:00Z"),
                                       citizen("074090000003", commune="99999")]}
    rows = {r["permanent_commune_code"]: r for r in mo.citizens_per_commune(records, AS_OF)}
    assert (rows["25744"]["province_code"], rows["25744"]["province_code_2025"]) == ("74", "79")
    assert (rows["26732"]["province_code"], rows["26732"]["province_code_2025"]) == (None, "79")
    assert (rows["99999"]["province_code"], rows["99999"]["province_code_2025"]) == (None, None)
