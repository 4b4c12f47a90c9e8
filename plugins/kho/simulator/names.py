"""Names of people and enterprises, drawn from uniforms the caller supplies: any person can be rebuilt alone.

Every draw is a pure function of the uniform(s) passed in (the caller's own hashed streams, `rng.unit_np`), so the
same person gets the same name whether a million are drawn with numpy (`surname`, `given`, `middle`) or one in a
daily event (`surname_py`, `given_py`, `middle_py`): both forms search the same tables with the same comparisons.

A full name is surname, one or two middle names, given name. Three parts are drawn:
- the surname from `text.SURNAME_SHARES` (published shares, then 139 rarer surnames);
- the given name from the frequencies of a real list of names (by sex);
- the middle names: first the structure by sex and birth year (Văn/Thị alone, Văn/Thị and another, another, two
  others), then the middle name next to the given one *given that given name*: "Thu Hiền", "Tuấn Anh", "Thành Đạt"
  are far more common than their words' frequencies predict, and drawing the two words independently halves the
  share of people who share a full name with someone (17 % instead of 28 % among 20,000 people of the real list).

The real list is UIT-ViNames (H. Q. To, K. V. Nguyen, N. L.-T. Nguyen, A. G.-T. Nguyen, "Gender prediction based
on Vietnamese names with machine learning techniques", University of Information Technology, VNU-HCM, 2020,
arXiv:2010.10852; 26,850 full names with sex, collected at universities, released for research; copied as
`Dataset Analysis/name_full.csv` in github.com/namhainguyen2803/The-Mr.-or-Ms.-Dilemma-Can-You-Guess-Them-All).
Its bias: university students born about 1995-2002, 58 % men, mostly southern (Huỳnh and Võ outnumber Hoàng and
Vũ; Nguyễn is 31.7 %, not 38 %).
`name_counts.csv` holds only counts derived from it by `derive_name_counts.py`, never a full name: words in NFC,
capitalised, tones of oa/oe/uy on the first vowel (Hòa), Qúy written Quý; words that are not one Vietnamese syllable
dropped; Thị/Văn decide the sex where the annotation disagrees; a given or middle name kept when the list has it
there twice, or the word twice anywhere; (middle, given) pairs with their counts when seen twice or more, the rest
as the words' counts among pairs seen once (with how many pairs were seen once, twice, ...). Pairs are discounted by
Good-Turing (`_good_turing`): a pair seen once in 26,850 is, on average, rarer than 1 in 26,850, and the mass freed
goes to new pairs of words from pairs seen once. Without it the list's pairs repeat too often: drawing whole names
from the list itself (a bootstrap) gives 37 % at N = 20,000 instead of the 31.8 % below.

Measured (share of people whose exact full name another person of the same set also has; `collision_share`; the
real list's rows are means of 6 random subsets, this module's of 4 seeds):

| set | N = 8,757 | N = 20,000 | N = 26,451 | N = 50,000 |
|---|---|---|---|---|
| the real list as it is (after the cleaning above) | 19.3 % | 28.6 % | 32.3 % | - |
| the real list, surnames redrawn from `text.SURNAME_SHARES` | 22.4 % | 31.8 % | 35.2 % | (*) 41-49 % |
| this module, the list's cohort (born 1998, 58 % men) | 23.2 % | 32.9 % | 36.3 % | 43.9 % |
| this module, the ages and sexes of `people.Model` on day 0 | | 37.3 % | | 47.3 % |

(*) extrapolated: the list has 26,451 usable names, so 50,000 cannot be drawn from it; curves fitted to N = 2,000-
26,451 give 41 % (linear in log N), 44 % (quadratic in log N) or 49 % (S = 1 - exp(-a N^b)). The uncleaned list
gives 28.0 % and, with published surnames, 31.0 % at N = 20,000. Surnames matter: with Nguyễn at 38.4 % instead of
the list's 31.7 %, more people share a name. 8,757 other real names (UIT forum members, `uit_member.json` of
github.com/duyet/vietnamese-namedb, 2016, mostly men) give 20.5 %, the list 19.3 % at that size. Older people have
more traditional, shorter names (Nguyễn Văn Hùng, Nguyễn Thị Lan), so a population of all ages shares names more
often than students do (last row); no real list of older people was found to check that figure against.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from kho.simulator.rng import F64, I64, choose_np, cumulative, feistel_np, feistel_py
from kho.simulator.text import (
    BRAND_HEADS,
    BRAND_TAILS,
    GIVEN,
    MIDDLE,
    SURNAME_CUM,
    SURNAMES,
    TRADITIONAL_MIDDLE,
    name_counts,
)

MALE, FEMALE = 0, 1
NONE = -1
"""`middle` -1: the traditional Văn/Thị; `middle2` -1: no second middle name."""
FIRST_YEAR, LAST_YEAR = 1900, 2100
"""Birth years outside are treated as the nearest of these two."""
LIST_COHORT = 1998
"""About the birth year of the real list's students: its own structure shares are the anchor for this year."""

