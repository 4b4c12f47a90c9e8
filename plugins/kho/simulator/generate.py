"""Synthetic citizens of the population registry, deterministic per (seed, index), with defects and their truth.

A record depends only on (seed, index), so the generator streams in bounded memory, any record can be rebuilt
alone, and the same arguments give byte-identical output on every run (no `hash()`, whose salt changes per
process). Records are in the *wire* form of `kho.sources.population.CITIZENS`: every value a string or None.

The distributions (surnames, age pyramid, migrant share, birth provinces) are illustrative approximations of
Bình Dương, not census figures; tests and demos need plausible shapes, not precise ones.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import Literal, get_args

from kho.errors import ConfigError
from kho.sources.contract import ReasonCode
from kho.sources.identity import cccd_prefix
from kho.sources.population import CITIZENS
from kho.sources.reference import commune_codes, province_codes

Record = dict[str, str | None]
"""One citizen as the registry serves it: contract field name -> text (or None for a blanked field)."""

DefectKind = Literal[
    "malformed_cccd", "inconsistent_cccd", "missing_required", "unknown_commune", "invalid_date", "impossible_date",
]
"""What is wrong with a defective record.

`invalid_date` has a month or day out of range (2001-13-05, 2001-06-32); `impossible_date` has fields in range
but names a day the calendar lacks (2001-02-30, 2001-04-31, 2001-02-29). They are separate kinds because a
parser may reject the first and silently roll the second over to another day.
"""
DEFECT_KINDS: tuple[DefectKind, ...] = get_args(DefectKind)

EXPECTED_REASON: dict[DefectKind, ReasonCode] = {
    "malformed_cccd": "malformed",
    "inconsistent_cccd": "inconsistent",
    "missing_required": "missing_required",
    "unknown_commune": "unknown_reference",
    "invalid_date": "malformed",
    "impossible_date": "malformed",
}
"""The reason code `kho.sources.check_table` must give each kind of defect."""

MAX_CITIZENS = 1_000_000
"""CCCD digits 7-12 are unique across a world, and six digits number one million people."""

TODAY = date(2025, 6, 30)
"""The simulated world's 'today': ages are measured from it and no record changes after it."""
OLDEST_BIRTH = date(1930, 1, 1)
UPDATED_FROM = datetime(2024, 1, 1, tzinfo=UTC)
UPDATED_TO = datetime(2025, 6, 30, 23, 59, 59, tzinfo=UTC)
HOME_PROVINCE = "74"
"""Bình Dương: most residents were born there; the rest are migrants from the other 62 provinces."""
HOME_SHARE = 0.6

_STREAM = "kho.simulator.population"


def _nfc(words: Sequence[str]) -> tuple[str, ...]:
    return tuple(unicodedata.normalize("NFC", w) for w in words)


