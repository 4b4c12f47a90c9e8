"""Vietnamese text the simulator writes: name pools, addresses, enterprise names, and the variants registries send.

Shares are illustrative approximations for Bình Dương (commonly cited surname shares; southern forms Huỳnh and Võ
outnumber Hoàng and Vũ), not census figures: tests and demos need plausible shapes, not precise ones.
Every pool is NFC. Names whose syllables oa/oe/uy carry a tone (Hòa, Thúy, Thủy) are written the traditional way,
tone on the first vowel, as most civil records do; `move_tone` gives the other placement (Hoà, Thuý, Thuỷ).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from kho.simulator.rng import F64, cumulative


def _nfc(words: Sequence[str]) -> tuple[str, ...]:
    return tuple(unicodedata.normalize("NFC", w) for w in words)


_SURNAME_SHARES = {
    "Nguyễn": 38.4, "Trần": 11.0, "Lê": 9.5, "Phạm": 7.1, "Huỳnh": 2.9, "Hoàng": 2.2, "Phan": 4.5,
    "Võ": 2.5, "Vũ": 1.4, "Đặng": 2.1, "Bùi": 2.0, "Đỗ": 1.4, "Hồ": 1.3, "Ngô": 1.3, "Dương": 1.0,
    "Lý": 0.5, "Trương": 0.9, "Đinh": 0.7, "Lâm": 0.6, "Mai": 0.5, "Hà": 0.4, "Lương": 0.4, "Đoàn": 0.4,
    "Trịnh": 0.4, "Cao": 0.4, "Tô": 0.3, "Châu": 0.3, "Lưu": 0.3, "Thái": 0.3, "Tạ": 0.2,
}
SURNAMES = _nfc(list(_SURNAME_SHARES))
SURNAME_CUM: F64 = cumulative(list(_SURNAME_SHARES.values()))

TRADITIONAL_MIDDLE = _nfc(["Văn", "Thị"])
"""Văn for men, Thị for women: common before 1990, rarer since."""
MIDDLE = (
    _nfc(["Hữu", "Đức", "Minh", "Quốc", "Thanh", "Công", "Hoàng", "Gia", "Ngọc", "Tuấn", "Anh", "Trọng"]),
    _nfc(["Ngọc", "Thanh", "Thu", "Minh", "Kim", "Mỹ", "Bảo", "Phương", "Hồng", "Khánh", "Hoài", "Diệu"]),
)
GIVEN = (
    _nfc([
        "An", "Anh", "Bảo", "Bình", "Cường", "Dũng", "Duy", "Đạt", "Đức", "Hải", "Hiếu", "Hòa", "Hoàng", "Hùng",
        "Huy", "Hưng", "Khang", "Khánh", "Khoa", "Kiên", "Lâm", "Lộc", "Long", "Luân", "Minh", "Nam", "Nghĩa",
        "Nhân", "Phát", "Phong", "Phúc", "Quang", "Quân", "Sơn", "Tài", "Tâm", "Thắng", "Thành", "Thiện", "Thịnh",
        "Thụy", "Toàn", "Trí", "Trọng", "Trung", "Tuấn", "Tùng", "Việt", "Vinh", "Vũ",
    ]),
    _nfc([
        "Anh", "Châu", "Chi", "Diễm", "Dung", "Duyên", "Giang", "Hà", "Hằng", "Hạnh", "Hiền", "Hòa", "Hoa",
        "Hồng", "Huệ", "Hương", "Huyền", "Lan", "Liên", "Linh", "Loan", "Ly", "Mai", "My", "Nga", "Ngân", "Ngọc",
        "Nhi", "Nhung", "Như", "Oanh", "Phương", "Quyên", "Quỳnh", "Tâm", "Thảo", "Thu", "Thùy", "Thúy", "Thủy",
        "Trang", "Trâm", "Trinh", "Tuyết", "Uyên", "Vân", "Vy", "Xuân", "Yến",
    ]),
)
"""Given names by sex (0 = M, 1 = F)."""

STREETS = _nfc([
    "Đại lộ Bình Dương", "Cách Mạng Tháng Tám", "Yersin", "Phú Lợi", "Huỳnh Văn Lũy", "Lê Hồng Phong",
    "Nguyễn Văn Tiết", "Ngô Quyền", "30 Tháng 4", "Bùi Quốc Khánh", "Trần Văn Ơn", "Hùng Vương", "Nguyễn Trãi",
    "Lý Thường Kiệt", "Mỹ Phước Tân Vạn", "Nguyễn Chí Thanh", "Phạm Ngọc Thạch", "Lê Thị Trung",
])
HAMLETS = _nfc(["Ấp 1", "Ấp 2", "Ấp 3", "Ấp Bình Phước", "Ấp Tân Lập", "Ấp Hòa Lợi", "Khu phố 1", "Khu phố 2",
                "Khu phố 3", "Khu phố 4", "Khu phố Chánh Lộc", "Khu phố Bình Đức"])

BRAND_WORDS = _nfc([
    "An Phát", "Minh Long", "Thành Công", "Phú Thịnh", "Tân Hiệp", "Hòa Bình", "Đại Nam", "Việt Hưng",
    "Sao Mai", "Kim Ngân", "Phước Lộc", "Hưng Thịnh", "Bình An", "Thuận Phát", "Đông Á", "Trường Sơn",
    "Hoàng Gia", "Nam Việt", "Thiên Phúc", "Quốc Bảo", "Lộc Phát", "Vạn Xuân", "Tiến Đạt", "Mekong",
])
LEGAL_FORMS = ("tnhh_1tv", "tnhh_2tv", "co_phan", "tu_nhan", "hop_danh")
LEGAL_FORM_CUM: F64 = cumulative([45, 15, 25, 13, 2])
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
_TRADITIONAL = re.compile(f"([oOuU])([{_TONES}])([aAeEyY])(?=$|[\\s,])")
_MODERN = re.compile(f"([oOuU])([aAeEyY])([{_TONES}])(?=$|[\\s,])")


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