# Share of men named Văn, and of women named Thị, by birth year. Only 1998 (the real list: 10 % of men, 63 % of
# women) and 2009 (hoten.org, sample SG01, 2007-2011 births in Hồ Chí Minh City: Văn under 3 % of men's first
# middle names, Thị 17.6 % of women's) are measured. 1930: "near-universal (estimated 80-90 %) in mid-20th century"
# (Onomástica desde América Latina 7(1), 2025, "Modern naming trends in Vietnam", which finds 18 % / 16 % among
# 15,689 names of 2023-2024 students nationwide); 1960 and 1980 are interpolated guesses, not measurements.
_TRADITIONAL_SHARE = ((1930, 0.80, 0.90), (1960, 0.70, 0.88), (1980, 0.40, 0.80), (2009, 0.03, 0.18),
                      (2025, 0.03, 0.12))
# Share with a second middle name, after Văn/Thị (Nguyễn Thị Thu Hiền) and otherwise (Nguyễn Ngọc Bảo Anh): 1998
# from the list; 2009 from SG01 (men: 26 % of names have four words; women: 65 %, Thị in 1-2 % of three-word and
# 20-30 % of four-word names). Before 1980 names of three words were the rule; those shares are assumptions.
_SECOND_SHARE = ((1930, 0.03, 0.05, 0.03, 0.05), (1960, 0.03, 0.12, 0.04, 0.10), (1980, 0.05, 0.40, 0.07, 0.25),
                 (2009, 0.10, 0.97, 0.27, 0.59), (2025, 0.10, 0.97, 0.30, 0.62))
"""(year, men after Văn, women after Thị, men otherwise, women otherwise)."""
_GOOD_TURING_UP_TO = 5
"""Pairs seen at most this often are discounted; more frequent ones keep their counts (Good-Turing is noisy there)."""


def _good_turing(seen: dict[int, int], count: int) -> float:
    """The Good-Turing count r* = (r + 1) N(r+1) / N(r) of a pair seen `count` times (N(r): pairs seen r times)."""
    if count <= _GOOD_TURING_UP_TO and seen.get(count + 1):
        return (count + 1) * seen[count + 1] / seen[count]
    return float(count)


@dataclass(frozen=True)
class _Tables:
    """One sex's search tables: cumulative shares, ending exactly at 1.0."""

    given_cum: F64
    middle_flat: F64
    """Row g: the cumulative shares of the last middle name given given name g, plus g (rows searched as one)."""
    middle_last: I64
    """Per given name, the last middle name of its row with a positive share (a search past the row ends there)."""
    first_cum: F64
    structure: F64
    """(year - FIRST_YEAR, 3): ends of the Văn/Thị-alone, Văn/Thị-and-another and one-other shares."""


