"""The shipped reference data holds together: 63 old provinces, 34 new ones, complete mappings, 54 ethnic groups."""

from __future__ import annotations

import csv
import unicodedata
from collections import Counter
from datetime import date

import pytest

from kho.sources import reference
from kho.sources.reference import (
    REFERENCE_DIR,
    REORGANISATION_DATE,
    commune_codes,
    commune_codes_2025,
    commune_mapping_2025,
    communes,
    ethnicities,
    ethnicity_names,
    known_commune_codes,
    new_communes_of,
    new_province_of,
    province_codes,
    province_codes_2025,
    province_mapping_2025,
    province_of_commune,
    provinces,
    provinces_2025,
    reference_sets,
)

THU_DAU_MOT = [
    ("25741", "Phường Hiệp Thành"), ("25744", "Phường Phú Lợi"), ("25747", "Phường Phú Cường"),
    ("25750", "Phường Phú Hòa"), ("25753", "Phường Phú Thọ"), ("25756", "Phường Chánh Nghĩa"),
    ("25759", "Phường Định Hoà"), ("25760", "Phường Hoà Phú"), ("25762", "Phường Phú Mỹ"),
    ("25763", "Phường Phú Tân"), ("25765", "Phường Tân An"), ("25768", "Phường Hiệp An"),
    ("25771", "Phường Tương Bình Hiệp"), ("25774", "Phường Chánh Mỹ"),
]


def _lines(name: str) -> list[str]:
    return (REFERENCE_DIR / name).read_text(encoding="utf-8").splitlines()


def test_there_are_63_old_provinces_with_two_digit_codes() -> None:
    assert len(provinces()) == 63 == len(province_codes())
    assert all(len(c) == 2 and c.isdigit() for c in province_codes())
    assert provinces()["74"] == "Tỉnh Bình Dương"


def test_there_are_34_new_units_six_cities_and_28_provinces() -> None:
    units = provinces_2025()
    assert len(units) == 34 == len(province_codes_2025())
    assert Counter(u.kind for u in units.values()) == {"city": 6, "province": 28}
    cities = {u.name for u in units.values() if u.kind == "city"}
    assert cities == {"Thành phố Hà Nội", "Thành phố Hải Phòng", "Thành phố Huế", "Thành phố Đà Nẵng",
                      "Thành phố Hồ Chí Minh", "Thành phố Cần Thơ"}
    assert province_codes_2025() <= province_codes(), "every new unit kept one of the old codes"


def test_every_old_province_maps_to_exactly_one_new_one() -> None:
    rows = list(csv.DictReader((REFERENCE_DIR / "province_mapping_2025.csv").open(encoding="utf-8")))
    assert Counter(r["old_province_code"] for r in rows) == Counter({c: 1 for c in province_codes()})
    assert set(province_mapping_2025().values()) == province_codes_2025()
    assert {r["effective_from"] for r in rows} == {REORGANISATION_DATE.isoformat()} == {"2025-07-01"}


@pytest.mark.parametrize(
    ("old", "new"),
    [("74", "79"), ("77", "79"), ("79", "79"), ("01", "01"), ("89", "91"), ("91", "91"), ("38", "38"),
     ("40", "40"), ("02", "08"), ("10", "15"), ("27", "24"), ("72", "80"), ("87", "82"), ("95", "96")],
)
def test_known_mergers_of_resolution_202(old: str, new: str) -> None:
    assert new_province_of(old) == new


def test_each_new_unit_absorbs_one_to_three_old_ones() -> None:
    sizes = Counter(province_mapping_2025().values())
    assert Counter(sizes.values()) == {1: 11, 2: 17, 3: 6}


def test_new_province_of_an_unknown_code_names_it() -> None:
    with pytest.raises(KeyError, match="'03'"):
        new_province_of("03")


def test_the_thu_dau_mot_rows_are_kept_exactly_as_before() -> None:
    lines = _lines("communes.csv")
    assert lines[0] == "commune_code,commune_name,district_code,district_name,province_code"
    assert lines[1:15] == [f"{code},{name},718,Thành phố Thủ Dầu Một,74" for code, name in THU_DAU_MOT]


