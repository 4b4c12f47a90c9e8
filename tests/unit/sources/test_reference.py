"""The shipped reference data holds together: 63 old provinces, 34 new ones, 10,035 old communes, 3,321 new ones,
complete mappings between them, 54 ethnic groups; counts as the resolutions publish them."""

from __future__ import annotations

import csv
import re
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
    commune_predecessors_2025,
    communes,
    communes_2025,
    ethnicities,
    ethnicity_names,
    known_commune_codes,
    new_communes_of,
    new_province_of,
    old_communes_of,
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


PUBLISHED_2025 = {
    "01": (75, 51, 0), "04": (53, 3, 0), "08": (117, 7, 0), "11": (42, 3, 0), "12": (36, 2, 0), "14": (67, 8, 0),
    "15": (89, 10, 0), "19": (77, 15, 0), "20": (61, 4, 0), "22": (22, 30, 2), "24": (66, 33, 0), "25": (133, 15, 0),
    "31": (67, 45, 2), "33": (93, 11, 0), "37": (97, 32, 0), "38": (147, 19, 0), "40": (119, 11, 0), "42": (60, 9, 0),
    "44": (69, 8, 1), "46": (19, 21, 0), "48": (70, 23, 1), "51": (86, 9, 1), "52": (110, 25, 0), "56": (48, 16, 1),
    "66": (88, 14, 0), "68": (103, 20, 1), "75": (72, 23, 0), "79": (54, 113, 1), "80": (82, 14, 0), "82": (82, 20, 0),
    "86": (105, 19, 0), "91": (85, 14, 3), "92": (72, 31, 0), "96": (55, 9, 0),
}
"""New province → (xã, phường, đặc khu) after the reform, from the closing clause ("Sau khi sắp xếp, ... có N đơn vị
hành chính cấp xã, gồm ...") of each of the 34 resolutions 1654..1687/NQ-UBTVQH15."""
DISTRICTS_WITHOUT_COMMUNES = {"318": "11948", "471": "19742", "498": "20333", "536": "21548", "755": "26732"}
"""Bạch Long Vĩ, Cồn Cỏ, Hoàng Sa, Lý Sơn, Côn Đảo: districts with no commune below them, each made a special zone."""
ORIGIN_PROVINCES = {"38": 547, "40": 412, "42": 209, "34": 242, "36": 175, "51": 170, "52": 155, "80": 186, "82": 164,
                    "83": 148, "84": 104, "86": 102, "87": 141, "89": 155, "91": 143, "92": 80, "93": 75, "94": 108,
                    "95": 64, "96": 100, "75": 159, "77": 77, "79": 273}
"""Commune counts (2025-03 catalogue, ghosts removed) of the provinces migrants to Bình Dương come from."""


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


def test_the_rows_from_before_the_full_reference_are_kept_byte_for_byte() -> None:
    lines = _lines("communes.csv")
    assert lines[0] == "commune_code,commune_name,district_code,district_name,province_code"
    assert {f"{code},{name},718,Thành phố Thủ Dầu Một,74" for code, name in THU_DAU_MOT} <= set(lines)
    mapping = _lines("commune_mapping_2025.csv")
    assert [line for line in mapping if line.startswith("25741,")] == [
        "25741,Phường Hiệp Thành,25747,Phường Thủ Dầu Một,79,part,2025-07-01,NQ 1685/NQ-UBTVQH15 k.87",
        "25741,Phường Hiệp Thành,25750,Phường Phú Lợi,79,part,2025-07-01,NQ 1685/NQ-UBTVQH15 k.88",
    ]
    assert ("14854,Xã Mường Lý,14854,Xã Mường Lý,38,whole,2025-07-01,NQ 1686/NQ-UBTVQH15 k.146 (not rearranged)"
            in mapping)


def test_there_are_10035_old_communes_in_all_63_provinces() -> None:
    """10,035 commune-level units before the reform, as the government reported when announcing 3,321."""
    assert len(communes()) == 10_035 == len(commune_codes())
    by_province = Counter(r["province_code"] for r in communes().values())
    assert set(by_province) == province_codes()
    assert by_province["74"] == 91
    assert {p: by_province[p] for p in ORIGIN_PROVINCES} == ORIGIN_PROVINCES


def test_binh_duong_keeps_its_cities_districts() -> None:
    rows = communes().values()
    districts = Counter(r["district_code"] for r in rows if r["province_code"] == "74")
    assert districts["718"] == 14 and districts["724"] == 7 and districts["725"] == 10
    assert len(districts) == 9


def test_every_commune_is_five_digits_unique_and_in_a_known_province() -> None:
    codes = [line.split(",")[0] for line in _lines("communes.csv")[1:]]
    assert len(codes) == len(set(codes)) == len(commune_codes())
    assert codes == sorted(codes)
    assert all(len(c) == 5 and c.isdigit() for c in codes)
    assert all(len(r["district_code"]) == 3 and r["district_code"].isdigit() for r in communes().values())
    assert {r["province_code"] for r in communes().values()} <= province_codes()
    assert all(r["commune_name"].split()[0] in ("Xã", "Phường", "Thị") for r in communes().values())
    assert province_of_commune("25966") == "74"