def _structure(sex: int, list_shares: dict[str, int]) -> F64:
    total = sum(list_shares.values())
    traditional = (list_shares["trad"] + list_shares["trad2"]) / total
    after = list_shares["trad2"] / (list_shares["trad"] + list_shares["trad2"])
    otherwise = list_shares["two"] / (list_shares["one"] + list_shares["two"])
    anchors = sorted([(a[0], a[1 + sex]) for a in _TRADITIONAL_SHARE] + [(LIST_COHORT, traditional)])
    seconds = sorted([(a[0], a[1 + sex], a[3 + sex]) for a in _SECOND_SHARE] + [(LIST_COHORT, after, otherwise)])
    years = np.arange(FIRST_YEAR, LAST_YEAR + 1, dtype=np.float64)
    p_trad = np.interp(years, [a[0] for a in anchors], [a[1] for a in anchors])
    p_after = np.interp(years, [a[0] for a in seconds], [a[1] for a in seconds])
    p_other = np.interp(years, [a[0] for a in seconds], [a[2] for a in seconds])
    alone_end = p_trad * (1 - p_after)
    one_end = p_trad + (1 - p_trad) * (1 - p_other)
    return np.stack([alone_end, p_trad, one_end], axis=1)


def _tables(sex: int) -> _Tables:
    code = "MF"[sex]
    given_index = {w: i for i, w in enumerate(GIVEN[sex])}
    middle_index = {w: i for i, w in enumerate(MIDDLE[sex])}
    rows = [r for r in name_counts() if r.sex == code]
    given = np.zeros(len(GIVEN[sex]))
    pairs = np.zeros((len(GIVEN[sex]), len(MIDDLE[sex])))
    first = np.zeros(len(MIDDLE[sex]))
    lone_given = np.zeros(len(GIVEN[sex]))
    lone_middle = np.zeros(len(MIDDLE[sex]))
    seen: dict[int, int] = {}
    structure: dict[str, int] = {}
    for r in rows:
        if r.part == "given":
            given[given_index[r.given]] += r.n
        elif r.part == "pair":
            pairs[given_index[r.given], middle_index[r.middle]] = r.n
        elif r.part == "first":
            first[middle_index[r.middle]] += r.n
        elif r.part == "single_given":
            lone_given[given_index[r.given]] += r.n
        elif r.part == "single_middle":
            lone_middle[middle_index[r.middle]] += r.n
        elif r.part == "pairs_seen":
            seen[int(r.given)] = r.n
        elif r.part == "structure":
            structure[r.middle] = r.n
    # Good-Turing: the discounted counts of every pair (those seen once included) make up 1 - N1/N of all pairs.
    occurrences = sum(r * n for r, n in seen.items())
    discounted_all = sum(_good_turing(seen, r) * n for r, n in seen.items())
    scale = discounted_all / (1 - seen.get(1, 0) / occurrences)
    discounted = np.array([0.0] + [_good_turing(seen, c) for c in range(1, int(pairs.max()) + 1)])
    table = discounted[pairs.astype(np.int64)] / scale
    lone = np.outer(lone_given / lone_given.sum(), lone_middle / lone_middle.sum()) * (1 - table.sum())
    joint = table + lone
    row_sums = joint.sum(axis=1, keepdims=True)
    fallback = lone_middle / lone_middle.sum()
    conditional = np.where(row_sums > 0, joint / np.where(row_sums > 0, row_sums, 1), fallback)
    cum = np.cumsum(conditional, axis=1)
    cum /= cum[:, -1:]
    cum[:, -1] = 1.0
    positive = conditional > 0
    last = len(MIDDLE[sex]) - 1 - np.argmax(positive[:, ::-1], axis=1)
    offsets = np.arange(len(GIVEN[sex]), dtype=np.float64)[:, None]
    return _Tables(given_cum=cumulative(given.tolist()), middle_flat=(cum + offsets).ravel(),
                   middle_last=last.astype(np.int64), first_cum=cumulative(first.tolist()),
                   structure=_structure(sex, structure))