def test_communes_cover_three_binh_duong_districts_and_migrant_provinces() -> None:
    rows = communes().values()
    districts = {r["district_code"] for r in rows if r["province_code"] == "74"}
    assert {"718", "724", "725"} <= districts
    assert {r["province_code"] for r in rows} >= {"74", "38", "40", "89"}
    assert sum(r["district_code"] == "724" for r in rows) == 7
    assert sum(r["district_code"] == "725" for r in rows) == 10


def test_every_commune_is_five_digits_unique_and_in_a_known_province() -> None:
    codes = [line.split(",")[0] for line in _lines("communes.csv")[1:]]
    assert len(codes) == len(set(codes)) == len(commune_codes())
    assert all(len(c) == 5 and c.isdigit() for c in codes)
    assert {r["province_code"] for r in communes().values()} <= province_codes()
    assert province_of_commune("25966") == "74"


def test_commune_mapping_covers_every_commune_and_only_those() -> None:
    assert set(commune_mapping_2025()) == commune_codes()
    for code, parts in commune_mapping_2025().items():
        shares = [p.share for p in parts]
        assert shares == ["whole"] or (len(parts) > 1 and set(shares) == {"part"}), code
        assert len({p.new_commune_code for p in parts}) == len(parts), code
        assert all(p.effective_from == date(2025, 7, 1) and p.source for p in parts), code


def test_commune_mapping_lands_in_the_new_province_of_the_old_commune() -> None:
    for code, parts in commune_mapping_2025().items():
        expected = new_province_of(province_of_commune(code))
        assert {p.new_province_code for p in parts} == {expected}, code
        assert all(len(p.new_commune_code) == 5 for p in parts)


def test_known_merges_and_splits_of_binh_duong() -> None:
    assert [p.new_commune_name for p in new_communes_of("25747")] == ["Phường Thủ Dầu Một"]
    assert [(p.new_commune_code, p.share) for p in new_communes_of("25741")] == [("25747", "part"), ("25750", "part")]
    assert {p.new_commune_name for p in new_communes_of("25981")} == {"Phường Thuận An"}
    with pytest.raises(KeyError, match="99999"):
        new_communes_of("99999")


def test_contracts_accept_old_and_new_commune_codes() -> None:
    assert known_commune_codes() == commune_codes() | commune_codes_2025()
    assert {"17677", "17212", "17818"} <= commune_codes_2025() - commune_codes()
    assert reference_sets("commune_codes")["commune_codes"] == known_commune_codes()


def test_there_are_54_ethnic_groups_coded_01_to_54() -> None:
    groups = ethnicities()
    assert list(groups) == [f"{i:02d}" for i in range(1, 55)]
    assert len(ethnicity_names()) == 54
    assert groups["01"] == "Kinh" and groups["05"] == "Khmer" and groups["54"] == "Ơ Đu"
    assert {"Kinh", "Tày", "Thái", "Mường", "Khmer", "Hoa", "Nùng", "H'Mông"} <= ethnicity_names()


@pytest.mark.parametrize("name", sorted(p.name for p in REFERENCE_DIR.glob("*.csv")))
def test_reference_files_are_nfc_utf8_with_a_header_and_no_blank_lines(name: str) -> None:
    raw = (REFERENCE_DIR / name).read_bytes()
    text = raw.decode("utf-8")
    assert not raw.startswith(b"\xef\xbb\xbf") and text.endswith("\n") and "\r" not in text
    assert unicodedata.normalize("NFC", text) == text
    lines = text.splitlines()
    assert len(lines) > 1 and all(lines)
    width = lines[0].count(",")
    assert all(line.count(",") == width for line in lines), "no field may contain a comma"


def test_accessors_are_cached_and_read_only() -> None:
    assert provinces() is provinces()
    with pytest.raises(TypeError):
        provinces()["00"] = "x"  # type: ignore[index]


def test_unknown_reference_set_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="province_codes, commune_codes, ethnicities"):
        reference_sets("colours")
    assert set(reference.REFERENCE_SETS) == {"province_codes", "commune_codes", "ethnicities"}
