"""The people of a world as of day 0: households of related citizens, computed for any set of indices at once.

Citizen indices 0..N-1 are cut into blocks of `BLOCK` consecutive indices, and each block into households (sizes
1-7, the last one cut short at the block's end). A household's draws (kind, head's age and sex, origin province,
ethnicity, commune) depend only on (seed, household id), a member's only on (seed, index), so any citizen can be
rebuilt alone, and a chunk of a million is rebuilt with numpy in one pass.

Who lives together follows the published figures of `demography` (sources there): household sizes; a head, in
couples a spouse (the husband usually about three years older), children, and in some households the head's
parent(s) — three generations when children live there too — a sibling of the head, or a married eldest child with
the spouse (newlyweds living with the husband's parents). The dead stay listed: a widowed single parent's late
spouse, a remarried head's late first spouse, the head's father who died years ago; each marriage is on record
(civil_status), so widowhood and remarriage show as the registries would show them. The head's age by kind of
household, the size draws and the share living with parents are calibrated (constants below) so that the whole
population meets the Bình Dương pyramid by five-year group and sex. Children are spaced by the published birth
intervals, never less than nine months apart except twins (rare); the mother's age at her last birth follows the
fertility schedule cut to her age, so young mothers have young children. Children's sex follows the sex ratio at
birth (1.11). The head's parents who died in the five years before day 0 did so at the life table's rates, scaled.
Migrant households come from the provinces that send them (`demography.MIGRANT_ORIGINS`), with the ethnic mix of
their birth province; their children born before the move were born and registered in the household's origin
commune, those born since in Bình Dương; a couple who married before the move married there too. A quarter of
migrant households keep their permanent residence at home and are registered here temporarily.

CCCD digits 7-12 are unique per prefix (province, century/sex, year), not per world: `CccdIndex` counts, per
prefix, how many earlier citizens share it, and a keyed Feistel permutation of [0, 10**6) scatters that rank.
That holds for any world whose largest prefix has fewer than `RANK_LIMIT` people, about 100 million citizens here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kho.errors import ConfigError
from kho.simulator import calendar as cal
from kho.simulator import demography, names
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
HEAD, SPOUSE, CHILD, PARENT, SIBLING, LATE, IN_LAW = 0, 1, 2, 3, 5, 7, 8
"""Roles in a household; LATE, a late spouse among the dead, is recorded as `spouse`; IN_LAW, a married child's
spouse, as `other`."""
RELATION_NAMES = ("head", "spouse", "child", "parent", "grandchild", "sibling", "other")
SINGLE, COUPLE, SINGLE_PARENT = 0, 1, 2

_SIZE_DRAW = (14.07, 12.45, 18.69, 22.21, 21.14, 0.80, 10.64)
"""Calibrated draw weights of household sizes 1-7: a block's last household is cut short at the block's end, so the
draws lean large for the households made to meet demography.HOUSEHOLD_SIZE_SHARES."""
_SIZE_CUM = cumulative(list(_SIZE_DRAW))
_YEAR = 365.2425
_OLDEST_ORD = cal.add_years(cal.DAY0_ORD, -95) + 1
"""Nobody is older than 95: every birth year is then 1930 or later, far from the 1900s/2000s prefix clash."""
_HEAD_AGE_EDGES = np.array([18, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 95], dtype=np.float64)
_HEAD_AGE_WEIGHTS = {
    # Calibrated (`python -m kho.simulator.calibrate`) so that the whole population's pyramid meets
    # demography.PYRAMID_*: young migrant workers live alone or as couples, families are headed by people of 25-50.
    "single": (12.85, 61.94, 13.3, 3.97, 2.09, 1.73, 1.37, 1.17, 0.82, 0.5, 0.27, 0.0, 0.0, 0.0, 0.0),
    "couple": (0.0, 0.0, 19.64, 18.21, 17.01, 14.78, 12.3, 8.61, 5.4, 2.92, 1.12, 0.01, 0.0, 0.0, 0.0),
    "single_parent": (0.0, 0.0, 10.0, 11.93, 15.63, 18.23, 17.94, 13.14, 7.77, 3.79, 1.55, 0.01, 0.0, 0.0, 0.0),
}
_HEAD_AGE_CUM = {kind: cumulative(list(w)) for kind, w in _HEAD_AGE_WEIGHTS.items()}
_COUPLE_SHARE = np.array([0.0, 0.0, 0.62, 0.85, 0.88, 0.88, 0.88, 0.88], dtype=np.float64)
"""Share of households of each size (index) headed by a couple; the rest by one adult."""
_WITH_PARENTS = np.array([0.0, 0.0, 0.118, 0.178, 0.374, 0.523, 0.599, 0.673], dtype=np.float64)
"""Calibrated share of households of each size living with the head's parent(s): three generations when children
live there too (meeting demography.THREE_GENERATION_SHARE), two when an adult lives with an old parent."""
_TWIN_PER_INTERVAL = 2.2 * demography.TWIN_SHARE
"""A twin is drawn as a zero interval after an earlier child, so only second and later births can be one: the chance
per interval is raised so that twins are about demography.TWIN_SHARE of all deliveries."""
_WITH_SIBLING = 0.5
_STEM = 0.85
"""Calibrated share of couples' households with two children or more whose eldest (25 or older) is married and
lives there with the spouse (demography.MARITAL_STATUS: never married among the 15+)."""
_TWO_PARENTS = 0.85
"""Share of households with the head's parents that list both: a couple, or a widow(er) and the late spouse."""
_ELDER_WIDOWED = 0.6
"""Share of those whose father died years before day 0 (the mother widowed): calibrated with the widowed share of
demography.MARITAL_STATUS."""
_LATE_SINGLE_PARENT = 0.85
"""Calibrated share of single parents who are widowed (their late spouse among the household's dead)."""
_LATE_COUPLE = 0.3
"""Calibrated share of couples whose head was widowed and married again (demography.REMARRIAGE_SHARE)."""
"""Calibrated share of households of two children or more where the last is a sibling of the head instead."""
_BOY = demography.SEX_RATIO_AT_BIRTH / (1 + demography.SEX_RATIO_AT_BIRTH)
_INTERVAL_BANDS = np.minimum(np.array(list(demography.BIRTH_INTERVAL_SHARES), dtype=np.float64), 119)
"""Birth intervals in months; the published open band (five years or more) is closed at ten years, beyond which
second births are rare, so that mothers of 40 and more have few of the recent births (demography.ASFR)."""
_INTERVAL_CUM = cumulative(list(demography.BIRTH_INTERVAL_SHARES.values()))
_MOTHER_AGE_CUM = cumulative(list(demography.mother_age_shares()))
_MOTHER_AGE_LO = np.array([lo for lo, _ in demography.ASFR_GROUPS], dtype=np.float64)
_FIRST_BIRTH_MIN = 19.0
"""Mothers in the world were at least 18 at their first birth (adolescent births exist but are rare in Bình Dương)."""
_LAST_BIRTH_MAX = 49.9
"""The fertility schedule ends at 49 (demography.ASFR_GROUPS)."""
_LAST_BIRTH_SKEW = 1.45
"""Calibrated: a mother's last birth is drawn earlier in her cut schedule than a uniform draw would place it (most
women had their last child years before day 0: Bình Dương's fertility is 1.4 children), so that the children's
ages meet the pyramid's 0-4, 5-9 and 10-14 groups."""
_ASFR_AGES = np.array([lo for lo, _ in demography.ASFR_GROUPS] + [demography.ASFR_GROUPS[-1][1] + 1],
                      dtype=np.float64)
