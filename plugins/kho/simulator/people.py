"""The people of a world as of day 0: households of related citizens, computed for any set of indices at once.

Citizen indices 0..N-1 are cut into blocks of `BLOCK` consecutive indices, and each block into households (sizes
1-7, mean about 3.1, the last one cut short at the block's end). A household's draws (kind, head's age and sex,
origin province, ethnicity, commune) depend only on (seed, household id), a member's only on (seed, index), so
any citizen can be rebuilt alone, and a chunk of a million is rebuilt with numpy in one pass.

Who lives together is plausible rather than measured: a head (18-85), in couples a spouse a few years apart,
children born when their mother was 18-45, in three of ten larger households a parent of the head; 45 % of
households migrated from another province (most from the Mekong Delta and the north-central coast) and their
children born since the move were born in Bình Dương; a quarter of migrant households keep their permanent
residence at home and are registered here temporarily.

CCCD digits 7-12 are unique per prefix (province, century/sex, year), not per world: `CccdIndex` counts, per
prefix, how many earlier citizens share it, and a keyed Feistel permutation of [0, 10**6) scatters that rank.
That holds for any world whose largest prefix has fewer than `RANK_LIMIT` people, about 100 million citizens here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kho.errors import ConfigError
from kho.simulator import calendar as cal
from kho.simulator.rng import (
    B1,
    F64,
    I64,
    choose_np,
    cumulative,
    hash_np,
    stream_key,
    unit_np,
)
from kho.simulator.text import GIVEN, MIDDLE, SURNAME_CUM, SURNAMES, TRADITIONAL_MIDDLE
from kho.sources.reference import commune_codes, communes, ethnicities, province_codes

BLOCK = 16
"""Citizens per block; households never cross a block boundary."""
SEGMENT = 1 << 16
"""Citizens per pass when counting CCCD prefixes."""
RANK_LIMIT = 900_000
"""Ranks from here to 999,999 are kept for identity numbers of people the population registry does not know."""
FABRICATED_BASE_RANKS = (RANK_LIMIT, 950_000)
"""Ranks for day-0 identity numbers unknown to the population registry; days 1.. use 950,000-999,999."""
HOME_PROVINCE = 74
"""Bình Dương."""

MALE, FEMALE = 0, 1
HEAD, SPOUSE, CHILD, PARENT = 0, 1, 2, 3
RELATION_NAMES = ("head", "spouse", "child", "parent", "grandchild", "sibling", "other")
SINGLE, COUPLE, SINGLE_PARENT = 0, 1, 2

_SIZE_CUM = cumulative([14, 22, 24, 22, 11, 5, 2])
_YEAR = 365.2425
_HEAD_AGE_EDGES = np.array([18, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 86], dtype=np.float64)
_HEAD_AGE_CUM = cumulative([8, 12, 14, 14, 12, 10, 9, 7, 6, 4, 2.5, 1.5, 0.8])
_OLDEST_ORD = cal.add_years(cal.DAY0_ORD, -95) + 1
"""Nobody is older than 95: every birth year is then 1930 or later, far from the 1900s/2000s prefix clash."""

# Mekong Delta and north-central provinces send most migrants to Bình Dương (weights illustrative).
_MIGRANT_SOURCES = {
    "34", "36", "38", "40", "42", "51", "52", "70", "72", "79", "80", "82", "83", "84", "86", "87", "89", "91",
    "94", "95", "96",
}
_ETHNIC_SHARES = {"Kinh": 88.0, "Khmer": 3.0, "Hoa": 3.0, "Tày": 1.2, "Nùng": 1.0, "Mường": 0.8, "Thái": 0.6,
                  "Xtiêng": 0.5, "Chơ Ro": 0.4, "Chăm": 0.4, "Dao": 0.3, "H'Mông": 0.3, "Sán Dìu": 0.2}


@dataclass(frozen=True)
class Geography:
    """Reference data as arrays, shared by every world: provinces and the communes people live in."""

    provinces: tuple[str, ...]
    """Province codes (2 digits) in code order."""
    origin_cum: F64
    """Cumulative shares of migrants' origin provinces (over `provinces`, never the home province)."""
    communes: tuple[str, ...]
    """Commune codes the simulator uses, in code order."""
    commune_province: I64
    home_communes: I64
    """Indices into `communes` of the home province's communes."""
    communes_by_province: dict[int, I64]
    ethnicities: tuple[str, ...]
    ethnicity_cum: F64


