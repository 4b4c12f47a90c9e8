"""Derive communes.csv, communes_2025.csv and commune_mapping_2025.csv from the public sources (a maintenance tool:
kho never imports it; run it again only to rebuild the three files, then review `git diff`).

Why a parser: the only published old → new mapping (dvhcvn/20250701, `mapping/splits.json`) was extracted by a
language model and has errors (a commune sent to a neighbouring province, same-name communes confused). Here every
row comes from the text of the 34 Standing Committee resolutions 1654..1687/NQ-UBTVQH15, clause by clause; the
model's mapping is only a cross-check (`--compare`), each disagreement read by hand (reference/README.md).

Inputs (see README.md, Sources):
- `--catalogue`: `data/dvhcvn.json` of daohoangson/dvhcvn at tag v20250301 (GSO catalogue, 2025-03-01);
- `--docs`: `input/docs/` of dvhcvn/20250701 (Công văn 1027/CTK-CSCL and the 34 resolutions, as markdown);
- `--compare`: optionally `mapping/splits.json` of dvhcvn/20250701.

    uv run python plugins/kho/sources/reference/derive_communes.py --catalogue dvhcvn.json --docs input/docs \\
        --out plugins/kho/sources/reference [--compare splits.json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).parent
EFFECTIVE_FROM = "2025-07-01"

# --- names ---------------------------------------------------------------------------------------------------------

_TONES = {"\u0300": "2", "\u0301": "1", "\u0309": "3", "\u0303": "4", "\u0323": "5"}
_ROMAN = {"I": "1", "II": "2", "III": "3", "IV": "4", "V": "5", "VI": "6", "VII": "7", "VIII": "8"}


def nfc(text: str) -> str:
    """NFC with runs of white space collapsed (the catalogue has 'Xã  Mỹ Lộc', 'Huyện  Vũng Liêm')."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _syllable_key(word: str) -> str:
    decomposed = unicodedata.normalize("NFD", word.lower())
    tone = "".join(_TONES[c] for c in decomposed if c in _TONES)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONES)) + tone


def _pre(name: str) -> str:
    name = re.sub(r"\b([IV]+)\b", lambda m: _ROMAN.get(m.group(1), m.group(1)), name)
    return re.sub(r"^(?:NT|N\.T|Nông [Tt]rường) ", "nông trường ", name)


@cache
def key(name: str) -> str:
    """Equal for spellings that differ only in tone placement ('Hoà'/'Hòa'), case, apostrophes or roman numerals."""
    name = _pre(name).replace("’", "'").replace("‘", "'").replace("-", " ").replace("–", " ")
    return " ".join(_syllable_key(w) for w in name.split())


@cache
def ascii_key(name: str) -> str:
    stripped = "".join(c for c in unicodedata.normalize("NFD", name.lower()) if unicodedata.category(c) != "Mn")
    return " ".join(stripped.replace("đ", "d").split())


@cache
def loose_key(name: str) -> str:
    """Equal for the minority-language spellings the resolutions and the catalogue disagree on (Đăk/Đắk/Đak,
    Ngọk/Ngọc, Quí/Quý, 'Ea H'Đing'/'Ea HĐing', 'ĐamBri'/'Đam Bri')."""
    text = ascii_key(_pre(name).replace("'", "").replace("’", ""))
    return text.replace(" ", "").replace("k", "c").replace("y", "i")


def _distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


_KINDS = ("thị trấn", "xã", "phường", "đặc khu")


def split_kind(name: str) -> tuple[str, str]:
    """'Phường Phường Đúc' → ('phường', 'Đúc'): the unit's kind from its name (the catalogue's `type` is sometimes
    wrong: Phường 15 of Phú Nhuận is typed Xã) and the bare name."""
    low = name.lower()
    for kind in _KINDS:
        if low.startswith(kind + " "):
            bare = name[len(kind) + 1:]
            if bare.lower().startswith(kind + " "):
                bare = bare[len(kind) + 1:]
            return kind, bare
    return "", name


# --- sources -------------------------------------------------------------------------------------------------------


class OldUnit(NamedTuple):
    code: str
    name: str
    district_code: str
    district_name: str
    province_code: str
    province_name: str

    @property
    def kind(self) -> str:
        return split_kind(self.name)[0]

    @property
    def bare(self) -> str:
        return split_kind(self.name)[1]


class NewUnit(NamedTuple):
    code: str
    name: str
    kind: str
    province_code: str