_ASFR_CUM = np.r_[0.0, cumulative(list(demography.mother_age_shares()))]
_MORTALITY = (np.array(demography.MORTALITY_MALE), np.array(demography.MORTALITY_FEMALE))
_DEATH_YEARS = 5
"""Day-0 deaths happened in the five years before day 0 (the dead stay in the registries, deceased)."""
_DEATH_SCALE = 0.788
"""Besides the late spouses and parents who died years ago, the head's parents died in the five years to day 0 at
their life-table rates scaled (calibrated) so that the deaths of the last year come near
demography.CRUDE_DEATH_RATE; no household loses its head or its second member, whom the
`household_without_one_head` anomaly names, before the registries' events begin."""
_MIGRANT_HOUSEHOLDS = 0.51
"""Share of households that moved here from another province; their children born since were born here, so the
share of residents born elsewhere (demography.MIGRANT_SHARE) is lower."""


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
    """Per province (rows, as `provinces`), cumulative shares over `ethnicities` of the people born there."""


def _geography() -> Geography:
    provinces = tuple(sorted(province_codes()))
    rows = communes()
    codes = tuple(sorted(commune_codes()))
    province_of = np.array([int(rows[c]["province_code"]) for c in codes], dtype=np.int64)
    by_province = {int(p): np.flatnonzero(province_of == int(p)) for p in set(province_of.tolist())}
    if HOME_PROVINCE not in by_province:
        raise ConfigError("communes.csv has no commune of Bình Dương (74): the simulator needs somewhere to live")
    named = dict(demography.MIGRANT_ORIGINS)
    rest = [p for p in provinces if p not in named and int(p) != HOME_PROVINCE]
    weights = [0.0 if int(p) == HOME_PROVINCE else named.get(p, demography.MIGRANT_ORIGIN_OTHER / max(len(rest), 1))
               for p in provinces]
    weights = [w if int(p) in by_province else 0.0 for w, p in zip(weights, provinces, strict=True)]
    known = set(ethnicities().values())
    names = sorted({name for p in provinces for name in demography.ethnicity_shares(p)}, key=lambda n: (n != "Kinh", n))
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConfigError(f"demography names ethnic groups ethnicities.csv lacks: {', '.join(unknown)}")
    table = np.array([[demography.ethnicity_shares(p).get(name, 0.0) for name in names] for p in provinces])
    cum = np.cumsum(table, axis=1)
    cum /= cum[:, -1:]
    cum[:, -1] = 1.0
    return Geography(
        provinces=provinces, origin_cum=cumulative(weights), communes=codes, commune_province=province_of,
        home_communes=by_province[HOME_PROVINCE], communes_by_province=by_province,
        ethnicities=tuple(names), ethnicity_cum=cum,
    )