TABLES = (_tables(MALE), _tables(FEMALE))


# --- people, vectorised ------------------------------------------------------------------------------------------

def surname(u: F64) -> I64:
    """Surname index (into `text.SURNAMES`) of each uniform draw."""
    return choose_np(SURNAME_CUM, np.asarray(u, dtype=np.float64))


def given(u: F64, sex: I64, birth_year: I64) -> I64:
    """Given-name index (into `text.GIVEN[sex]`) of each person.

    `birth_year` is accepted so that callers need not change when given names get cohorts; the real list holds one
    cohort, so today every year draws from the same frequencies.
    """
    u, sex = np.asarray(u, dtype=np.float64), np.asarray(sex, dtype=np.int64)
    del birth_year
    out = np.empty(len(u), dtype=np.int64)
    for s in (MALE, FEMALE):
        mask = sex == s
        out[mask] = choose_np(TABLES[s].given_cum, u[mask])
    return out


def middle(u: F64, u2: F64, sex: I64, birth_year: I64, given_index: I64) -> tuple[I64, I64]:
    """(middle, middle2) of each person, indices into `text.MIDDLE[sex]` (`NONE` as in `full_name`).

    `u` picks the structure by sex and birth year (and, rescaled, a first middle name when there are two); `u2`
    picks the middle name next to the given name, among those that go with it.
    """
    u, u2 = np.asarray(u, dtype=np.float64), np.asarray(u2, dtype=np.float64)
    sex, given_index = np.asarray(sex, dtype=np.int64), np.asarray(given_index, dtype=np.int64)
    year = np.clip(np.asarray(birth_year, dtype=np.int64), FIRST_YEAR, LAST_YEAR) - FIRST_YEAR
    first = np.full(len(u), NONE, dtype=np.int64)
    last = np.full(len(u), NONE, dtype=np.int64)
    for s in (MALE, FEMALE):
        mask = sex == s
        if not mask.any():
            continue
        t = TABLES[s]
        ends = t.structure[year[mask]]
        kind = (u[mask, None] >= ends).sum(axis=1)
        width = len(MIDDLE[s])
        g = given_index[mask]
        found = np.minimum(np.searchsorted(t.middle_flat, g + u2[mask], side="right"), (g + 1) * width)
        near = np.minimum(found - g * width, t.middle_last[g])
        rescaled = (u[mask] - ends[:, 2]) / (1 - ends[:, 2])
        far = choose_np(t.first_cum, rescaled)
        far = np.where(far == near, (far + 1) % width, far)
        first[mask] = np.select([kind == 2, kind == 3], [near, far], NONE)
        last[mask] = np.select([kind == 1, kind == 3], [near, near], NONE)
    return first, last


# --- people, one at a time ---------------------------------------------------------------------------------------

def surname_py(u: float) -> int:
    return bisect.bisect_right(SURNAME_CUM, u)


def given_py(u: float, sex: int, year: int) -> int:
    """`given` for one person."""
    del year
    return bisect.bisect_right(TABLES[sex].given_cum, u)


def middle_py(u: float, u2: float, sex: int, year: int, given_index: int) -> tuple[int, int]:
    """`middle` for one person."""
    t = TABLES[sex]
    ends = t.structure[min(max(year, FIRST_YEAR), LAST_YEAR) - FIRST_YEAR]
    kind = sum(1 for end in ends.tolist() if u >= end)
    if kind == 0:
        return NONE, NONE
    width = len(MIDDLE[sex])
    found = bisect.bisect_right(t.middle_flat, given_index + u2, given_index * width, (given_index + 1) * width)
    near = min(found - given_index * width, int(t.middle_last[given_index]))
    if kind == 1:
        return NONE, near
    if kind == 2:
        return near, NONE
    end = float(ends[2])
    far = bisect.bisect_right(t.first_cum, (u - end) / (1 - end))
    return ((far + 1) % width if far == near else far), near