def test_there_are_3321_new_units_as_each_resolution_publishes() -> None:
    units = communes_2025()
    assert len(units) == 3_321 == len(commune_codes_2025())
    assert Counter(u.kind for u in units.values()) == {"commune": 2_621, "ward": 687, "special_zone": 13}
    by_province: dict[str, Counter[str]] = {p: Counter() for p in PUBLISHED_2025}
    for u in units.values():
        by_province[u.province_code][u.kind] += 1
    assert {p: (c["commune"], c["ward"], c["special_zone"]) for p, c in by_province.items()} == PUBLISHED_2025
    assert set(PUBLISHED_2025) == province_codes_2025()
    prefix = {"commune": "Xã ", "ward": "Phường ", "special_zone": "Đặc khu "}
    assert all(u.name.startswith(prefix[u.kind]) and len(u.code) == 5 and u.code.isdigit() for u in units.values())
    assert len({(u.province_code, u.name) for u in units.values()}) == len(units), "names are unique per province"


def test_every_old_commune_maps_to_new_ones_of_its_new_province() -> None:
    mapping = commune_mapping_2025()
    assert set(mapping) == commune_codes() | set(DISTRICTS_WITHOUT_COMMUNES)
    units = communes_2025()
    for code, parts in mapping.items():
        shares = [p.share for p in parts]
        assert shares == ["whole"] or (len(parts) > 1 and set(shares) == {"part"}), code
        assert len({p.new_commune_code for p in parts}) == len(parts), code
        assert all(p.effective_from == date(2025, 7, 1) and p.source for p in parts), code
        assert all(units[p.new_commune_code][1::2] == (p.new_commune_name, p.new_province_code) for p in parts), code
        if code in communes():
            assert {p.new_province_code for p in parts} == {new_province_of(province_of_commune(code))}, code
        assert not all(p.area_only for p in parts), f"{code}: its people must go somewhere"


def test_every_new_unit_has_a_predecessor_and_mostly_keeps_its_code() -> None:
    predecessors = commune_predecessors_2025()
    assert set(predecessors) == commune_codes_2025()
    kept_another = {code for code, parts in predecessors.items() if code not in {p.old_commune_code for p in parts}}
    # Công văn 1027 gives the unchanged Xã Ia Mơ (old 23938) the code 23737 of Xã Ia Mơ Nông (see README)
    assert kept_another == set(DISTRICTS_WITHOUT_COMMUNES.values()) | {"23737"}
    assert commune_codes_2025() - commune_codes() == set(DISTRICTS_WITHOUT_COMMUNES.values())


def test_districts_without_communes_became_special_zones_whole() -> None:
    district_codes = {r["district_code"] for r in communes().values()}
    for district, zone in DISTRICTS_WITHOUT_COMMUNES.items():
        assert district not in district_codes
        [part] = new_communes_of(district)
        assert (part.new_commune_code, part.share) == (zone, "whole")
        assert communes_2025()[zone].kind == "special_zone"
        assert old_communes_of(zone) == (part,)


def test_mapping_rows_cite_a_clause_of_the_resolution_of_their_new_province() -> None:
    resolution = re.compile(r"^NQ (16[5-8]\d)/NQ-UBTVQH15 k\.(\d+)"
                            r"(?: \((not rearranged|renamed|area only|population only)\))?$")
    by_province: dict[str, set[str]] = {}
    notes: Counter[str] = Counter()
    for parts in commune_mapping_2025().values():
        for p in parts:
            match = resolution.match(p.source)
            assert match, p
            by_province.setdefault(p.new_province_code, set()).add(match.group(1))
            notes[match.group(3) or ""] += 1
    assert all(len(numbers) == 1 for numbers in by_province.values()), "one resolution per new province"
    assert len({n for numbers in by_province.values() for n in numbers}) == 34
    assert notes["not rearranged"] == 127, "the units the 34 closing clauses list as not rearranged"
    assert notes["renamed"] == 2
    assert all(p.share == "part" for ps in commune_mapping_2025().values() for p in ps if p.area_only)


def test_old_names_in_the_mapping_are_the_communes_names() -> None:
    for row in csv.DictReader((REFERENCE_DIR / "commune_mapping_2025.csv").open(encoding="utf-8")):
        if row["old_commune_code"] in communes():
            assert row["old_commune_name"] == communes()[row["old_commune_code"]]["commune_name"], row


def test_known_merges_and_splits() -> None:
    assert [p.new_commune_name for p in new_communes_of("25747")] == ["Phường Thủ Dầu Một"]
    assert [(p.new_commune_code, p.share) for p in new_communes_of("25741")] == [("25747", "part"), ("25750", "part")]
    assert {p.new_commune_name for p in new_communes_of("25981")} == {"Phường Thuận An"}
    assert [p.new_commune_name for p in new_communes_of("30622")] == ["Xã Vĩnh An"], "An Giang's Tân Phú, 1654 k.31"
    assert [p.new_commune_name for p in new_communes_of("23521")] == ["Xã Đăk Hà"], "Hà Mòn, 1677 k.56"
    ky_loi = new_communes_of("18796")
    assert [p.source.split(" (")[1] for p in ky_loi] == ["area only)", "population only)", "population only)"]
    assert [p.area_only for p in ky_loi] == [True, False, False]
    assert {p.old_commune_code for p in old_communes_of("25747")} == {"25741", "25747", "25753", "25756", "25774"}
    with pytest.raises(KeyError, match="99999"):
        new_communes_of("99999")
    with pytest.raises(KeyError, match="99999"):
        old_communes_of("99999")


def test_contracts_accept_old_and_new_commune_codes() -> None:
    assert known_commune_codes() == commune_codes() | commune_codes_2025()
    assert {"17677", "17212", "17818", "26732"} <= commune_codes_2025()
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