GEOGRAPHY = _geography()
_PROVINCE_CODES = np.array([int(p) for p in GEOGRAPHY.provinces], dtype=np.int64)
_PROVINCE_ROW = {code: row for row, code in enumerate(_PROVINCE_CODES.tolist())}


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
    origin_commune: I64
    """The household's commune in its province of origin (migrants; a Bình Dương commune for natives)."""
    birth_commune: I64
    """The commune where the person's birth was registered (its province is `birth_province`)."""
    married_commune: I64
    """Where a couple's marriage was registered: the origin commune when they married before moving here."""
    late_slot: I64
    """The household's slot of a late spouse (dead: a widowed single parent's, a remarried head's first), -1 when
    none; the same for every member."""
    parents: I64
    """How many of the head's parents the household lists (the same for every member)."""
    married_now: B1
    """Whether the person is married at day 0 to a living spouse of the household: the couple heading it, or a
    married eldest child and spouse."""
    marriage_row: I64
    """Row id of that marriage's registration (its anchor: the head, or the married eldest child); -1 if none."""
    spouse_arrived: I64
    """When a spouse came to live with a household that did not move here (the wedding, or the first child's birth
    if earlier), or a married child's spouse with theirs (the wedding, or the move); 0 for everyone else."""
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
        return names.full_names(self.surname, self.middle, self.middle2, self.given, self.sex)


