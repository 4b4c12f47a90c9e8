"""Vietnamese text the simulator writes: name pools, addresses, enterprise names, and the variants registries send.

Surnames: the 14 shares quoted for Vietnam as a whole (Nguyễn 38.4 %, Trần 11 %, Lê 9.5 %, ...; see
`PUBLISHED_SURNAME_SHARES`), and the 10.9 % they leave spread over 139 rarer surnames in the proportions a real list
of names shows. Given and middle names, their frequencies and which middle name goes with which given name come from
the same real list (`name_counts.csv`, described in `kho.simulator.names`). Every pool is NFC. Names whose syllables
oa/oe/uy carry a tone (Hòa, Thúy, Thủy) are written the traditional way, tone on the first vowel, as most civil
records do; `move_tone` gives the other placement (Hoà, Thuý, Thuỷ).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import NamedTuple

from kho.simulator import demography
from kho.simulator.rng import F64, cumulative


def _nfc(words: Sequence[str]) -> tuple[str, ...]:
    return tuple(unicodedata.normalize("NFC", w) for w in words)


NAME_COUNTS_PATH = Path(__file__).with_name("name_counts.csv")
"""Counts derived from UIT-ViNames, a list of 26,850 real full names of Vietnamese university students (see
`kho.simulator.names` for the source, its bias and how the counts were made)."""


class NameCount(NamedTuple):
    sex: str
    """M, F, or empty for surnames."""
    part: str
    """surname, structure, given, pair, first, single_middle, single_given or pairs_seen."""
    middle: str
    given: str
    n: int
    """How often the list has it."""


@cache
def name_counts() -> tuple[NameCount, ...]:
    with NAME_COUNTS_PATH.open(encoding="utf-8", newline="") as fh:
        return tuple(NameCount(r["sex"], r["part"], unicodedata.normalize("NFC", r["middle"]),
                               unicodedata.normalize("NFC", r["given"]), int(r["count"])) for r in csv.DictReader(fh))


PUBLISHED_SURNAME_SHARES = {
    "Nguyễn": 38.4, "Trần": 11.0, "Lê": 9.5, "Phạm": 7.1, "Huỳnh": 3.45, "Hoàng": 1.65, "Phan": 4.5, "Võ": 2.8,
    "Vũ": 1.1, "Đặng": 2.1, "Bùi": 2.0, "Đỗ": 1.4, "Hồ": 1.3, "Ngô": 1.3, "Dương": 1.0, "Lý": 0.5,
}
"""Per cent of Vietnamese bearing each surname: the table "Distribution of Vietnamese family names" of English
Wikipedia's "Vietnamese name" article (quoted unchanged since at least 2009). A secondary source: no census tabulates
surnames, and the table does not say which sample it counts. It pools Huỳnh/Hoàng (5.1 %) and Võ/Vũ (3.9 %), one name
in two spellings; they are split here as the real list of southern students splits them (Huỳnh 68 % of the pair, Võ
72 %). Three real samples find fewer Nguyễn than 38.4 %: 31.7 % in UIT-ViNames, 31.4 % in the 8,757 UIT forum names of
duyet/vietnamese-namedb, 29.6 % in 207,000 names of Đắk Lắk (hoten.org, sample DKL01)."""


def _surname_shares() -> dict[str, float]:
    """The published shares, then the rest (10.9 %) over the list's other surnames, in the list's proportions."""
    tail = {r.middle: r.n for r in name_counts() if r.part == "surname" and r.middle not in
            PUBLISHED_SURNAME_SHARES}
    rest = 100.0 - sum(PUBLISHED_SURNAME_SHARES.values())
    total = sum(tail.values())
    return {**PUBLISHED_SURNAME_SHARES, **{name: rest * n / total for name, n in tail.items()}}


SURNAME_SHARES = _surname_shares()
SURNAMES = _nfc(list(SURNAME_SHARES))
SURNAME_CUM: F64 = cumulative(list(SURNAME_SHARES.values()))

TRADITIONAL_MIDDLE = _nfc(["Văn", "Thị"])
"""Văn for men, Thị for women: most names before 1980, rarer since (`kho.simulator.names` has the shares by year)."""


def _pool(sex: str, parts: tuple[str, ...], field: str) -> tuple[str, ...]:
    """The words of one kind for one sex, most frequent first (ties in code-point order)."""
    totals: dict[str, int] = {}
    for r in name_counts():
        if r.sex == sex and r.part in parts:
            word = getattr(r, field)
            totals[word] = totals.get(word, 0) + r.n
    return _nfc(sorted(totals, key=lambda w: (-totals[w], w)))


GIVEN = (_pool("M", ("given",), "given"), _pool("F", ("given",), "given"))
"""Given names by sex (0 = M, 1 = F), most frequent first: every given name the real list holds twice, or once if
the word appears twice somewhere in the list (a real word, not a slip)."""
MIDDLE = (_pool("M", ("pair", "first", "single_middle"), "middle"),
          _pool("F", ("pair", "first", "single_middle"), "middle"))
"""Middle names other than Văn/Thị by sex, most frequent first, kept as given names are."""

STREETS = _nfc([
    "Đại lộ Bình Dương", "Cách Mạng Tháng Tám", "Yersin", "Phú Lợi", "Huỳnh Văn Lũy", "Lê Hồng Phong",
    "Nguyễn Văn Tiết", "Ngô Quyền", "30 Tháng 4", "Bùi Quốc Khánh", "Trần Văn Ơn", "Hùng Vương", "Nguyễn Trãi",
    "Lý Thường Kiệt", "Mỹ Phước Tân Vạn", "Nguyễn Chí Thanh", "Phạm Ngọc Thạch", "Lê Thị Trung",
])
HAMLETS = _nfc(["Ấp 1", "Ấp 2", "Ấp 3", "Ấp Bình Phước", "Ấp Tân Lập", "Ấp Hòa Lợi", "Khu phố 1", "Khu phố 2",
                "Khu phố 3", "Khu phố 4", "Khu phố Chánh Lộc", "Khu phố Bình Đức"])

BRAND_HEADS = _nfc([
    "Anh", "Âu", "Ánh", "Bách", "Bảo", "Bắc", "Bằng", "Bích", "Ca", "Cát", "Châu", "Chánh", "Chí", "Chiến", "Chính",
    "Công", "Danh", "Dân", "Diệp", "Du", "Dung", "Duyên", "Đại", "Đan", "Đăng", "Đạo", "Điệp", "Định", "Đoàn", "Đồng",
    "Giao", "Hạ", "Hạnh", "Hảo", "Hiền", "Hiển", "Hiếu", "Hoa", "Hoài", "Học", "Hợp", "Huân", "Huệ", "Hùng", "Hương",
    "Huyền", "Khả", "Khanh", "Khánh", "Khiêm", "Khương", "Kiên", "Kiến", "Kỳ", "Lạc", "Lai", "Lam", "Lan", "Lập",
    "Liên", "Lương", "Mai", "Mẫn", "Miên", "Mộc", "Năng", "Nga", "Nghi", "Nghiệp", "Nhã", "Nhất", "Nhiên", "Như",
    "Ninh", "Oanh", "Pháp", "Phi", "Phố", "Phổ", "Phụng", "Phước", "Quế", "Quốc", "Quyền", "Quyết", "Sa", "Sâm", "Sen",
    "Sinh", "Song", "Sương", "Tạo", "Tấn", "Thạch", "Thanh", "Thạnh", "Thảo", "Thăng", "Thân", "Thế", "Thi", "Thiên",
    "Thiết", "Thơ", "Thọ", "Thu", "Thục", "Thủy", "Thương", "Tiên", "Tiền", "Tịnh", "Tòng", "Trà", "Trân", "Trang",
    "Triết", "Triều", "Trinh", "Trọng", "Trúc", "Tuệ", "Tùng", "Tuyết", "Ưng", "Uyên", "Vạn", "Văn", "Vi", "Viên",
    "Viễn", "Vĩ", "Vĩnh", "Vọng", "Vững", "Xuân", "Yên", "Ý", "Cẩm", "Bạch", "Cúc", "Đài", "Hằng", "Hiên", "Hội",
    "Kha", "Khai", "Khê", "Kính", "Liêm", "Lĩnh", "Loan", "Nguyệt", "Nhạn", "Nhơn", "Nhung", "Quảng", "Sáng", "Sao",
])
"""Syllables that open an enterprise's proper name (tên riêng): two distinct ones, then one of `BRAND_TAILS`."""
BRAND_TAILS = _nfc([
    "Phát", "Lộc", "Thịnh", "Hưng", "Long", "Thành", "Tiến", "Đạt", "Khang", "Phú", "Quý", "Vinh", "Tín", "Hòa", "Lợi",
    "Vượng", "Thuận", "Gia", "Việt", "Nam", "Á", "Sơn", "Hải", "Hà", "Minh", "Quang", "Trí", "Tâm", "Nguyên", "Phong",
    "Cường", "Dũng", "Huy", "Khôi", "Kiệt", "Luân", "Nghĩa", "Nhân", "Phúc", "Sang", "Tài", "Thắng", "Toàn", "Trung",
    "Tú", "Uy", "Vũ", "Xương", "Hậu", "Hiệp", "Khải", "Lâm", "Mỹ", "Ngân", "Ngọc", "Hoàn", "Hào", "Hân", "Khoa", "Kim",
    "Linh", "Mạnh", "Nhật", "Phương", "Quân", "Thái", "Thiện", "Thông", "Trường", "Tuấn", "Tường", "Vân", "Yến", "Đức",
    "Điền", "Đông", "Dương", "Duy", "Giang", "Hoàng", "Hồng", "Lực", "Bình", "An", "Hữu", "Chân", "Cơ", "Độ", "Lễ",
    "Ngôn", "Nhi", "Thiều", "Đỉnh", "Hưởng", "Lũy", "Mậu", "Tỷ", "Thuần", "Khiết", "Toản",
])
"""Syllables that close an enterprise's proper name (An Phát, Minh Long, ... Thịnh)."""
LEGAL_FORMS = ("tnhh_1tv", "tnhh_2tv", "co_phan", "tu_nhan", "hop_danh")
LEGAL_FORM_CUM: F64 = cumulative([demography.LEGAL_FORM_SHARES[form] for form in LEGAL_FORMS])
"""Legal forms of the enterprises registered on day 0: `demography.LEGAL_FORM_SHARES` (sources there)."""
LEGAL_FORM_NEW_CUM: F64 = cumulative([69.7, 16.1, 13.2, 1.0, 0.03])
"""Legal forms of enterprises registered in a day: the national business registration portal's count for week 26
of 2024 (dangkykinhdoanh.gov.vn: 2,441 one-member limited, 563 limited with several members, 462 joint-stock, 35
private of 3,502 new enterprises; partnerships are too few to show, 0.03 % here)."""
LEGAL_FORM_NAMES = _nfc(["Công ty TNHH", "Công ty TNHH", "Công ty Cổ phần", "Doanh nghiệp tư nhân",
                         "Công ty Hợp danh"])

