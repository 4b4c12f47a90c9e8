"""Derive name_counts.csv from UIT-ViNames (a maintenance tool: kho never imports it; run it again only to rebuild
the file, then review `git diff`).

Input: `Dataset Analysis/name_full.csv` of github.com/namhainguyen2803/The-Mr.-or-Ms.-Dilemma-Can-You-Guess-Them-All
(columns Full_Name, Gender: 1 man, 0 woman), the UIT-ViNames list described in `kho.simulator.names`. The output
holds counts only, never a full name:

- `surname`: each surname seen three times or more (slips listed in `NOT_SURNAMES` left out);
- `structure`: per sex, names with Văn/Thị alone (`trad`), Văn/Thị and another middle name (`trad2`), one other
  middle name (`one`, two-word names included) or two (`two`);
- `given`, `first`: given names, and first middle names of names with two;
- `pair`: (middle name next to the given name, given name) seen twice or more; `single_middle`, `single_given`:
  the words of the pairs seen once; `pairs_seen`: how many pairs were seen r times (for Good-Turing).

    uv run python plugins/kho/simulator/derive_name_counts.py name_full.csv plugins/kho/simulator/name_counts.csv
"""

from __future__ import annotations

import argparse
import csv
import re
import unicodedata
from collections import Counter
from pathlib import Path

LETTERS = set("aăâbcdđeêghiklmnoôơpqrstuưvxyàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ")
VOWELS = set("aăâeêioôơuưy")
TONES = "\u0300\u0301\u0303\u0309\u0323"
MODERN = re.compile(f"([oOuU])([aAeEyY])([{TONES}])$")
QU = re.compile(f"^Qu([{TONES}])(.)")
ONE_SYLLABLE = re.compile("^[^aeiouy]*[aeiouy]+[^aeiouy]*$")
TRADITIONAL = {"M": "Văn", "F": "Thị"}
NOT_SURNAMES = {"Thị", "Nguyê", "Trâ", "Duơng", "Vỏ", "Đổ"}
"""Slips, not surnames: a middle name in first place, truncated Nguyễn/Trần, misspelt Dương/Võ/Đỗ."""
PARTS = ("surname", "structure", "given", "pair", "first", "single_middle", "single_given", "pairs_seen")

Row = tuple[str, str, str, str, int]
Name = tuple[str, ...]


def word(raw: str) -> str | None:
    """One word of a name as the pools write it, or None when it is not one Vietnamese syllable."""
    w = unicodedata.normalize("NFC", raw.replace("Ð", "Đ").replace("ð", "đ")).capitalize()
    lower = w.lower()
    if len(w) < 2 or not set(lower) <= LETTERS or not set(unicodedata.normalize("NFD", lower)) & VOWELS:
        return None
    d = unicodedata.normalize("NFD", w)
    d = MODERN.sub(r"\1\3\2", d)  # Hoà -> Hòa: the traditional placement every pool uses
    d = QU.sub(r"Qu\2\1", d)  # Qúy -> Quý: in qu- the tone sits on the vowel after u
    w = unicodedata.normalize("NFC", d)
    bare = "".join(c for c in unicodedata.normalize("NFD", w.lower()) if not unicodedata.combining(c))
    if not ONE_SYLLABLE.match(bare):
        return None  # two syllables run together: Phạmvăn, Êban
    return "Quý" if w == "Quí" else w


def read(path: Path) -> list[tuple[Name, str]]:
    people = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            words = [word(x) for x in row["Full_Name"].split()]
            if len(words) < 2 or any(w is None for w in words):
                continue
            name = tuple(w for w in words if w is not None)
            sex = "M" if row["Gender"] == "1" else "F"
            if "Thị" in name[1:-1]:
                sex = "F"  # annotation slips: Thị/Văn decide
            elif "Văn" in name[1:-1]:
                sex = "M"
            people.append((name, sex))
    return people


def structure(name: Name, traditional: str) -> str:
    if len(name) <= 3:
        return "trad" if len(name) == 3 and name[1] == traditional else "one"
    return "trad2" if name[1] == traditional else "two"


def sex_rows(people: list[tuple[Name, str]], sex: str, everywhere: Counter[str]) -> list[Row]:
    traditional = TRADITIONAL[sex]
    mine = [w for w, s in people if s == sex]
    given = Counter(w[-1] for w in mine)
    middles = Counter(x for w in mine for x in w[1:-1] if x != traditional)
    # A word seen once in a place is kept when the list has it at least twice somewhere (a real word, not a slip).
    ok_given = {g for g, n in given.items() if n >= 2 or everywhere[g] >= 2}
    ok_middle = {m for m, n in middles.items() if n >= 2 or everywhere[m] >= 2}
    pairs = Counter((w[-2], w[-1]) for w in mine if len(w) >= 3 and w[-2] != traditional
                    and w[-2] in ok_middle and w[-1] in ok_given)
    first = Counter(w[1] for w in mine if len(w) >= 4 and w[1] != traditional and w[1] in ok_middle)
    singles = [p for p, n in pairs.items() if n == 1]
    rows: list[Row] = []
    rows += [(sex, "structure", k, "", n) for k, n in Counter(structure(w, traditional) for w in mine).items()]
    rows += [(sex, "given", "", g, n) for g, n in given.items() if g in ok_given]
    rows += [(sex, "pair", m, g, n) for (m, g), n in pairs.items() if n >= 2]
    rows += [(sex, "first", m, "", n) for m, n in first.items()]
    rows += [(sex, "single_middle", m, "", n) for m, n in Counter(m for m, _ in singles).items()]
    rows += [(sex, "single_given", "", g, n) for g, n in Counter(g for _, g in singles).items()]
    rows += [(sex, "pairs_seen", "", str(r), n) for r, n in Counter(pairs.values()).items()]
    return rows


def sort_key(row: Row) -> tuple[int, str, int, str, str]:
    sex, part, middle, given, n = row
    if part == "pairs_seen":
        return PARTS.index(part), sex, int(given), "", ""
    return PARTS.index(part), sex, -n, middle, given


def derive(source: Path, out: Path) -> int:
    people = read(source)
    everywhere = Counter(x for w, _ in people for x in w)
    surnames = Counter(w[0] for w, _ in people)
    rows: list[Row] = [("", "surname", s, "", n) for s, n in surnames.items() if n >= 3 and s not in NOT_SURNAMES]
    rows += sex_rows(people, "M", everywhere) + sex_rows(people, "F", everywhere)
    rows.sort(key=sort_key)
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["sex", "part", "middle", "given", "count"])
        writer.writerows(rows)
    return len(people)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("source", type=Path, help="UIT-ViNames name_full.csv")
    parser.add_argument("out", type=Path, help="name_counts.csv to write")
    args = parser.parse_args()
    print(f"{derive(args.source, args.out)} names counted")


if __name__ == "__main__":
    main()