def _geography() -> Geography:
    provinces = tuple(sorted(province_codes()))
    weights = [0.0 if int(p) == HOME_PROVINCE else 4.0 if p in _MIGRANT_SOURCES else 1.0 for p in provinces]
    rows = communes()
    codes = tuple(sorted(commune_codes()))
    province_of = np.array([int(rows[c]["province_code"]) for c in codes], dtype=np.int64)
    by_province = {int(p): np.flatnonzero(province_of == int(p)) for p in set(province_of.tolist())}
    if HOME_PROVINCE not in by_province:
        raise ConfigError("communes.csv has no commune of Bình Dương (74): the simulator needs somewhere to live")
    names = ethnicities()
    known = set(names.values())
    shares = {name: share for name, share in _ETHNIC_SHARES.items() if name in known}
    return Geography(
        provinces=provinces, origin_cum=cumulative(weights), communes=codes, commune_province=province_of,
        home_communes=by_province[HOME_PROVINCE], communes_by_province=by_province,
        ethnicities=tuple(shares), ethnicity_cum=cumulative(list(shares.values())),
    )


GEOGRAPHY = _geography()


@dataclass
class Citizens:
    """Day-0 facts of a set of citizens (one array element per requested index); dates are ordinals."""

    index: I64
    household: I64
    """Household number (block * BLOCK + position in block)."""
    slot: I64
    size: I64
    kind: I64
    role: I64
    sex: I64
    dob: I64
    birth_province: I64
    hometown: I64
    ethnicity: I64
    commune: I64
    temporary: I64
    """Index into GEOGRAPHY.communes of the temporary residence, -1 when none."""
    deceased: B1
    dod: I64
    """Date of death, 0 while alive."""
    joined_on: I64
    married_on: I64
    """Marriage registration date of a couple (on both partners), 0 otherwise."""
    surname: I64
    middle: I64
    """Index into the middle-name pool of the person's sex; -1 for the traditional Văn/Thị."""
    middle2: I64
    given: I64
    migrated_on: I64
    """Date the household moved to Bình Dương, 0 for households that always lived here."""
    registered_here: B1
    head_index: I64
    spouse_index: I64
    """Index of the head's spouse in the same household, -1 when none."""
    mother_index: I64
    """For children: the index of their mother in the household, -1 when she does not live there."""
    father_index: I64
    updated_at: I64
    """Seconds since 1970."""

    def __len__(self) -> int:
        return len(self.index)

    def names(self) -> list[str]:
        """Full names: surname, one or two middle names, given name (all NFC)."""
        return [full_name(*parts) for parts in zip(self.surname.tolist(), self.middle.tolist(),
                                                    self.middle2.tolist(), self.given.tolist(), self.sex.tolist(),
                                                    strict=True)]


def full_name(surname: int, middle: int, middle2: int, given: int, sex: int) -> str:
    """Surname, middle name(s), given name from pool indices; a given name equal to the middle one is skipped."""
    last_middle = TRADITIONAL_MIDDLE[sex] if middle < 0 else MIDDLE[sex][middle]
    middle_text = last_middle
    if middle2 >= 0:
        last_middle = MIDDLE[sex][middle2]
        middle_text = f"{middle_text} {last_middle}"
    pool = GIVEN[sex]
    given_text = pool[given]
    if given_text == last_middle:  # "Nguyễn Đức Đức" exists, but rarely enough to avoid
        given_text = pool[(given + 1) % len(pool)]
    return f"{SURNAMES[surname]} {middle_text} {given_text}"