class District(NamedTuple):
    """A district without communes (Bạch Long Vĩ, Cồn Cỏ, Hoàng Sa, Lý Sơn, Côn Đảo): itself the unit below it."""

    code: str
    name: str
    province_code: str


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def load_catalogue(path: Path) -> tuple[dict[str, OldUnit], list[District]]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    units: dict[str, OldUnit] = {}
    empty: list[District] = []
    for province in data:
        for district in province["level2s"]:
            if not district["level3s"]:
                empty.append(District(district["level2_id"], nfc(district["name"]), province["level1_id"]))
            for commune in district["level3s"]:
                units[commune["level3_id"]] = OldUnit(
                    commune["level3_id"], nfc(commune["name"]), district["level2_id"], nfc(district["name"]),
                    province["level1_id"], nfc(province["name"]))
    return units, empty


NEW_KINDS = {"xã": "commune", "phường": "ward", "đặc khu": "special_zone"}


def load_new_units(path: Path, provinces_2025: dict[str, str]) -> list[NewUnit]:
    """Công văn 1027/CTK-CSCL, Phụ lục I: the 3,321 units in order, grouped under a heading row per province."""
    by_key = {ascii_key(name): code for code, name in provinces_2025.items()}
    units: list[NewUnit] = []
    province = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3:
            continue
        if not cells[0] and not cells[1] and cells[2] and not cells[2].startswith("-"):
            province = by_key[ascii_key(cells[2])]
        elif re.fullmatch(r"\d+", cells[0]):
            name = nfc(re.sub(r"\s*<br>\s*", " ", cells[2]))
            kind = next(NEW_KINDS[k] for k in NEW_KINDS if name.lower().startswith(k + " "))
            units.append(NewUnit(cells[1], name, kind, province))
    return units


# --- the resolutions -----------------------------------------------------------------------------------------------

_UPPER = "A-ZĐÂĂÊÔƠƯÁÀẢÃẠẤẦẨẪẬẮẰẲẴẶÉÈẺẼẸẾỀỂỄỆÍÌỈĨỊÓÒỎÕỌỐỒỔỖỘỚỜỞỠỢÚÙỦŨỤỨỪỬỮỰÝỲỶỸỴ0-9"
_GLUE = [  # words the markdown conversion glued together at line ends, and the resolutions' own typos; order matters
    (r"gọilà", "gọi là "), (r"của của", "của"), (r"là(xã|phường|đặc)", r"là \1"),
    (r"thành(xã|phường|đặc)", r"thành \1"), (r"(\S)thành (xã|phường|đặc)", r"\1 thành \2"),
    (r"xếp(toàn|một|phần|bộ)", r"xếp \1"), (r"(\w)\(", r"\1 ("), (r"\)(\w)", r") \1"),
    (r"(xã|phường|trấn|các)(?=[" + _UPPER + "])", r"\1 "), (r"và(xã|phường|các|một|phần|thị)", r"và \1"),
    (r"([a-zà-ỹđA-Z])và ", r"\1 và "), (r"\b(xã|phường) (xã|phường) ", r"\1 "), (r"Thiên Cầm xã", "Thiên Cầm, xã"),
    (r"(\w)của ", r"\1 của "), (r"của(\w)", r"của \1"), (r"các(xã|phường)", r"các \1"),
    (r"và(?=[" + _UPPER + "])", "và "), (r"([a-zà-ỹđ])(xã|phường) ", r"\1, \2 "), (r"(\w)sau khi", r"\1 sau khi"),
    (r"tại(khoản)", r"tại \1"), (r"khoản(\d)", r"khoản \1"), (r"này(thành|và)", r"này \1"), (r",(\S)", r", \1"),
    (r"phường Phường", "Phường"),
]


def unglue(text: str) -> str:
    for _ in range(2):
        for pattern, replacement in _GLUE:
            text = re.sub(pattern, replacement, text)
        text = " ".join(text.split())
    return text


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\\", "").replace("**", "").replace("*", "")
    return " ".join(text.split())


class Clause(NamedTuple):
    resolution: str
    """'1685/NQ-UBTVQH15'"""
    number: int
    province_code: str
    """The new province the resolution arranges."""
    text: str