full_name = names.full_name
"""Surname, middle name(s), given name from pool indices (`names.full_name`)."""


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

        # Who lives here: a head, a spouse in couples, the head's parent(s) in the last slots, children between.
        clipped = np.minimum(size, len(_COUPLE_SHARE) - 1)
        kind = np.where(size == 1, SINGLE, np.where(hu(0) < _COUPLE_SHARE[clipped], COUPLE, SINGLE_PARENT))
        couple = kind == COUPLE
        room = size - 1 - couple  # slots left after head and spouse
        wants_parents = hu(1) < _WITH_PARENTS[clipped]
        parents = np.where(wants_parents, np.where(hu(2) < _TWO_PARENTS, 2, 1), 0)
        parents = np.where(room >= 3, parents, np.where(room >= 2, np.minimum(parents, 1),
                                                        np.where((room == 1) & ~couple, parents.clip(0, 1), 0)))
        # A late spouse, among the household's dead in the slot before the head's parents: a widowed single
        # parent's (the children's other parent), or the first spouse of a head who was widowed and married again.
        late = (parents < 2) & (room - parents >= 1) & (size - parents - 1 >= 2) & np.where(
            kind == SINGLE_PARENT, hu(63) < _LATE_SINGLE_PARENT, couple & (hu(63) < _LATE_COUPLE))
        children = room - parents - late
        # In some households of two children or more the last of them is a brother or sister of the head instead
        # (relatives who came to work here live with family): calibrated with the pyramid's children and adults.
        sibling = (children >= 2) & (hu(61) < _WITH_SIBLING)
        children = children - sibling
        late_slot = np.where(late, size - parents - 1, -1)
        role = np.full(n, CHILD)
        role[slot == 0] = HEAD
        role[(slot == 1) & couple] = SPOUSE
        role[sibling & (slot == size - parents - late - 1)] = SIBLING
        role[slot == late_slot] = LATE
        role[slot >= size - parents] = PARENT
        child_rank = slot - 1 - couple  # 0 = the eldest child
        head_male_p = np.where(couple, 0.8, np.where(kind == SINGLE_PARENT, 0.25, 0.55))
        head_sex = np.where(hu(3) < head_male_p, MALE, FEMALE)

        # The head's age, by kind of household; a spouse a few years apart (the husband usually older).
        group = np.select([kind == SINGLE, couple], [choose_np(_HEAD_AGE_CUM["single"], hu(4)),
                                                      choose_np(_HEAD_AGE_CUM["couple"], hu(4))],
                          choose_np(_HEAD_AGE_CUM["single_parent"], hu(4)))
        lo, hi = _HEAD_AGE_EDGES[group], _HEAD_AGE_EDGES[group + 1]
        head_years = lo + (hi - lo) * hu(5)
        gap = np.clip(3.0 + 3.0 * _normal(hu(6), hu(7)), -4.0, 14.0)  # husband's years more than the wife's
        partner_years = np.where(head_sex == MALE, head_years - gap, head_years + gap)
        husband_years = np.where(head_sex == MALE, head_years, partner_years)
        wife_years = np.where(head_sex == MALE, partner_years, head_years)
        # A couple is of marriageable age (men 20, women 18) with a year to spare.
        lift = np.maximum(0.0, np.maximum(21.0 - husband_years, 19.0 - wife_years))
        lift = np.where(couple, lift, 0.0)
        head_years, partner_years = head_years + lift, partner_years + lift

        # Children, eldest first, at least nine months apart (demography.BIRTH_INTERVAL_SHARES; twins rarely,
        # TWIN_SHARE): the mother's age at her last birth follows the fertility schedule (demography.ASFR on the
        # pyramid), cut to what her age and her children's spacing allow, so young mothers have young children.
        mother_years = np.where(couple, np.where(head_sex == FEMALE, head_years, partner_years),
                                np.where(head_sex == FEMALE, head_years, head_years - gap))
        steps = np.zeros((n, 6))
        for j in range(1, 6):
            band = _INTERVAL_BANDS[choose_np(_INTERVAL_CUM, hu(10 + j))]
            months = band[:, 0] + (band[:, 1] + 1 - band[:, 0]) * hu(20 + j)
            twin = hu(30 + j) < _TWIN_PER_INTERVAL
            steps[:, j] = np.where(twin, 0.0, np.maximum(months / 12, demography.MIN_BIRTH_INTERVAL_DAYS / _YEAR))
        last = np.clip(children - 1, 0, 5)[:, None]
        drawn = np.take_along_axis(np.cumsum(steps, axis=1), last, axis=1)[:, 0]
        # A family fits in one woman's fertile years (18 to 49): long intervals shrink, never below nine months.
        fit = np.minimum(1.0, (_LAST_BIRTH_MAX - _FIRST_BIRTH_MIN) / np.maximum(drawn, 1e-9))
        steps = np.where(steps > 0, np.maximum(steps * fit[:, None], demography.MIN_BIRTH_INTERVAL_DAYS / _YEAR), 0.0)
        cumulative_steps = np.cumsum(steps, axis=1)
        span = np.where(children > 0, np.take_along_axis(cumulative_steps, last, axis=1)[:, 0], 0.0)
        # A mother too young for her children's spacing is older than drawn (her household, too).
        older = np.where(children > 0, np.maximum(0.0, _FIRST_BIRTH_MIN + span + 10.0 * hu(9) - mother_years), 0.0)
        head_years = head_years + older
        partner_years = partner_years + older
        mother_years = mother_years + older
        last_age = _mother_age_between(_FIRST_BIRTH_MIN + span, np.minimum(mother_years - 0.05, _LAST_BIRTH_MAX),
                                      hu(8) ** _LAST_BIRTH_SKEW)
        first_age = last_age - span
        rank = np.clip(child_rank, 0, 5)
        before = np.take_along_axis(cumulative_steps, rank[:, None], axis=1)[:, 0]
        child_years = mother_years - first_age - before
        # In some couples' households the eldest child, 25 or older, is married and the spouse (a son's wife most
        # often) lives with them, in the next child's slot: newlyweds live with the husband's parents.
        eldest_years = mother_years - first_age
        stem = couple & (children >= 2) & (eldest_years >= 25.0) & (hu(72) < _STEM)
        role[stem & (slot == 3)] = IN_LAW
        eldest = stem & (slot == 2)
        eldest_sex = np.where(unit_np(kp, first + 2, 1) < _BOY, MALE, FEMALE)
        in_law_gap = np.clip(3.0 + 3.0 * _normal(hu(73), hu(74)), -4.0, 10.0)
        in_law_years = np.maximum(np.where(eldest_sex == MALE, eldest_years - in_law_gap,
                                           eldest_years + in_law_gap), 19.0 + 2.0 * hu(75))
        # The head's parents: born when their child (the head) was born to them at 18-40; the second one a spouse.
        first_parent = (role == PARENT) & (slot == size - parents)
        parent_sex = np.where(hu(39) < 0.65, FEMALE, MALE)  # a widowed mother most often; two: a couple
        sex = np.select([role == HEAD, (role == SPOUSE) | (role == LATE), first_parent, role == PARENT,
                         role == IN_LAW],
                        [head_sex, 1 - head_sex, parent_sex, 1 - parent_sex, 1 - eldest_sex],
                        np.where(pu(1) < _BOY, MALE, FEMALE))
        parent_gap = _MOTHER_AGE_LO[choose_np(_MOTHER_AGE_CUM, hu(37))] + 5 * hu(38)
        husband_extra = np.where((parents == 2) & (sex == MALE), np.abs(gap), 0.0)
        parent_years = np.minimum(head_years + parent_gap + husband_extra, 94.5)
        sibling_years = np.maximum(head_years + 16.0 * (hu(62) - 0.5), 16.0)
        # A single parent's late spouse is the children's other parent (the partner's age); a remarried head's
        # first spouse was a few years apart too.
        first_gap = np.clip(3.0 + 3.0 * _normal(hu(64), hu(65)), -4.0, 14.0)
        late_years = np.where(couple, np.maximum(np.where(head_sex == MALE, head_years - first_gap,
                                                          head_years + first_gap), 21.0 + 6.0 * hu(66)),
                              partner_years)  # of age at the first wedding: never piled on one birthday
        years = np.select([role == HEAD, role == SPOUSE, role == PARENT, role == SIBLING, role == LATE,
                           role == IN_LAW],
                          [head_years, partner_years, parent_years, sibling_years, late_years, in_law_years],
                          child_years)
        dob = np.clip(cal.DAY0_ORD - np.floor(years * _YEAR).astype(np.int64), _OLDEST_ORD, cal.DAY0_ORD - 1)

        # Where the household comes from and where it lives.
        geo = GEOGRAPHY
        home_row = _PROVINCE_ROW[HOME_PROVINCE]
        migrant = hu(40) < _MIGRANT_HOUSEHOLDS
        origin = np.where(migrant, choose_np(geo.origin_cum, hu(41)), home_row)
        head_dob = cal.DAY0_ORD - np.floor(head_years * _YEAR).astype(np.int64)
        years_here = np.minimum(1 + 24 * hu(42), np.maximum(head_years - 17, 0.5))
        migrated_on = np.where(migrant, cal.DAY0_ORD - np.floor(years_here * _YEAR).astype(np.int64), 0)
        spouse_from_elsewhere = hu(43) < np.where(migrant, 0.2, 0.15)
        other_province = choose_np(geo.origin_cum, hu(44))
        born_here = (role == CHILD) & np.where(migrant, dob >= migrated_on, True)
        spouse_row = np.where(spouse_from_elsewhere, other_province, origin)
        partner_role = (role == SPOUSE) | (role == LATE)
        # A child's spouse living with them comes from another province three times in ten.
        in_law_row = np.where(pu(17) < 0.3, choose_np(geo.origin_cum, pu(18)), origin)
        birth_row = np.select([born_here, partner_role, role == IN_LAW], [home_row, spouse_row, in_law_row], origin)
        birth_province = _PROVINCE_CODES[birth_row]
        n_prov = len(geo.provinces)
        head_hometown = np.where(hu(45) < 0.15, np.floor(hu(46) * n_prov), origin).astype(np.int64)
        spouse_hometown = np.where(hu(47) < 0.15, np.floor(hu(48) * n_prov), spouse_row).astype(np.int64)
        # Children take their father's hometown (quê quán), or their mother's when no father lives with them.
        child_hometown = np.where(couple & (head_sex == FEMALE), spouse_hometown, head_hometown)
        hometown_row = np.select([role == HEAD, partner_role, role == PARENT, role == IN_LAW],
                                 [head_hometown, spouse_hometown, origin, in_law_row], child_hometown)
        hometown = _PROVINCE_CODES[hometown_row]

        home = geo.home_communes
        home_commune = home[np.floor(hu(49) * len(home)).astype(np.int64)]
        origin_commune = _commune_in(_PROVINCE_CODES[origin], hu(50))
        registered_here = ~migrant | (hu(51) < 0.75)
        commune = np.where(registered_here, home_commune, origin_commune)
        stay_commune = home[np.floor(hu(52) * len(home)).astype(np.int64)]
        temporary = np.where(registered_here, -1, stay_commune)
        adult = (cal.DAY0_ORD - dob) >= 18 * _YEAR
        own_temp = registered_here & adult & (pu(4) < 0.04)
        other = home[np.floor(pu(5) * len(home)).astype(np.int64)]
        temporary = np.where(own_temp & (other != commune), other, temporary)
        lives_in = np.where(registered_here, home_commune, stay_commune)
        # Where each birth was registered: in Bình Dương where the household lived (a migrant household's child born
        # since the move), in the origin commune for those born before it, in their own province for a spouse.
        spouse_commune = _commune_in(_PROVINCE_CODES[spouse_row], hu(53))
        in_law_commune = _commune_in(_PROVINCE_CODES[in_law_row], pu(19))
        birth_commune = np.select([born_here, partner_role, role == IN_LAW], [lives_in, spouse_commune, in_law_commune],
                                  origin_commune)
        birth_commune = np.where((role != CHILD) & (birth_province == HOME_PROVINCE), home_commune, birth_commune)

        # Ethnicity follows the birth province of the household's line, for its children too; a spouse from
        # elsewhere has theirs.
        line_ethnicity = _choose_rows(geo.ethnicity_cum[origin], hu(54))
        spouse_ethnicity = np.where(spouse_from_elsewhere, _choose_rows(geo.ethnicity_cum[spouse_row], hu(55)),
                                    line_ethnicity)
        ethnicity = np.select([partner_role, role == IN_LAW],
                              [spouse_ethnicity, _choose_rows(geo.ethnicity_cum[in_law_row], pu(20))],
                              line_ethnicity)  # children: the household's line

        # Dates: marriage (before the first child, at a published age when childless), household, joining, death.
        partner_dob = cal.DAY0_ORD - np.floor(partner_years * _YEAR).astype(np.int64)
        husband_dob = np.where(head_sex == MALE, head_dob, partner_dob)
        wife_dob = np.where(head_sex == MALE, partner_dob, head_dob)
        legal = np.maximum(cal.add_years_np(husband_dob, 20), cal.add_years_np(wife_dob, 18))
        mother_dob = np.where(head_sex == FEMALE, head_dob, partner_dob)
        first_child = mother_dob + np.floor(first_age * _YEAR).astype(np.int64)
        courted = np.floor((0.3 + 2.2 * hu(56)) * _YEAR).astype(np.int64)
        wed_age = demography.MEAN_AGE_FIRST_MARRIAGE_FEMALE + 3.0 * _normal(hu(57), hu(58))
        childless_wedding = wife_dob + np.floor(np.maximum(wed_age, 18.0) * _YEAR).astype(np.int64)
        married_on = np.where(children > 0, first_child - courted, childless_wedding)
        latest = cal.DAY0_ORD - 1
        married_on = np.where(married_on > latest, legal + np.floor((latest - legal) * hu(59)).astype(np.int64),
                              married_on)
        married_on = np.clip(married_on, legal, latest)
        # A remarried head's first marriage: at marriageable age, two to ten years before the current one (which
        # follows the first spouse's death); the head's parents married before the head was born.
        late_dob = cal.DAY0_ORD - np.floor(late_years * _YEAR).astype(np.int64)
        first_legal = np.maximum(cal.add_years_np(np.where(head_sex == MALE, head_dob, late_dob), 20),
                                 cal.add_years_np(np.where(head_sex == MALE, late_dob, head_dob), 18))
        first_wedding = np.maximum(first_legal, married_on - np.floor((2 + 8 * hu(66)) * _YEAR).astype(np.int64))
        apart = np.floor((1 + hu(69)) * _YEAR).astype(np.int64)  # one to two years between the weddings
        wedding = np.where(couple & late, np.maximum(married_on, first_wedding + apart), married_on)
        # A second wedding that would fall after day 0 was earlier, the first too (never clamped onto one date).
        recent = np.maximum(latest - np.floor(300 * hu(69)).astype(np.int64), legal)
        first_wedding = np.where(wedding > latest, np.maximum(first_legal, np.minimum(first_wedding, recent - apart)),
                                 first_wedding)
        wedding = np.where(wedding > latest, recent, wedding)  # the household's current (or, widowed, last) wedding
        first_wedding = np.minimum(first_wedding, latest - 1)
        # The head's parents (a couple: the father older by the spouses' gap) married before the head was born, both
        # of age (men 20, women 18).
        mother_of_head = cal.DAY0_ORD - np.floor(np.minimum(head_years + parent_gap, 94.5) * _YEAR).astype(np.int64)
        father_of_head = cal.DAY0_ORD - np.floor(np.minimum(head_years + parent_gap + np.abs(gap), 94.5)
                                                 * _YEAR).astype(np.int64)
        elders_legal = np.maximum(cal.add_years_np(father_of_head, 20), cal.add_years_np(mother_of_head, 18))
        elders_wedding = np.maximum(head_dob - np.floor((0.8 + 3 * hu(67)) * _YEAR).astype(np.int64), elders_legal)
        spouses = (couple & ((role == HEAD) | (role == SPOUSE))) | (~couple & late & ((role == HEAD) | (role == LATE)))
        # The married eldest child and spouse wed at marriageable age, within six years and before day 0.
        eldest_dob = cal.DAY0_ORD - np.floor(eldest_years * _YEAR).astype(np.int64)
        in_law_dob = cal.DAY0_ORD - np.floor(in_law_years * _YEAR).astype(np.int64)
        young_legal = np.maximum(cal.add_years_np(np.where(eldest_sex == MALE, eldest_dob, in_law_dob), 20),
                                 cal.add_years_np(np.where(eldest_sex == MALE, in_law_dob, eldest_dob), 18))
        young_legal = np.minimum(young_legal, latest)
        # the husband at about the published mean age at first marriage (demography), else some time before day 0
        husband_of = np.where(eldest_sex == MALE, eldest_dob, in_law_dob)
        at_mean = husband_of + np.floor((demography.MEAN_AGE_FIRST_MARRIAGE_MALE - 2.5 + 5.0 * hu(76))
                                        * _YEAR).astype(np.int64)
        young_wedding = np.where(at_mean <= latest, np.maximum(at_mean, young_legal),
                                 young_legal + np.floor((latest - young_legal) * hu(77)).astype(np.int64))
        young = eldest | (role == IN_LAW)
        married_on = np.select([spouses, (role == LATE) & couple, (role == PARENT) & (parents == 2), young],
                               [wedding, first_wedding, elders_wedding, young_wedding], 0)
        # A spouse from elsewhere who married into a household lives here from the wedding, or from the first
        # child's birth here when the couple registered the marriage only later.
        first_born = np.minimum(first_child, cal.DAY0_ORD - 1)
        joined_spouse = np.where(children > 0, np.minimum(married_on, first_born), married_on)
        married_here = ~migrant | (married_on >= migrated_on)
        married_here &= role != PARENT  # the head's parents married in their province
        married_commune = np.where(married_here, commune, origin_commune)
        earliest = np.maximum(cal.add_years_np(head_dob, 18), cal.HISTORY_FROM_ORD - 25 * 365)
        established = np.where(
            migrant & registered_here, migrated_on,
            earliest + np.floor((cal.DAY0_ORD - 30 - earliest) * hu(60)).astype(np.int64))
        established = np.clip(established, earliest, cal.DAY0_ORD - 30)
        joined_on = np.select([role == HEAD, (role == SPOUSE) | (role == IN_LAW), role == CHILD, role == LATE],
                              [established, np.maximum(established, married_on), np.maximum(established, dob),
                               married_on], established)
        joined_on = np.minimum(joined_on, cal.DAY0_ORD - 1)
        # Deaths of the last five years, at the life table's rates (demography.MORTALITY_*), among the head's
        # parents: the registries keep the dead, deceased.
        age_group = np.clip(np.floor(years / 5).astype(np.int64), 0, len(_MORTALITY[0]) - 1)
        q = np.where(sex == MALE, _MORTALITY[0][age_group], _MORTALITY[1][age_group])
        mortal = (role == PARENT) & (slot >= 2)  # the first two members live: `anomalies.odd_heads` relies on it
        death_from = np.maximum(joined_on, cal.DAY0_ORD - _DEATH_YEARS * 365) + 1
        deceased = mortal & (pu(8) < _DEATH_SCALE * _DEATH_YEARS * q) & (death_from < cal.DAY0_ORD)
        dod = np.where(deceased, death_from + np.floor((cal.DAY0_ORD - death_from) * pu(9)).astype(np.int64), 0)
        # A late spouse died after the wedding: a single parent's after the youngest child's birth (before day 0),
        # a remarried head's first before the second wedding.
        youngest = cal.DAY0_ORD - np.floor(np.maximum(mother_years - last_age, 0.0) * _YEAR).astype(np.int64)
        late_from = np.where(couple, married_on, np.maximum(married_on, np.where(children > 0, youngest, 0))) + 1
        late_to = np.where(couple, wedding - 1, np.maximum(late_from, cal.DAY0_ORD - 366))  # years ago, mostly
        late_to = np.maximum(late_to, late_from)
        late_dod = late_from + np.floor((late_to - late_from + 1) * pu(9) ** 2).astype(np.int64)  # mostly long ago
        deceased = deceased | (role == LATE)
        dod = np.where(role == LATE, np.minimum(late_dod, cal.DAY0_ORD - 1), dod)
        # Of the head's two parents, the father died years ago in some households: the mother is widowed (women
        # outlive their husbands: widows far outnumber widowers).
        long_widowed = (role == PARENT) & (parents == 2) & (sex == MALE) & (hu(68) < _ELDER_WIDOWED)
        # (more than a year before day 0 when they could: their deaths are not this year's, which the life table
        # gives on its own)
        long_ago = np.maximum(joined_on + 1, cal.DAY0_ORD - 366)
        elder_dod = joined_on + 1 + np.floor((long_ago - joined_on - 1) * pu(9) ** 2).astype(np.int64)
        # Few live long past 70: a parent listed at that age has often died years ago (the life table's old ages).
        gone = (role == PARENT) & (slot >= 2) & (pu(16) < np.clip((years - 70.0) / 20.0, 0.0, 0.9))
        long_widowed |= gone
        dod = np.where(long_widowed, np.where(deceased, np.minimum(dod, elder_dod), elder_dod), dod)
        deceased = deceased | long_widowed

        # Names: children carry their father's surname (or their mother's when no father lives with them).
        head_surname = names.surname(hu(70))
        partner_surname = names.surname(hu(71))
        father_surname = np.where((kind == COUPLE) & (head_sex == FEMALE), partner_surname, head_surname)
        own_surname = names.surname(pu(10))
        surname = np.select(
            [role == HEAD, role == SPOUSE, role == CHILD, role == SIBLING, role == IN_LAW, sex == MALE],
            [head_surname, partner_surname, father_surname, head_surname, own_surname, head_surname], own_surname)
        birth_year = cal.years_np(dob)
        given = names.given(pu(14), sex, birth_year)
        middle, middle2 = names.middle(pu(11), pu(12), sex, birth_year, given)

        # Who is who in the household.
        head_index = first
        spouse_index = np.where(kind == COUPLE, first + 1, -1)
        # A widowed single parent's children had the late spouse as their other parent.
        other_parent = np.where(couple, first + 1, np.where(late, first + late_slot, -1))
        mother_index = np.where(role == CHILD, np.where(head_sex == FEMALE, first, other_parent), -1)
        father_index = np.where(role == CHILD, np.where(head_sex == MALE, first, other_parent), -1)

        last_change = np.maximum.reduce([dob + 1, joined_on + 1, dod + 1,
                                         np.full(n, cal.HISTORY_FROM_ORD)])
        changed = cal.ords_to_seconds(last_change)
        window = np.maximum(cal.DAY0_END + 1 - changed, 0)
        # an event of day 0 itself (last_change the day after) is recorded in its last second, not on 1 July
        updated_at = np.minimum(changed + np.floor(window * pu(15)).astype(np.int64), cal.DAY0_END)
        return Citizens(
            index=index, household=household, slot=slot, size=size, kind=kind, role=role, sex=sex, dob=dob,
            birth_province=birth_province, hometown=hometown, ethnicity=ethnicity, commune=commune,
            temporary=temporary, origin_commune=origin_commune, birth_commune=birth_commune,
            married_commune=married_commune, late_slot=late_slot, parents=parents,
            married_now=(couple & ((role == HEAD) | (role == SPOUSE))) | young,
            marriage_row=np.select([couple & ((role == HEAD) | (role == SPOUSE)), young], [first, first + 2], -1),
            spouse_arrived=np.select([(role == SPOUSE) & ~migrant, role == IN_LAW],
                                     [joined_spouse, np.maximum(married_on, migrated_on)], 0),
            deceased=deceased, dod=dod, joined_on=joined_on, married_on=married_on,
            surname=surname, middle=middle, middle2=middle2, given=given, migrated_on=migrated_on,
            registered_here=registered_here, head_index=head_index, spouse_index=spouse_index,
            mother_index=mother_index, father_index=father_index, updated_at=updated_at,
        )