def _cumulative(weights: dict[str, float]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Names and cumulative weights, computed once so `random.choices` does not re-add them per record."""
    return _nfc(list(weights)), tuple(accumulate(weights.values()))


# Shares in percent, after commonly cited figures; Huỳnh and Võ (southern forms) outnumber Hoàng and Vũ here.
_SURNAMES = _cumulative({
    "Nguyễn": 38.4, "Trần": 11.0, "Lê": 9.5, "Phạm": 7.1, "Huỳnh": 2.9, "Hoàng": 2.2, "Phan": 4.5,
    "Võ": 2.5, "Vũ": 1.4, "Đặng": 2.1, "Bùi": 2.0, "Đỗ": 1.4, "Hồ": 1.3, "Ngô": 1.3, "Dương": 1.0,
    "Lý": 0.5, "Trương": 0.9, "Đinh": 0.7, "Lâm": 0.6, "Mai": 0.5, "Hà": 0.4, "Lương": 0.4, "Đoàn": 0.4,
    "Trịnh": 0.4, "Cao": 0.4, "Tô": 0.3, "Châu": 0.3, "Lưu": 0.3, "Thái": 0.3, "Tạ": 0.2,
})
_MIDDLE_TRADITIONAL = {"M": "Văn", "F": "Thị"}
_MIDDLE = {
    "M": _nfc(["Hữu", "Đức", "Minh", "Quốc", "Thanh", "Công", "Hoàng", "Gia", "Ngọc", "Tuấn", "Anh", "Trọng"]),
    "F": _nfc(["Ngọc", "Thanh", "Thu", "Minh", "Kim", "Mỹ", "Bảo", "Phương", "Hồng", "Khánh", "Hoài", "Diệu"]),
}
_GIVEN = {
    "M": _nfc([
        "An", "Anh", "Bảo", "Bình", "Cường", "Dũng", "Duy", "Đạt", "Đức", "Hải", "Hiếu", "Hoàng", "Hùng", "Huy",
        "Hưng", "Khang", "Khánh", "Khoa", "Kiên", "Lâm", "Lộc", "Long", "Luân", "Minh", "Nam", "Nghĩa", "Nhân",
        "Phát", "Phong", "Phúc", "Quang", "Quân", "Sơn", "Tài", "Tâm", "Thắng", "Thành", "Thiện", "Thịnh",
        "Toàn", "Trí", "Trọng", "Trung", "Tuấn", "Tùng", "Việt", "Vinh", "Vũ",
    ]),
    "F": _nfc([
        "Anh", "Châu", "Chi", "Diễm", "Dung", "Duyên", "Giang", "Hà", "Hằng", "Hạnh", "Hiền", "Hoa", "Hồng",
        "Huệ", "Hương", "Huyền", "Lan", "Liên", "Linh", "Loan", "Ly", "Mai", "My", "Nga", "Ngân", "Ngọc", "Nhi",
        "Nhung", "Như", "Oanh", "Phương", "Quyên", "Quỳnh", "Tâm", "Thảo", "Thu", "Thúy", "Thủy", "Trang",
        "Trâm", "Trinh", "Tuyết", "Uyên", "Vân", "Vy", "Xuân", "Yến",
    ]),
}

# Share of each five-year age group (0-4 ... 90-94), with the working-age bulge of an industrial province.
_AGE_GROUPS = tuple(accumulate(
    (7.0, 7.5, 7.0, 6.5, 9.0, 11.0, 10.5, 9.0, 7.5, 6.0, 5.0, 4.0, 3.3, 2.5, 1.6, 1.1, 0.8, 0.5, 0.2)
))
# Mekong Delta and north-central provinces send most migrants to Bình Dương (weights illustrative).
_MIGRANT_SOURCES = {
    "34", "36", "38", "40", "42", "51", "52", "70", "72", "79", "80", "82", "83", "84", "86", "87", "89", "91",
    "94", "95", "96",
}
_OTHER_PROVINCES = _cumulative({
    code: 4.0 if code in _MIGRANT_SOURCES else 1.0 for code in sorted(province_codes() - {HOME_PROVINCE})
})
_COMMUNES = tuple(sorted(commune_codes()))


def _rng(seed: int, index: int, purpose: str = "") -> random.Random:
    """A generator of its own for one record: seeded from text, which Python hashes with SHA-512, not `hash()`."""
    return random.Random(f"{_STREAM}:{seed}:{index}{purpose}")


def _unit(seed: int, index: int, purpose: str) -> float:
    """A uniform draw in [0, 1) for one record, cheaper than building a Random when most records need one draw."""
    digest = hashlib.blake2b(f"{_STREAM}:{seed}:{index}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def cccd_suffix(seed: int, index: int) -> int:
    """CCCD digits 7-12 for record `index`: a seeded permutation of 0..999999, so no two records share them.

    A four-round Feistel network permutes 20-bit numbers; cycle-walking keeps the result below one million.
    """
    if not 0 <= index < MAX_CITIZENS:
        raise ValueError(f"index {index} is outside 0..{MAX_CITIZENS - 1}")
    x = index
    while True:
        left, right = x >> 10, x & 0x3FF
        for round_ in range(4):
            digest = hashlib.blake2b(f"{seed}:{round_}:{right}".encode(), digest_size=2).digest()
            left, right = right, left ^ (int.from_bytes(digest, "big") & 0x3FF)
        x = (left << 10) | right
        if x < MAX_CITIZENS:
            return x


def _date_of_birth(rng: random.Random) -> date:
    group = rng.choices(range(len(_AGE_GROUPS)), cum_weights=_AGE_GROUPS)[0]
    oldest = TODAY.replace(year=TODAY.year - 5 * (group + 1)) + timedelta(days=1)
    youngest = TODAY.replace(year=TODAY.year - 5 * group) - timedelta(days=1)
    lo, hi = max(oldest, OLDEST_BIRTH), min(youngest, TODAY - timedelta(days=1))
    return date.fromordinal(rng.randint(lo.toordinal(), hi.toordinal()))


def _full_name(rng: random.Random, sex: str, birth_year: int) -> str:
    """Surname, one or two middle names, given name: Văn/Thị grow rarer for people born after 1990."""
    surname = rng.choices(_SURNAMES[0], cum_weights=_SURNAMES[1])[0]
    traditional = 0.6 if birth_year < 1990 else 0.25
    if rng.random() < traditional:
        middle = [_MIDDLE_TRADITIONAL[sex]]
        if sex == "F" and rng.random() < 0.15:
            middle.append(rng.choice(_MIDDLE["F"]))
    else:
        middle = [rng.choice(_MIDDLE[sex])]
    given = rng.choice(_GIVEN[sex])
    while given == middle[-1]:  # "Nguyễn Đức Đức" exists, but rarely enough to avoid
        given = rng.choice(_GIVEN[sex])
    return " ".join([surname, *middle, given])


def _is_deceased(rng: random.Random, birth: date) -> bool:
    age = TODAY.year - birth.year
    return rng.random() < (0.005 if age < 60 else 0.04 if age < 80 else 0.15)


def _updated_at(rng: random.Random, birth: date) -> str:
    """A moment in the change window, after the birth (a record cannot change before its person exists)."""
    born = datetime(birth.year, birth.month, birth.day, tzinfo=UTC) + timedelta(days=1)
    lo = max(UPDATED_FROM, born)
    seconds = rng.randint(0, int((UPDATED_TO - lo).total_seconds()))
    return (lo + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def citizen(seed: int, index: int) -> Record:
    """The clean record of citizen `index` in world `seed` (before any defect is injected)."""
    rng = _rng(seed, index)
    sex = "M" if rng.random() < 0.495 else "F"
    birth = _date_of_birth(rng)
    province = HOME_PROVINCE if rng.random() < HOME_SHARE else (
        rng.choices(_OTHER_PROVINCES[0], cum_weights=_OTHER_PROVINCES[1])[0]
    )
    values: Record = {
        "cccd": f"{cccd_prefix(province, birth.year, sex)}{cccd_suffix(seed, index):06d}",
        "full_name": _full_name(rng, sex, birth.year),
        "date_of_birth": birth.isoformat(),
        "sex": sex,
        "birth_province_code": province,
        "permanent_commune_code": rng.choice(_COMMUNES),
        "status": "deceased" if _is_deceased(rng, birth) else "alive",
        "updated_at": _updated_at(rng, birth),
    }
    return {name: values[name] for name in CITIZENS.field_names}


@dataclass(frozen=True)
class Defect:
    """One injected defect, the ground truth a loader's quarantine is checked against."""

    index: int
    """Position of the record in `generate_citizens` order."""
    key: str
    """The cccd as served (possibly the malformed or inconsistent value itself): the record's identity on the wire."""
    kind: DefectKind
    field: str
    """The contract field that carries the defect."""
    expected_reason_code: ReasonCode


def _year(record: Record) -> int:
    return int(str(record["date_of_birth"])[:4])


def _malformed_cccd(record: Record, rng: random.Random) -> str:
    cccd = str(record["cccd"])
    # Province codes are below 100, so every CCCD starts with 0: a spreadsheet that made it a number drops it.
    record["cccd"] = cccd[1:] if rng.random() < 0.5 else cccd + str(rng.randrange(10))
    return "cccd"


def _inconsistent_cccd(record: Record, rng: random.Random) -> str:
    cccd = str(record["cccd"])
    flip = 1 if rng.random() < 0.5 else 2  # 1 swaps the sex, 2 the century (0<->2, 1<->3)
    record["cccd"] = f"{cccd[:3]}{int(cccd[3]) ^ flip}{cccd[4:]}"
    return "cccd"


def _missing_required(record: Record, rng: random.Random) -> str:
    name = rng.choice(("full_name", "date_of_birth", "permanent_commune_code"))
    record[name] = rng.choice((None, "", "  "))
    return name


def _unknown_commune(record: Record, rng: random.Random) -> str:
    # Above the GSO catalogue's highest commune code (about 32250), so widening communes.csv keeps it unknown.
    known = commune_codes()
    code = str(rng.randint(33000, 99999))
    while code in known:
        code = str(rng.randint(33000, 99999))
    record["permanent_commune_code"] = code
    return "permanent_commune_code"


def _invalid_date(record: Record, rng: random.Random) -> str:
    year, month, day = _year(record), rng.randint(1, 12), rng.randint(1, 28)
    record["date_of_birth"] = rng.choice(
        (f"{year}-13-{day:02d}", f"{year}-00-{day:02d}", f"{year}-{month:02d}-00", f"{year}-{month:02d}-32")
    )
    return "date_of_birth"


def _impossible_date(record: Record, rng: random.Random) -> str:
    year = _year(record)
    forms = [f"{year}-02-30", f"{year}-02-31", *(f"{year}-{m:02d}-31" for m in (4, 6, 9, 11))]
    if year % 4 != 0 or (year % 100 == 0 and year % 400 != 0):
        forms.append(f"{year}-02-29")
    record["date_of_birth"] = rng.choice(forms)
    return "date_of_birth"


_INJECT: dict[DefectKind, Callable[[Record, random.Random], str]] = {
    "malformed_cccd": _malformed_cccd,
    "inconsistent_cccd": _inconsistent_cccd,
    "missing_required": _missing_required,
    "unknown_commune": _unknown_commune,
    "invalid_date": _invalid_date,
    "impossible_date": _impossible_date,
}


def _check_args(count: int, defect_rate: float, kinds: Collection[DefectKind]) -> tuple[DefectKind, ...]:
    if not 0 <= count <= MAX_CITIZENS:
        raise ConfigError(
            f"the population simulator cannot make {count} citizens: choose 0..{MAX_CITIZENS} "
            "(CCCD digits 7-12 are unique per world); lower KHO_SIM_CITIZENS"
        )
    if not 0.0 <= defect_rate <= 1.0:
        raise ConfigError(f"defect_rate={defect_rate} is not a share: choose a number from 0.0 to 1.0")
    unknown = set(kinds) - set(DEFECT_KINDS)
    if unknown or not kinds:
        raise ConfigError(f"defect kinds {sorted(unknown) or '(none)'} are not known; choose from {DEFECT_KINDS}")
    return tuple(k for k in DEFECT_KINDS if k in kinds)


def generate_with_truth(
    seed: int, count: int, *, defect_rate: float = 0.0, defect_kinds: Collection[DefectKind] = DEFECT_KINDS,
) -> Iterator[tuple[Record, Defect | None]]:
    """Each record with the defect injected into it, if any: one pass for callers that need both."""
    kinds = _check_args(count, defect_rate, defect_kinds)
    for index in range(count):
        record = citizen(seed, index)
        # The draw is per record, so a record defective at rate r stays defective (same kind) at any rate above r.
        if defect_rate == 0.0 or _unit(seed, index, "defect") >= defect_rate:
            yield record, None
            continue
        rng = _rng(seed, index, ":defect")
        kind = rng.choice(kinds)
        field = _INJECT[kind](record, rng)
        yield record, Defect(index, str(record["cccd"]), kind, field, EXPECTED_REASON[kind])


def generate_citizens(
    seed: int, count: int, *, defect_rate: float = 0.0, defect_kinds: Collection[DefectKind] = DEFECT_KINDS,
) -> Iterator[Record]:
    """`count` citizens of world `seed` in wire form; a `defect_rate` share carries one defect each.

    Same arguments, same records, byte for byte. Every cccd is unique, defective ones included.
    """
    for record, _ in generate_with_truth(seed, count, defect_rate=defect_rate, defect_kinds=defect_kinds):
        yield record


def ground_truth(
    seed: int, count: int, defect_rate: float, *, defect_kinds: Collection[DefectKind] = DEFECT_KINDS,
) -> list[Defect]:
    """The defects `generate_citizens` injects for the same arguments, in index order."""
    return [
        defect
        for _, defect in generate_with_truth(seed, count, defect_rate=defect_rate, defect_kinds=defect_kinds)
        if defect is not None
    ]