def full_name(surname_index: int, middle_index: int, middle2: int, given_index: int, sex: int) -> str:
    """Surname, middle name(s), given name from pool indices (NFC); a given name equal to the last middle one is
    skipped ("Nguyễn Đức Đức" exists, but rarely enough to avoid)."""
    last_middle = TRADITIONAL_MIDDLE[sex] if middle_index < 0 else MIDDLE[sex][middle_index]
    middle_text = last_middle
    if middle2 >= 0:
        last_middle = MIDDLE[sex][middle2]
        middle_text = f"{middle_text} {last_middle}"
    pool = GIVEN[sex]
    given_text = pool[given_index]
    if given_text == last_middle:
        given_text = pool[(given_index + 1) % len(pool)]
    return f"{SURNAMES[surname_index]} {middle_text} {given_text}"


def full_names(surnames: I64, middles: I64, middles2: I64, givens: I64, sexes: I64) -> list[str]:
    """`full_name` of each person."""
    columns: Iterable[list[int]] = (np.asarray(a).tolist() for a in (surnames, middles, middles2, givens, sexes))
    return [full_name(*parts) for parts in zip(*columns, strict=True)]


def collision_share(names: Iterable[str]) -> float:
    """The share of people whose exact full name at least one other person in the set also has."""
    _, counts = np.unique(np.asarray(list(names), dtype=object), return_counts=True)
    total = int(counts.sum())
    return float(counts[counts > 1].sum() / total) if total else 0.0


# --- enterprises -------------------------------------------------------------------------------------------------

BRAND_HALF = math.isqrt(len(BRAND_HEADS) * (len(BRAND_HEADS) - 1) * len(BRAND_TAILS))
BRAND_CAPACITY = BRAND_HALF * BRAND_HALF
"""Enterprise numbers below this get distinct proper names (about 2.5 million)."""


def _brand(value: int) -> str:
    tail = value % len(BRAND_TAILS)
    pair = value // len(BRAND_TAILS)
    head, rest = divmod(pair, len(BRAND_HEADS) - 1)
    second = rest + (rest >= head)
    return f"{BRAND_HEADS[head]} {BRAND_HEADS[second]} {BRAND_TAILS[tail]}"


def enterprise_brands(key: int, numbers: I64) -> list[str]:
    """The proper name (tên riêng) of each enterprise number: a keyed bijection, so no two enterprises share one.

    The Law on Enterprises (59/2020/QH14, art. 41) refuses a name identical or confusingly similar to a registered
    one, including (2h) a proper name equal to a registered proper name, whatever the legal form; so the proper name
    alone is unique here. A Feistel permutation of [0, BRAND_CAPACITY) scatters the numbers; each value is two
    distinct syllables of `BRAND_HEADS` and one of `BRAND_TAILS` (disjoint pools: no syllable repeats in a name).
    """
    values = feistel_np(key, np.asarray(numbers, dtype=np.int64), BRAND_HALF)
    return [_brand(v) for v in values.tolist()]


def enterprise_brand(key: int, number: int) -> str:
    """`enterprise_brands` for one enterprise (one opened on a later day)."""
    return _brand(feistel_py(key, number, BRAND_HALF))


def full_name_collision_target(population: int) -> float:
    """Percent of `population` people whose exact full name another of them has, as the real list gives it with the
    published surname shares (the table above: 22.4 % at 8,757, 31.8 % at 20,000, 35.2 % at 26,451), extended by
    the same logarithmic growth (about 11.8 points per e-fold of the population): 42.6 % at 50,000."""
    return 31.8 + 11.8 * math.log(max(population, 1) / 20_000)


FULL_NAME_COLLISION_TOLERANCE = 0.06
"""Six points either way: the real list is one cohort of students (born about 1995-2002), the world all ages."""