def clauses(docs: Path, provinces_2025: dict[str, str]) -> Iterator[Clause]:
    """The numbered clauses (khoản) of Điều 1 of each resolution, in order."""
    by_key = {ascii_key(name): code for code, name in provinces_2025.items()}
    for path in sorted(docs.glob("16[5-8]?_NQ-UBTVQH15.md")):
        text = unicodedata.normalize("NFC", path.read_text(encoding="utf-8"))
        heading = re.search(r"Điều 1\. Sắp xếp các đơn vị hành chính cấp xã của (.+?)\*\*", " ".join(text.split()))
        if heading is None:
            raise SystemExit(f"{path.name}: no Điều 1 heading")
        province = by_key[ascii_key(heading.group(1))]
        body = re.split(r"\*\*Điều 2|Điều 2\. Hiệu lực", text.split("Điều 1.", 1)[1])[0]
        resolution = path.stem.replace("_", "/")
        current: list[str | int] | None = None
        found: list[list[str | int]] = []
        for paragraph in (_clean(p) for p in re.split(r"\n\s*\n", body)):
            numbered = re.match(r"^(\d+)\s*\.\s*(.*)$", paragraph)
            if numbered:
                current = [int(numbered.group(1)), numbered.group(2)]
                found.append(current)
            elif current is not None and paragraph:
                current[1] = f"{current[1]} {paragraph}"
        for number, clause in found:
            yield Clause(resolution, int(number), province, unglue(str(clause)))


class Mention(NamedTuple):
    """One unit a clause names as (part of) a source, or as not rearranged."""

    clause: Clause
    kind: str
    name: str
    qualifier: str
    district: bool
    """A whole district (huyện Kiên Hải, huyện Côn Đảo) rather than a commune."""
    target: str
    """Name of the new unit, with its kind ('xã Vĩnh Hậu')."""
    how: str
    """'' for a rearrangement, 'not rearranged' or 'renamed'; 'area only' or 'population only' when the clause moves
    only the unit's land ('một phần diện tích tự nhiên của xã X') or only its people."""


_ITEM = re.compile(r"^(?:(?:các )?(xã|phường|Phường|thị trấn|Thị trấn|huyện|đặc khu|Xã))?\s*(.+?)\s*(?:\(([^)]*)\))?$")
_SHARE = re.compile(r"(?:toàn bộ|bộ(?= diện tích)|một phần|phần còn lại|phần)\s*"
                    r"(?:(?:diện tích(?: tự nhiên)?|quy mô dân(?: số)?)\s*(?:còn lại\s*)?(?:,\s*|\s*và\s+)?)*"
                    r"(?:còn lại\s*)?(?:của\s+)?")
_AFTER = re.compile(r"\s*sau khi (?:thực hiện )?(?:sắp xếp|điều chỉnh) theo quy định tại (?:các )?"
                    r"khoản [0-9, khoản và]*\d(?: (?:của )?Điều này)?")
_REARRANGE = re.compile(r"^(?:Sắp xếp|Nhập)\s+(.*?)\s+(?:thành|vào)\s+"
                        r"(?:(?:xã|phường|đặc khu) mới có tên gọi là |đặc khu có tên gọi là |)"
                        r"((?:xã|phường|Phường|đặc khu) .+?)\.?$")
_RENAME = re.compile(r"^Đổi tên (xã|phường) (.+?) thành ((?:xã|phường) .+?)\.?$")
_UNCHANGED = re.compile(r"không thực hiện sắp xếp là (.*?)\.?$")


def _split_top(text: str) -> list[str]:
    """Split a list on commas and ' và ' outside parentheses ('(huyện Châu Thành, tỉnh Trà Vinh)' stays whole)."""
    parts, depth, current, i = [], 0, "", 0
    while i < len(text):
        if depth == 0 and (text[i] == "," or text.startswith(" và ", i)):
            parts.append(current)
            current, i = "", i + (1 if text[i] == "," else 4)
            continue
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        current += text[i]
        i += 1
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _items(text: str) -> Iterator[tuple[str, str, str]]:
    """(kind, name, qualifier) of each unit of a list; a kind carries to the names after it ('các xã A, B và C')."""
    kind = ""
    for part in _split_top(text):
        match = _ITEM.match(re.sub(r"^(của|và)\s+", "", part))
        if match is None:
            continue
        kind = (match.group(1) or kind).lower()
        yield kind, match.group(2), match.group(3) or ""