def _normal(u1: F64, u2: F64) -> F64:
    """Standard normal draws from two uniform ones (Box-Muller), for counter-based streams."""
    return np.sqrt(-2.0 * np.log(np.maximum(u1, 1e-300))) * np.cos(2.0 * np.pi * u2)


def _mother_age_between(lo: F64, hi: F64, u: F64) -> F64:
    """A mother's age at a birth, distributed as the fertility schedule (piecewise uniform per ASFR group) cut to
    [lo, hi] (hi below lo gives lo)."""
    a, b = np.interp(lo, _ASFR_AGES, _ASFR_CUM), np.interp(np.maximum(hi, lo), _ASFR_AGES, _ASFR_CUM)
    return np.clip(np.interp(a + (b - a) * u, _ASFR_CUM, _ASFR_AGES), lo, np.maximum(hi, lo))


def _choose_rows(cum: F64, u: F64) -> I64:
    """`choose_np` with one row of cumulative shares per draw."""
    return np.minimum(np.sum(cum <= u[:, None], axis=1), cum.shape[1] - 1).astype(np.int64)


def _commune_in(provinces: I64, u: F64) -> I64:
    """A commune of each province (2-digit code), uniform among those the reference lists, by draw `u`."""
    out = np.full(len(provinces), -1, dtype=np.int64)
    for code in np.unique(provinces).tolist():
        members = GEOGRAPHY.communes_by_province.get(int(code))
        if members is None:
            raise ConfigError(f"communes.csv has no commune of province {code:02d}, which the people model uses")
        here = provinces == code
        out[here] = members[np.floor(u[here] * len(members)).astype(np.int64)]
    return out


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