class Model:
    """The day-0 population of world `seed`: pure functions of (seed, index), vectorised."""

    def __init__(self, seed: int, count: int) -> None:
        self.seed = seed
        self.count = count
        self._k_size = stream_key(seed, "household.size")
        self._k_house = stream_key(seed, "household")
        self._k_person = stream_key(seed, "person")

    def partition(self, blocks: I64) -> tuple[I64, I64]:
        """Household sizes (cut at the block end, 0 past the last household) and starts, shape (blocks, BLOCK)."""
        cells = blocks[:, None] * BLOCK + np.arange(BLOCK)[None, :]
        sizes = choose_np(_SIZE_CUM, unit_np(self._k_size, cells)) + 1
        ends = np.cumsum(sizes, axis=1)
        starts = ends - sizes
        room = np.minimum(BLOCK, self.count - blocks * BLOCK)[:, None]  # the last block ends with the world
        cut = np.clip(room - starts, 0, None)
        return np.minimum(sizes, cut), starts

    def households_of_blocks(self, blocks: I64) -> tuple[I64, I64, I64]:
        """(household number, first citizen index, size) of every household in `blocks`, in index order."""
        sizes, starts = self.partition(blocks)
        present = sizes > 0
        rows, cols = np.nonzero(present)
        return blocks[rows] * BLOCK + cols, blocks[rows] * BLOCK + starts[rows, cols], sizes[rows, cols]

    def citizens(self, index: I64) -> Citizens:
        """Day-0 facts of the citizens at `index` (any order, repeats allowed)."""
        index = np.asarray(index, dtype=np.int64)
        n = len(index)
        blocks, inverse = np.unique(index // BLOCK, return_inverse=True)
        sizes, starts = self.partition(blocks)
        offset = index % BLOCK
        ends = (starts + sizes)[inverse]
        local = np.sum(ends <= offset[:, None], axis=1)
        start = starts[inverse, local]
        size = sizes[inverse, local]
        slot = offset - start
        household = (index // BLOCK) * BLOCK + local
        first = index - slot

        kh, kp = self._k_house, self._k_person

        def hu(s: int) -> F64:
            return unit_np(kh, household, s)

        def pu(s: int) -> F64:
            return unit_np(kp, index, s)

        # Household kind and roles.
        kind = np.where(size == 1, SINGLE, np.where(hu(0) < 0.78, COUPLE, SINGLE_PARENT))
        with_parent = (size >= 3) & (hu(1) < 0.3)
        role = np.full(n, CHILD)
        role[slot == 0] = HEAD
        role[(slot == 1) & (kind == COUPLE)] = SPOUSE
        role[with_parent & (slot == size - 1)] = PARENT
        head_male_p = np.where(kind == COUPLE, 0.8, np.where(kind == SINGLE_PARENT, 0.25, 0.5))
        head_sex = np.where(hu(2) < head_male_p, MALE, FEMALE)

        # Ages, in days before day 0.
        group = choose_np(_HEAD_AGE_CUM, hu(3))
        lo, hi = _HEAD_AGE_EDGES[group], _HEAD_AGE_EDGES[group + 1]
        head_years = lo + (hi - lo) * hu(4)
        head_years = np.where(kind == SINGLE, head_years, np.clip(head_years, 22, 80))
        head_age = head_years * _YEAR
        partner_gap = (3 + 6 * (hu(5) - 0.5)) * _YEAR
        partner_age = np.clip(np.where(head_sex == MALE, head_age - partner_gap, head_age + partner_gap),
                              20 * _YEAR, 90 * _YEAR)
        mother_age = np.where(kind == COUPLE, np.where(head_sex == FEMALE, head_age, partner_age), head_age)
        # A child is born when the (single) parent was 18-45; a parent of the head is 20-35 years older.
        lo_child = np.maximum(0.0, mother_age - 45 * _YEAR)
        hi_child = mother_age - 18 * _YEAR
        child_age = lo_child + (hi_child - lo_child) * pu(0)
        parent_age = np.minimum(head_age + (20 + 15 * hu(6)) * _YEAR, 94.5 * _YEAR)
        age = np.select([role == HEAD, role == SPOUSE, role == PARENT], [head_age, partner_age, parent_age],
                        child_age)
        dob = np.clip(cal.DAY0_ORD - np.floor(age).astype(np.int64), _OLDEST_ORD, cal.DAY0_ORD - 1)
        sex = np.select([role == HEAD, role == SPOUSE, role == PARENT],
                        [head_sex, 1 - head_sex, np.where(hu(7) < 0.65, FEMALE, MALE)],
                        np.where(pu(1) < 0.51, MALE, FEMALE))

        # Where the household comes from and where it lives.
        geo = GEOGRAPHY
        home_idx = geo.provinces.index(f"{HOME_PROVINCE:02d}")
        migrant = hu(8) >= 0.55
        origin = np.where(migrant, choose_np(geo.origin_cum, hu(9)), home_idx)
        head_dob = cal.DAY0_ORD - np.floor(head_age).astype(np.int64)
        years_here = np.minimum(1 + 24 * hu(10), head_years - 16) * _YEAR
        migrated_on = np.where(migrant, cal.DAY0_ORD - np.floor(years_here).astype(np.int64), 0)
        spouse_from_elsewhere = hu(11) < np.where(migrant, 0.2, 0.15)
        other_province = choose_np(geo.origin_cum, hu(12))
        born_here = (role == CHILD) & (cal.DAY0_ORD - dob < np.where(migrant, years_here, 1e9))
        birth_idx = np.where(born_here, home_idx,
                             np.where((role == SPOUSE) & spouse_from_elsewhere, other_province, origin))
        birth_province = np.array([int(p) for p in geo.provinces], dtype=np.int64)[birth_idx]
        n_prov = len(geo.provinces)
        head_hometown = np.where(hu(13) < 0.15, np.floor(hu(14) * n_prov), origin).astype(np.int64)
        spouse_birth = np.where(spouse_from_elsewhere, other_province, origin)
        spouse_hometown = np.where(hu(24) < 0.15, np.floor(hu(25) * n_prov), spouse_birth).astype(np.int64)
        # Children take their father's hometown (quê quán), or their mother's when no father lives with them.
        child_hometown = np.where((kind == COUPLE) & (head_sex == FEMALE), spouse_hometown, head_hometown)
        hometown_idx = np.select([role == HEAD, role == SPOUSE, role == PARENT],
                                 [head_hometown, spouse_hometown, origin], child_hometown)
        hometown = np.array([int(p) for p in geo.provinces], dtype=np.int64)[hometown_idx]

        home = geo.home_communes
        home_commune = home[np.floor(hu(15) * len(home)).astype(np.int64)]
        registered_here = ~migrant | (hu(16) < 0.75)
        commune = home_commune.copy()
        origin_code = np.array([int(p) for p in geo.provinces], dtype=np.int64)[origin]
        for prov, members in geo.communes_by_province.items():
            if prov == HOME_PROVINCE:
                continue
            here = ~registered_here & (origin_code == prov)
            commune[here] = members[np.floor(hu(17)[here] * len(members)).astype(np.int64)]
        registered_here = registered_here | (geo.commune_province[commune] == HOME_PROVINCE)
        stay_commune = home[np.floor(hu(18) * len(home)).astype(np.int64)]
        temporary = np.where(registered_here, -1, stay_commune)
        adult = (cal.DAY0_ORD - dob) >= 18 * _YEAR
        own_temp = registered_here & adult & (pu(4) < 0.04)
        other = home[np.floor(pu(5) * len(home)).astype(np.int64)]
        temporary = np.where(own_temp & (other != commune), other, temporary)

        ethnic = choose_np(geo.ethnicity_cum, hu(19))
        ethnicity = np.where((role == SPOUSE) & (pu(6) < 0.08), choose_np(geo.ethnicity_cum, pu(7)), ethnic)

        # Dates: household established, marriage, joining, death.
        earliest = np.maximum(cal.add_years_np(head_dob, 18), cal.HISTORY_FROM_ORD - 25 * 365)
        established = np.where(
            migrant & registered_here, migrated_on,
            earliest + np.floor((cal.DAY0_ORD - 30 - earliest) * hu(20)).astype(np.int64))
        established = np.clip(established, earliest, cal.DAY0_ORD - 30)
        partner_dob = cal.DAY0_ORD - np.floor(partner_age).astype(np.int64)
        husband_dob = np.where(head_sex == MALE, head_dob, partner_dob)
        wife_dob = np.where(head_sex == MALE, partner_dob, head_dob)
        legal = np.maximum(cal.add_years_np(husband_dob, 20), cal.add_years_np(wife_dob, 18))
        married_on = np.minimum(legal + np.floor(hu(21) * 8 * 365).astype(np.int64), cal.DAY0_ORD - 1)
        couple_member = (kind == COUPLE) & ((role == HEAD) | (role == SPOUSE))
        married_on = np.where(couple_member, married_on, 0)
        joined_on = np.select([role == HEAD, role == SPOUSE, role == CHILD],
                              [established, np.maximum(established, married_on), np.maximum(established, dob)],
                              established)
        joined_on = np.minimum(joined_on, cal.DAY0_ORD - 1)
        death_from = np.maximum(joined_on, cal.HISTORY_FROM_ORD - 5 * 365) + 1
        deceased = (role == PARENT) & (pu(8) < 0.15) & (death_from < cal.DAY0_ORD)
        dod = np.where(deceased, death_from + np.floor((cal.DAY0_ORD - death_from) * pu(9)).astype(np.int64), 0)

        # Names: children carry their father's surname (or their mother's when no father lives with them).
        head_surname = choose_np(SURNAME_CUM, hu(22))
        partner_surname = choose_np(SURNAME_CUM, hu(23))
        father_surname = np.where((kind == COUPLE) & (head_sex == FEMALE), partner_surname, head_surname)
        own_surname = choose_np(SURNAME_CUM, pu(10))
        surname = np.select(
            [role == HEAD, role == SPOUSE, role == CHILD, sex == MALE],
            [head_surname, partner_surname, father_surname, head_surname], own_surname)
        birth_year = cal.years_np(dob)
        traditional = pu(11) < np.where(birth_year < 1990, 0.6, 0.25)
        middle_pick = np.floor(pu(12) * 12).astype(np.int64)
        middle = np.where(traditional, -1, middle_pick)
        middle2 = np.where(traditional & (sex == FEMALE) & (pu(13) < 0.15), middle_pick, -1)
        given_count = np.where(sex == MALE, len(GIVEN[0]), len(GIVEN[1]))
        given = np.floor(pu(14) * given_count).astype(np.int64)

        # Who is who in the household.
        head_index = first
        spouse_index = np.where(kind == COUPLE, first + 1, -1)
        mother_index = np.where(
            (role == CHILD) & ((kind == COUPLE) | (head_sex == FEMALE)),
            np.where((kind == COUPLE) & (head_sex == MALE), first + 1, first), -1)
        father_index = np.where(
            (role == CHILD) & ((kind == COUPLE) | (head_sex == MALE)),
            np.where((kind == COUPLE) & (head_sex == FEMALE), first + 1, first), -1)

        last_change = np.maximum.reduce([dob + 1, joined_on + 1, dod + 1,
                                         np.full(n, cal.HISTORY_FROM_ORD)])
        span = (cal.DAY0_ORD + 1 - last_change) * cal.SECONDS_PER_DAY
        updated_at = cal.ords_to_seconds(last_change) + np.floor(span * pu(15)).astype(np.int64)
        return Citizens(
            index=index, household=household, slot=slot, size=size, kind=kind, role=role, sex=sex, dob=dob,
            birth_province=birth_province, hometown=hometown, ethnicity=ethnicity, commune=commune,
            temporary=temporary, deceased=deceased, dod=dod, joined_on=joined_on, married_on=married_on,
            surname=surname, middle=middle, middle2=middle2, given=given, migrated_on=migrated_on,
            registered_here=registered_here, head_index=head_index, spouse_index=spouse_index,
            mother_index=mother_index, father_index=father_index, updated_at=updated_at,
        )


def prefix_ids(birth_province: I64, dob: I64, sex: I64) -> I64:
    """CCCD digits 1-6 as one integer: province * 1000 + century/sex digit * 100 + two-digit year."""
    year = cal.years_np(dob)
    digit = (year // 100 - 19) * 2 + sex
    return birth_province * 1000 + digit * 100 + year % 100


PREFIX_SPACE = 97 * 1000


class CccdIndex:
    """Unique CCCD digits 7-12 per prefix: rank among earlier citizens with the same prefix, then permuted.

    One vectorised pass over all N citizens counts prefixes in index order and keeps each citizen's rank as an
    int32 (4 MB per million citizens, nothing per record): then any citizen's CCCD is one lookup, which the
    cross-registry links (legal representatives, parents, spouses) need in random order.
    """

    def __init__(self, model: Model, count: int) -> None:
        self.model = model
        self.count = count
        self._key = stream_key(model.seed, "cccd.suffix")
        self._ranks = np.empty(count, dtype=np.int32)
        running = np.zeros(PREFIX_SPACE, dtype=np.int64)
        for lo in range(0, count, SEGMENT):
            hi = min(lo + SEGMENT, count)
            people = model.citizens(np.arange(lo, hi, dtype=np.int64))
            prefixes = prefix_ids(people.birth_province, people.dob, people.sex)
            order = np.argsort(prefixes, kind="stable")
            ordered = prefixes[order]
            group_start = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
            group_size = np.diff(np.r_[group_start, len(ordered)])
            rank = np.empty(len(ordered), dtype=np.int64)
            rank[order] = np.arange(len(ordered)) - np.repeat(group_start, group_size)
            self._ranks[lo:hi] = running[prefixes] + rank
            running += np.bincount(prefixes, minlength=PREFIX_SPACE)
        self.totals = running
        """Citizens per prefix in the day-0 population: later identity numbers of a prefix rank after them."""
        if count and int(running.max()) >= RANK_LIMIT:
            raise ConfigError(f"{count} citizens put {int(running.max())} people in one CCCD prefix, more than the "
                              f"{RANK_LIMIT} six digits leave room for; choose fewer citizens")

    def ranks(self, index: I64) -> I64:
        """Rank of each day-0 citizen among those with its prefix."""
        return self._ranks[index].astype(np.int64)

    def numbers(self, prefixes: I64, ranks: I64) -> I64:
        """The 12-digit CCCD (as an integer) for a prefix id and a rank: a per-prefix Feistel permutation."""
        left, right = ranks // 1000, ranks % 1000
        keyed = prefixes.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        for round_ in range(4):
            mixed = (hash_np(self._key, keyed ^ right.astype(np.uint64), round_) % np.uint64(1000)).astype(np.int64)
            left, right = right, (left + mixed) % 1000
        return prefixes * 1_000_000 + left * 1000 + right

    def cccd_numbers(self, people: Citizens) -> I64:
        prefixes = prefix_ids(people.birth_province, people.dob, people.sex)
        return self.numbers(prefixes, self.ranks(people.index))