def mentions(clause: Clause) -> Iterator[Mention]:
    text = clause.text
    if text.startswith("Sau khi sắp xếp"):
        unchanged = _UNCHANGED.search(text)
        for kind, name, qualifier in _items(unchanged.group(1) if unchanged else ""):
            yield Mention(clause, kind, name, qualifier, False, f"{kind} {name}", "not rearranged")
        return
    renamed = _RENAME.match(text)
    if renamed:
        yield Mention(clause, renamed.group(1), renamed.group(2), "", False, renamed.group(3), "renamed")
        return
    rearranged = _REARRANGE.match(text)
    if rearranged is None:
        raise SystemExit(f"{clause.resolution} k.{clause.number}: cannot read {text!r}")
    for scope, sources in _scoped(_AFTER.sub("", rearranged.group(1))):
        for kind, name, qualifier in _items(sources):
            yield Mention(clause, kind, name, qualifier, kind == "huyện", rearranged.group(2), scope)


def _scoped(sources: str) -> Iterator[tuple[str, str]]:
    """The lists of a clause's sources, each with what of them moves: '' (land and people), 'area only' or
    'population only' ('một phần diện tích tự nhiên, toàn bộ quy mô dân số của xã X' moves all of X's people)."""
    phrase = ""
    for token in re.split(f"({_SHARE.pattern})", sources):
        if _SHARE.fullmatch(token):
            phrase += " " + token
            continue
        text = re.sub(r"^\s*(,|và)?\s*|\s*(,|và)?\s*$", "", token)
        if not text:
            continue
        land, people = "diện tích" in phrase, "quy mô dân" in phrase
        yield ("area only" if land and not people else "population only" if people and not land else ""), text
        phrase = ""


# --- matching a mention to the catalogue ---------------------------------------------------------------------------

OVERRIDES: dict[tuple[str, int, str], str] = {
    # (resolution, clause, name as written) → old code, where the catalogue spells or types the unit differently
    ("1684/NQ-UBTVQH15", 55, "Sủng Cháng"): "00829",  # catalogue: Xã Sủng Tráng (huyện Yên Minh)
    ("1661/NQ-UBTVQH15", 20, "Xá Nhè"): "03244",  # catalogue: Xã Sáng Nhè (huyện Tủa Chùa); the new unit keeps 03244
    ("1666/NQ-UBTVQH15", 71, "Kim Trung"): "12664",  # catalogue: Xã Kim Chung (huyện Hưng Hà)
    ("1678/NQ-UBTVQH15", 27, "Hưng Yên Nam"): "18007",  # catalogue: Xã Hưng Yên, beside Xã Hưng Yên Bắc
    ("1668/NQ-UBTVQH15", 42, "Thạnh An"): "31231",  # the thị trấn; catalogue: Thị trấn Thanh An (huyện Vĩnh Thạnh)
    ("1668/NQ-UBTVQH15", 43, "Thạnh Quới"): "31246",  # huyện Vĩnh Thạnh; catalogue: Xã Thạnh Qưới
    ("1668/NQ-UBTVQH15", 66, "Thạnh Quới"): "31714",  # huyện Mỹ Xuyên (paired with Gia Hòa 2)
    ("1669/NQ-UBTVQH15", 79, "Hòa Bình"): "10798",  # huyện Kim Thành: k.112 takes the rest of this Hòa Bình
    ("1686/NQ-UBTVQH15", 130, "Đông Khê"): "16408",  # former huyện Đông Sơn; 16387 is a catalogue ghost
}