INDUSTRIES: tuple[tuple[str, str], ...] = tuple((code, unicodedata.normalize("NFC", name)) for code, name in (
    ("1410", "May mặc"), ("1520", "Giày dép"), ("1622", "Chế biến gỗ"), ("2220", "Nhựa"), ("2592", "Cơ khí"),
    ("3100", "Nội thất"), ("4101", "Xây dựng"), ("4330", "Hoàn thiện công trình"), ("4610", "Thương mại"),
    ("4632", "Thực phẩm"), ("4659", "Thiết bị công nghiệp"), ("4663", "Vật liệu xây dựng"),
    ("4933", "Vận tải"), ("5210", "Kho bãi"), ("5610", "Nhà hàng"), ("6201", "Phần mềm"),
    ("6810", "Bất động sản"), ("7020", "Tư vấn"), ("8299", "Dịch vụ"), ("4520", "Sửa chữa ô tô"),
))
"""VSIC 2018 four-digit codes common among Bình Dương's enterprises, with the word a company name uses."""
INDUSTRY_CUM: F64 = cumulative([12, 5, 6, 5, 6, 8, 6, 4, 14, 4, 5, 4, 4, 3, 3, 2, 2, 3, 3, 1])

_TONES = "\u0300\u0301\u0303\u0309\u0323"
_END = r"(?=$|[\s,])"
# The o of oa/oe and the u of uy carry the tone traditionally (Hòa, Thủy) and pass it on in the modern way (Hoà,
# Thuỷ), at the end of a syllable only. Not the u of ua (của, lụa: the u is the vowel) nor of qu- (Quý: the u is
# part of the consonant), whose tone has one place.
_TRADITIONAL = re.compile(f"(?<![qQ])([oO](?=[{_TONES}][aAeE])|[uU](?=[{_TONES}][yY]))([{_TONES}])([aAeEyY]){_END}")
_MODERN = re.compile(f"(?<![qQ])([oO](?=[aAeE][{_TONES}])|[uU](?=[yY][{_TONES}]))([aAeEyY])([{_TONES}]){_END}")


def move_tone(name: str) -> str | None:
    """The name with the tone of open oa/oe/uy syllables moved to the other vowel (Hòa ↔ Hoà), or None.

    None when no syllable has a tone to move: the variant would be the name itself.
    """
    decomposed = unicodedata.normalize("NFD", name)
    moved, count = _TRADITIONAL.subn(r"\1\3\2", decomposed)
    if not count:
        moved, count = _MODERN.subn(r"\1\3\2", decomposed)
    return unicodedata.normalize("NFC", moved) if count else None


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def differs_in_nfd(text: str) -> bool:
    """Whether the NFD form is a different string (plain ASCII names are the same in both forms)."""
    return nfd(text) != text