@dataclass
class Matcher:
    """Finds the catalogue unit a mention names among the communes of the provinces merged into its new province."""

    units: dict[str, OldUnit]
    province_of: dict[str, str]
    """Old province code → new province code."""
    pool: dict[str, list[OldUnit]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        grouped: dict[str, list[OldUnit]] = defaultdict(list)
        for unit in self.units.values():
            grouped[self.province_of[unit.province_code]].append(unit)
        self.pool = dict(grouped)

    def _by_name(self, province: str, kind: str, name: str) -> list[OldUnit]:
        pool = self.pool[province]
        found = [u for u in pool if key(u.bare) == key(name)]
        if not any(u.kind == kind for u in found):
            loose = [u for u in pool if loose_key(u.bare) == loose_key(name)]
            found = [u for u in found + loose if u.kind == kind] or found or loose
        if not found and len(name) > 3:
            found = [u for u in pool if _distance(loose_key(u.bare), loose_key(name)) <= 1]
        same_kind = [u for u in found if u.kind == kind]
        found = same_kind or found
        exact = [u for u in found if key(u.bare) == key(name)]
        return exact if len(exact) >= 1 and len(found) > 1 else found

    def _by_qualifier(self, province: str, found: list[OldUnit], name: str, qualifier: str) -> list[OldUnit]:
        places = [ascii_key(p) for p in re.sub(r"^thuộc ", "", qualifier).split(",")]

        def within(u: OldUnit) -> bool:
            district, province_name = ascii_key(u.district_name), ascii_key(u.province_name)
            return all(p in (district, province_name) or district.endswith(" " + p) for p in places)

        narrowed = [u for u in found if within(u)]
        if narrowed:
            return narrowed
        other = [u for u in self.pool[province] if loose_key(u.bare) == loose_key(name) and within(u)]
        return other if len(other) == 1 else found

    def candidates(self, mention: Mention) -> list[OldUnit]:
        province = mention.clause.province_code
        if mention.district:
            return [u for u in self.pool[province] if key(u.district_name) == key("Huyện " + mention.name)]
        override = OVERRIDES.get((mention.clause.resolution, mention.clause.number, mention.name))
        if override:
            return [self.units[override]]
        found = self._by_name(province, mention.kind, mention.name)
        if mention.qualifier:
            found = self._by_qualifier(province, found, mention.name, mention.qualifier)
        return found


def _qualifier_later(mention: Mention, later: Iterable[Mention], found: list[OldUnit]) -> list[OldUnit]:
    """'Phường 1, Phường 3 và Phường 9 (thành phố Trà Vinh)': the qualifier written once after the last name."""
    for other in later:
        if other.qualifier and other.kind == mention.kind:
            place = ascii_key(other.qualifier)
            narrowed = [u for u in found if place in (ascii_key(u.district_name), ascii_key(u.province_name))]
            if narrowed:
                return narrowed
    return found


def resolve(matcher: Matcher, all_mentions: list[Mention]) -> dict[Mention, list[OldUnit]]:
    """Each mention's unit(s): a district's communes, or one commune; an ambiguous name is settled by a qualifier
    written later in the clause, then by the district of the clause's other units, then by elimination."""
    found = {m: matcher.candidates(m) for m in all_mentions}
    by_clause: dict[Clause, list[Mention]] = defaultdict(list)
    for m in all_mentions:
        by_clause[m.clause].append(m)
    for clause_mentions in by_clause.values():
        settled = Counter(found[m][0].district_code for m in clause_mentions if len(found[m]) == 1 and not m.district)
        for i, m in enumerate(clause_mentions):
            if len(found[m]) > 1 and not m.district:
                found[m] = _qualifier_later(m, clause_mentions[i + 1:], found[m])
                same_district = [u for u in found[m] if u.district_code in settled]
                found[m] = same_district or found[m]
    claimed = Counter(found[m][0].code for m in all_mentions if len(found[m]) == 1 and not m.district)
    for m in all_mentions:
        left = [u for u in found[m] if u.code not in claimed]
        if len(found[m]) > 1 and not m.district and len(left) == 1:
            found[m] = left
            claimed[left[0].code] += 1
    return found


# --- the files -----------------------------------------------------------------------------------------------------


class Row(NamedTuple):
    old_code: str
    old_name: str
    new: NewUnit
    clause: Clause
    how: str


def successors(found: dict[Mention, list[OldUnit]], districts: list[District], new_units: list[NewUnit],
               ) -> list[Row]:
    index = {(u.province_code, key(u.name)): u for u in new_units}
    rows: list[Row] = []
    problems = []
    for m, units in found.items():
        target = index.get((m.clause.province_code, key(m.target)))
        if target is None:
            problems.append(f"{m.clause.resolution} k.{m.clause.number}: no unit {m.target!r} in Công văn 1027")
            continue
        if m.district and not units:
            units_or_district = [(d.code, d.name) for d in districts if key(d.name) == key("Huyện " + m.name)]
        else:
            units_or_district = [(u.code, u.name) for u in units]
        if len(units_or_district) != 1 and not m.district:
            problems.append(f"{m.clause.resolution} k.{m.clause.number}: {m.kind} {m.name} ({m.qualifier}) → "
                            f"{[c for c, _ in units_or_district]}")
            continue
        rows.extend(Row(code, name, target, m.clause, m.how) for code, name in units_or_district)
    if problems:
        raise SystemExit("unresolved mentions:\n  " + "\n  ".join(problems))
    return rows


def _write(path: Path, header: list[str], rows: Iterable[Iterable[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")


def write_files(out: Path, old: dict[str, OldUnit], ghosts: set[str], new_units: list[NewUnit],
                rows: list[Row]) -> None:
    _write(out / "communes.csv", ["commune_code", "commune_name", "district_code", "district_name", "province_code"],
           ([u.code, u.name, u.district_code, u.district_name, u.province_code]
            for code, u in sorted(old.items()) if code not in ghosts))
    _write(out / "communes_2025.csv", ["commune_code", "commune_name", "kind", "province_code"],
           ([u.code, u.name, u.kind, u.province_code] for u in sorted(new_units, key=lambda u: u.code)))
    count = Counter(r.old_code for r in {(r.old_code, r.new.code): r for r in rows}.values())
    unique = sorted({(r.old_code, r.new.code): r for r in rows}.values(),
                    key=lambda r: (r.old_code, r.clause.resolution, r.clause.number))
    _write(out / "commune_mapping_2025.csv",
           ["old_commune_code", "old_commune_name", "new_commune_code", "new_commune_name", "new_province_code",
            "share", "effective_from", "source"],
           ([r.old_code, r.old_name, r.new.code, r.new.name, r.new.province_code,
             "whole" if count[r.old_code] == 1 else "part", EFFECTIVE_FROM,
             f"NQ {r.clause.resolution} k.{r.clause.number}" + (f" ({r.how})" if r.how else "")] for r in unique))


def check(old: dict[str, OldUnit], ghosts: set[str], new_units: list[NewUnit], rows: list[Row],
          province_of: dict[str, str]) -> None:
    mapped = {r.old_code for r in rows}
    reached = {r.new.code for r in rows}
    wrong_province = [r for r in rows if r.old_code in old and province_of[old[r.old_code].province_code]
                      != r.new.province_code]
    if wrong_province or reached != {u.code for u in new_units} or not mapped >= set(old) - ghosts:
        raise SystemExit(f"inconsistent: {len(wrong_province)} rows cross a province, new units without predecessor "
                         f"{sorted({u.code for u in new_units} - reached)}")


def compare(path: Path, old: dict[str, OldUnit], rows: list[Row], new_units: list[NewUnit]) -> None:
    """Print where dvhcvn/20250701's model-made mapping disagrees with the resolutions as parsed here."""
    names = {u.code: u.name for u in new_units}
    theirs = {c["level3_id"]: {s["new_id"] for s in c["splits"]}
              for p in json.loads(path.read_text(encoding="utf-8"))["data"] for c in p["level3s"]}
    ours: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        ours[r.old_code].add(r.new.code)
    differ = [code for code in sorted(old) if ours.get(code, set()) != theirs.get(code, set())]
    for code in differ:
        print(f"{code} {old[code].name} ({old[code].district_name}): here {sorted(ours.get(code, ()))}, "
              f"model {sorted(theirs.get(code, ()))} {[names[c] for c in sorted(theirs.get(code, set()))]}")
    print(f"{len(old) - len(differ)} of {len(old)} catalogue communes agree, {len(differ)} differ", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalogue", type=Path, required=True)
    parser.add_argument("--docs", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--compare", type=Path)
    args = parser.parse_args(argv)
    provinces_2025 = {r["province_code"]: r["province_name"] for r in read_csv(HERE / "provinces_2025.csv")}
    province_of = {r["old_province_code"]: r["new_province_code"]
                   for r in read_csv(HERE / "province_mapping_2025.csv")}
    old, districts = load_catalogue(args.catalogue)
    new_units = load_new_units(args.docs / "1027_CTK-CSCL.md", provinces_2025)
    all_mentions = [m for c in clauses(args.docs, provinces_2025) for m in mentions(c)]
    all_mentions = [m for m in all_mentions if m.name not in ("Trường bắn TB1", "khu vực bãi bồi ven biển")]
    rows = successors(resolve(Matcher(old, province_of), all_mentions), districts, new_units)
    ghosts = set(old) - {r.old_code for r in rows}
    check(old, ghosts, new_units, rows, province_of)
    print(f"{len(old)} catalogue communes, {len(ghosts)} named by no resolution (left out): {sorted(ghosts)}; "
          f"{len(new_units)} new units; {len(rows)} mentions", file=sys.stderr)
    write_files(args.out, old, ghosts, new_units, rows)
    if args.compare:
        compare(args.compare, old, rows, new_units)


if __name__ == "__main__":
    main()
