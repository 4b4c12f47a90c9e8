"""Published demographic figures for the simulated province, as plain constants the people model draws from.

The world is Bình Dương's residents as of 2025-06-30 (the day before the province joined Ho Chi Minh City). Where
GSO publishes Bình Dương's own figure it is used; otherwise the Southeast region's or the national one, and each
constant says which. Sources, abbreviated below:

- [C2019] GSO, "Completed results of the 2019 Viet Nam Population and Housing Census" (Statistical Publishing
  House, 2020), and its in-depth monographs (fertility, migration and urbanisation, 2020-2021).
- [PCS2020] GSO, "Population Change and Family Planning Survey at 1 April 2020: major findings" (2021).
- [PCS2024] GSO, "Mid-term Population Change and Family Planning Survey at 1 April 2024: major findings" (2025),
  as reported by vietnambiz.vn (2025): TFR 1.91 (urban 1.67), Southeast region 1.48, Ho Chi Minh City 1.39,
  CBR 13.5 per 1,000; life expectancy 74.7 (men 72.3, women 77.2).
- [MIG2019] GSO press figure on 2019 census migration (cafef.vn, 2022-06-25): Bình Dương's in-migration rate 217
  per 1,000, the highest in the country; the Southeast region 80.3 per 1,000; the Mekong delta sends most.
- [BD2015] Bình Dương's Population and Family Planning branch and the province's Statistical Yearbook 2016, as
  quoted by datnenbinhduong.vn ("Dân số Bình Dương 2016"): 1,995,817 residents (2016); men 48.27 %, 93.56 men per
  100 women; working ages 75.6 %, 60+ 5 %; crude birth rate 13 per 1,000 (2011), 11.8 (2014), 11.5 (2015); natural
  increase 0.78 % (2015); third or later births 3.3 %; life expectancy 75.4.

Figures marked ESTIMATE were not found in a source we could read; they are documented guesses shaped to the
published aggregates they must agree with (noted beside each), and should be replaced when the tables are found.
The consistency of the set is checked by `tests/unit/simulator/test_statistics.py`: the life table gives
`CRUDE_DEATH_RATE` on the pyramid, the ASFRs give `CRUDE_BIRTH_RATE`, and the pyramid sums to 100.
"""

from __future__ import annotations

# --- age and sex ---------------------------------------------------------------------------------------------------

AGE_GROUPS: tuple[tuple[int, int], ...] = (
    (0, 4), (5, 9), (10, 14), (15, 19), (20, 24), (25, 29), (30, 34), (35, 39), (40, 44), (45, 49), (50, 54),
    (55, 59), (60, 64), (65, 69), (70, 74), (75, 79), (80, 84), (85, 99),
)
"""Five-year groups as GSO tabulates them, the last open one closed at 99 (nobody in the world is older)."""

_GROUP_PERCENT = (6.0, 6.6, 6.4, 5.6, 8.9, 10.8, 11.6, 10.9, 9.0, 7.2, 5.4, 4.0, 3.0, 2.1, 1.2, 0.6, 0.4, 0.3)
"""ESTIMATE of Bình Dương's 2025 pyramid (both sexes, % of all residents), shaped to the province's own figures
([BD2015]: 60+ 5 % in 2014, aged here by a decade to 7.6 %; 0-14 about 19 %, what a birth rate near 12 per 1,000
leaves) and to its migration ([MIG2019]: a working-age bulge at 20-44; national 2019: 0-14 24.3 %, 65+ 7.7 %)."""
_MALE_SHARE = (0.526, 0.525, 0.523, 0.49, 0.455, 0.455, 0.475, 0.49, 0.495, 0.49, 0.485, 0.475, 0.465, 0.45, 0.43,
               0.40, 0.37, 0.32)
"""ESTIMATE of the male share per group, giving [BD2015]'s 93.6 men per 100 women overall: children follow the sex
ratio at birth (1.11); at 20-34 women outnumber men (the province's factories recruit more young women than men);
above 60 women's longer lives ([PCS2024])."""

PYRAMID_MALE: tuple[float, ...] = tuple(round(t * m, 3) for t, m in zip(_GROUP_PERCENT, _MALE_SHARE, strict=True))
"""Percent of the whole population per group, men (with PYRAMID_FEMALE sums to 100)."""
PYRAMID_FEMALE: tuple[float, ...] = tuple(round(t * (1 - m), 3)
                                          for t, m in zip(_GROUP_PERCENT, _MALE_SHARE, strict=True))
PYRAMID_SOURCE = ("ESTIMATE for Bình Dương 2025 from the province's figures (93.6 men per 100 women, 60+ 5 % in "
                  "2014, birth rate 11.5 per 1,000 in 2015) and its migrant working-age bulge (GSO 2019 census)")

SEX_RATIO_AT_BIRTH = 1.11
"""Boys per girl. [C2019]: 111.5 boys per 100 girls nationally; [PCS2024] about 111. The Southeast region is
lower (about 1.09, [C2019] monograph on sex imbalance at birth); we keep the national figure the issue names."""

CRUDE_BIRTH_RATE = 12.0
"""Live births per 1,000 residents per year. [BD2015]: 11.8 (2014), 11.5 (2015), the province's own figure; the
national rate has since fallen from 16.2 to 13.5 ([PCS2024]) while Bình Dương's young adults grew in number, so we
keep it near 12 (ESTIMATE). `ASFR` on the pyramid gives 12.0."""
CRUDE_DEATH_RATE = 4.3
"""Deaths per 1,000 residents per year: the life table below on the pyramid (computed, 4.31). [BD2015]: birth rate
11.5 less natural increase 7.8 gives 3.7 in 2015; national 6 ([PCS2024]); the province is young."""

TOTAL_FERTILITY_RATE = 1.11
"""Children per woman at the rates below: what reproduces the province's own birth rate on its pyramid. GSO's
total fertility rates are higher (Southeast 1.48, Ho Chi Minh City 1.39, [PCS2024]): many of Bình Dương's migrant
women give birth in, and leave their children with family in, their home province, and the registries we simulate
see the births that happen here. ESTIMATE, consistent with [BD2015]'s birth rate and 0-14 share."""

# --- fertility -----------------------------------------------------------------------------------------------------

ASFR_GROUPS: tuple[tuple[int, int], ...] = ((15, 19), (20, 24), (25, 29), (30, 34), (35, 39), (40, 44), (45, 49))
ASFR: tuple[float, ...] = (13.3, 59.0, 72.3, 49.4, 22.1, 4.4, 0.7)
"""Births per 1,000 women per year by mother's age. Shape: [C2019] fertility monograph (urban schedule, the peak at
25-29, 20-29 bearing about half the births; ESTIMATE of the exact values), scaled so that 5 * sum =
TOTAL_FERTILITY_RATE. The mother's age at a birth is distributed as ASFR times the women of each group
(`mother_age_shares`)."""

TWIN_SHARE = 0.008
"""Share of deliveries that are multiple. ESTIMATE: Smits & Monden, "Twinning across the developing world", PLoS
ONE 6(9) e25239 (2011), from DHS data: South and Southeast Asia below 8-9 twin deliveries per 1,000."""
MIN_BIRTH_INTERVAL_DAYS = 270
"""Siblings (not twins) are at least nine months apart: a pregnancy lasts about 38 weeks, preterm births rarely
follow another birth within that."""
BIRTH_INTERVAL_MEDIAN_MONTHS = 48
"""Median months between consecutive births. ESTIMATE: Viet Nam DHS 2002 (median about 45-50 months) and MICS 2014;
two-child families with a long gap dominate."""
BIRTH_INTERVAL_SHARES: dict[tuple[int, int], float] = {
    (9, 17): 0.05, (18, 23): 0.09, (24, 35): 0.21, (36, 47): 0.15, (48, 59): 0.12, (60, 239): 0.38,
}
"""Share of birth intervals (months, inclusive bounds) by length. ESTIMATE shaped to the DHS 2002 distribution and
the median above (the share under 48 months is 0.50)."""

# --- mortality -----------------------------------------------------------------------------------------------------

MORTALITY_GROUPS: tuple[tuple[int, int], ...] = AGE_GROUPS
MORTALITY_MALE: tuple[float, ...] = (
    0.0035, 0.0003, 0.0004, 0.0009, 0.0014, 0.0016, 0.0019, 0.0025, 0.0035, 0.0050, 0.0076, 0.0112, 0.0165, 0.025,
    0.040, 0.064, 0.100, 0.20,
)
"""Annual probability of dying by age group, men. ESTIMATE of a Viet Nam life table: infant mortality 14 per 1,000
and under-five 21 ([C2019]), adult rates shaped like WHO's Global Health Observatory life table for Viet Nam 2019,
scaled to life expectancy at birth 72.0 ([PCS2024]: 72.3)."""
MORTALITY_FEMALE: tuple[float, ...] = (
    0.0028, 0.0002, 0.0002, 0.0003, 0.0004, 0.0005, 0.0007, 0.0010, 0.0015, 0.0023, 0.0036, 0.0057, 0.0092, 0.0155,
    0.027, 0.047, 0.080, 0.18,
)
"""Women, as MORTALITY_MALE: life expectancy at birth 77.8 ([PCS2024]: 77.2)."""

# --- marriage and divorce ------------------------------------------------------------------------------------------

MIN_MARRIAGE_AGE_MALE, MIN_MARRIAGE_AGE_FEMALE = 20, 18
"""Law on Marriage and Family 52/2014/QH13, article 8: men from 20, women from 18."""
MEAN_AGE_FIRST_MARRIAGE_MALE = 29.4
MEAN_AGE_FIRST_MARRIAGE_FEMALE = 25.2
"""Singulate mean age at first marriage, [PCS2024] (baohaiduong.vn, 2025-01: men 29.4, women 25.2, 2.1 years later
than in 2019; urban women 26.8). National: the Southeast marries later still (Ho Chi Minh City 30.4 in 2023, GSO
as reported in 2024), so Bình Dương's may be a year above these."""
MARITAL_STATUS: dict[str, float] = {
    "never_married": 0.305, "married": 0.618, "widowed": 0.045, "divorced": 0.029, "separated": 0.003,
}
"""Shares of residents aged 15+. [PCS2020], Southeast region: never married 30.5 %, divorced about 3 % (national:
never married 23.1 %, married 67.7 %, divorced women 2.6 %, men 1.8 %, separated 0.3-0.4 %, widowed women 11 %,
men 2 %). The Southeast's widowed share is an ESTIMATE (younger population than the nation's 6.5 %)."""
DIVORCES_PER_YEAR = 60_000
"""Divorces settled by Viet Nam's courts in a year (Supreme People's Court reports, as widely cited 2017-2022)."""
MARRIAGES_PER_YEAR = 688_000
"""Marriages registered in Viet Nam in 2023 (GSO; 83 % of them first marriages)."""
DIVORCES_PER_1000_COUPLES = 3.0
"""Divorces per 1,000 married couples per year. ESTIMATE: about 60,000 divorces a year settled by the courts
(Supreme People's Court reports, as widely cited 2017-2022) over about 22 million married couples ([C2019]) gives
2.7; the Southeast, with the most divorced people, is higher."""
CRUDE_MARRIAGE_RATE = 6.9
"""Marriages per 1,000 residents per year: 688,000 marriages in 2023 (GSO, as reported in 2024) over 100.3 million."""
REMARRIAGE_SHARE = 0.17
"""Share of marriages that are not a first marriage: of the 688,000 marriages of 2023, 83 % were first marriages
(GSO, as reported in 2024). Whether "first" counts one partner or both is not stated; we read it as a marriage where
a partner had married before."""

# --- households ----------------------------------------------------------------------------------------------------

HOUSEHOLD_SIZE_SHARES: tuple[float, ...] = (0.19, 0.24, 0.22, 0.195, 0.09, 0.04, 0.025)
"""Share of households with 1, 2, ..., 6 and 7+ members. ESTIMATE for Bình Dương: mean about 3.0 (the lowest
household size of any province, [C2019]; national 3.5, with 1-person households 10.9 % nationally), many
one- and two-person migrant households."""
THREE_GENERATION_SHARE = 0.15
"""Share of households with three or more generations. ESTIMATE: about a fifth nationally ([C2019] household
structure; the 2009 monograph "Age-sex structure and marital status" found 23 %), fewer among migrants."""

# --- migration -----------------------------------------------------------------------------------------------------

MIGRANT_SHARE = 0.45
"""Share of residents born in another province. ESTIMATE: [MIG2019] counts 217 in-migrants per 1,000 residents in
the five years before 2019 alone, so lifetime migrants are near half."""
MIGRANT_ORIGINS: dict[str, float] = {
    # North Central coast
    "38": 0.075, "40": 0.070, "42": 0.030, "44": 0.015, "45": 0.015, "46": 0.015,
    # South Central coast and the Highlands
    "49": 0.015, "51": 0.025, "52": 0.025, "54": 0.010, "60": 0.010, "64": 0.010, "66": 0.015, "68": 0.005,
    # Southeast
    "70": 0.020, "72": 0.020, "75": 0.015, "79": 0.040,
    # Mekong delta
    "80": 0.020, "82": 0.035, "83": 0.035, "84": 0.045, "86": 0.030, "87": 0.055, "89": 0.060, "91": 0.040,
    "92": 0.015, "93": 0.020, "94": 0.050, "95": 0.020, "96": 0.030,
    # Red River delta and the north
    "01": 0.005, "30": 0.005, "34": 0.010, "36": 0.010, "37": 0.005, "25": 0.003, "24": 0.003,
}
"""Old province code (2 digits, before 2025-07-01) -> share of Bình Dương's migrants born there. ESTIMATE shaped to
[C2019] migration monograph and [MIG2019]: the Mekong delta sends about half (An Giang, Đồng Tháp, Sóc Trăng,
Trà Vinh, Kiên Giang first), the North Central coast about a fifth (Thanh Hoá and Nghệ An first). Sums to
0.926; the remaining 0.074 spreads over the other provinces (`MIGRANT_ORIGIN_OTHER`)."""
MIGRANT_ORIGIN_OTHER = round(1.0 - sum(MIGRANT_ORIGINS.values()), 6)

# --- ethnicity -----------------------------------------------------------------------------------------------------

ETHNICITY_BY_PROVINCE: dict[str, dict[str, float]] = {
    "74": {"Kinh": 0.966, "Khmer": 0.010, "Hoa": 0.008, "Tày": 0.004, "Nùng": 0.004, "Mường": 0.003,
           "Thái": 0.002, "Chơ Ro": 0.001, "Xtiêng": 0.001, "Chăm": 0.001},
    "38": {"Kinh": 0.844, "Mường": 0.094, "Thái": 0.058, "H'Mông": 0.002, "Dao": 0.001, "Thổ": 0.001},
    "40": {"Kinh": 0.856, "Thái": 0.107, "Khơ Mú": 0.014, "H'Mông": 0.011, "Thổ": 0.009, "Ơ Đu": 0.001,
           "Mường": 0.002},
    "42": {"Kinh": 0.998, "Mường": 0.001, "Lào": 0.001},
    "44": {"Kinh": 0.979, "Bru Vân Kiều": 0.016, "Chứt": 0.005},
    "45": {"Kinh": 0.890, "Bru Vân Kiều": 0.085, "Tà Ôi": 0.025},
    "46": {"Kinh": 0.955, "Tà Ôi": 0.025, "Cơ Tu": 0.015, "Bru Vân Kiều": 0.005},
    "49": {"Kinh": 0.910, "Cơ Tu": 0.044, "Xơ Đăng": 0.030, "Giẻ Triêng": 0.016},
    "51": {"Kinh": 0.875, "Hrê": 0.105, "Co": 0.020},
    "52": {"Kinh": 0.975, "Ba Na": 0.020, "Chăm": 0.003, "Hrê": 0.002},
    "54": {"Kinh": 0.940, "Ê Đê": 0.035, "Chăm": 0.020, "Ba Na": 0.005},
    "60": {"Kinh": 0.920, "Chăm": 0.035, "Ra Glai": 0.017, "Hoa": 0.017, "Cơ Ho": 0.011},
    "64": {"Kinh": 0.520, "Gia Rai": 0.340, "Ba Na": 0.120, "Tày": 0.010, "Nùng": 0.010},
    "66": {"Kinh": 0.650, "Ê Đê": 0.180, "Nùng": 0.045, "Tày": 0.035, "Mnông": 0.025, "H'Mông": 0.025,
           "Dao": 0.020, "Thái": 0.010, "Mường": 0.010},
    "68": {"Kinh": 0.760, "Cơ Ho": 0.120, "Mạ": 0.026, "Nùng": 0.020, "Tày": 0.015, "Chu Ru": 0.015,
           "Hoa": 0.010, "Thái": 0.010, "Mnông": 0.010, "Dao": 0.010, "H'Mông": 0.004},
    "70": {"Kinh": 0.810, "Xtiêng": 0.095, "Nùng": 0.027, "Tày": 0.020, "Khmer": 0.017, "Mnông": 0.010,
           "Hoa": 0.010, "Dao": 0.005, "Thái": 0.003, "Mường": 0.003},
    "72": {"Kinh": 0.987, "Khmer": 0.007, "Chăm": 0.003, "Hoa": 0.003},
    "75": {"Kinh": 0.925, "Hoa": 0.028, "Nùng": 0.019, "Tày": 0.012, "Chơ Ro": 0.006, "Khmer": 0.003,
           "Mường": 0.003, "Thái": 0.002, "Dao": 0.002},
    "79": {"Kinh": 0.933, "Hoa": 0.045, "Khmer": 0.007, "Chăm": 0.002, "Tày": 0.002, "Nùng": 0.002,
           "Mường": 0.001, "Thái": 0.001, "Dao": 0.001, "Ê Đê": 0.001, "Chơ Ro": 0.001, "Xtiêng": 0.004},
    "80": {"Kinh": 0.997, "Khmer": 0.001, "Hoa": 0.002},
    "82": {"Kinh": 0.998, "Hoa": 0.002},
    "83": {"Kinh": 0.998, "Hoa": 0.002},
    "84": {"Kinh": 0.677, "Khmer": 0.315, "Hoa": 0.008},
    "86": {"Kinh": 0.976, "Khmer": 0.021, "Hoa": 0.003},
    "87": {"Kinh": 0.998, "Hoa": 0.001, "Khmer": 0.001},
    "89": {"Kinh": 0.941, "Khmer": 0.049, "Chăm": 0.006, "Hoa": 0.004},
    "91": {"Kinh": 0.852, "Khmer": 0.125, "Hoa": 0.023},
    "92": {"Kinh": 0.975, "Khmer": 0.015, "Hoa": 0.010},
    "93": {"Kinh": 0.974, "Khmer": 0.022, "Hoa": 0.004},
    "94": {"Kinh": 0.646, "Khmer": 0.302, "Hoa": 0.052},
    "95": {"Kinh": 0.899, "Khmer": 0.079, "Hoa": 0.022},
    "96": {"Kinh": 0.971, "Khmer": 0.023, "Hoa": 0.006},
}
"""Birth province (old code) -> shares of ethnic groups among those born there (names as in ethnicities.csv).
[C2019] complete results, ethnic composition by province (rounded, from memory of the published table and the
provinces' own 2019 census reports; the large groups are right to about a point, the small ones are ESTIMATES):
Khmer 30 % of Sóc Trăng and 31 % of Trà Vinh, 12-13 % of Kiên Giang; Mường 9 % and Thái 6 % of Thanh Hoá; Thái
11 % of Nghệ An; Hoa 4.5 % of Ho Chi Minh City and 5 % of Sóc Trăng."""
ETHNICITY_DEFAULT: dict[str, float] = {"Kinh": 0.985, "Hoa": 0.004, "Tày": 0.003, "Mường": 0.003, "Thái": 0.002,
                                       "Nùng": 0.002, "Khmer": 0.001}
"""Any other birth province: the Kinh-majority lowland default (ESTIMATE; the northern mountain provinces, which
are mostly not Kinh, send almost nobody to Bình Dương)."""

# --- names and enterprises ---------------------------------------------------------------------------------------

SURNAME_SHARES: dict[str, float] = {
    "Nguyễn": 0.384, "Trần": 0.110, "Lê": 0.095, "Phạm": 0.071, "Hoàng/Huỳnh": 0.051, "Phan": 0.045,
    "Vũ/Võ": 0.039, "Đặng": 0.021, "Bùi": 0.020, "Đỗ": 0.014, "Hồ": 0.013, "Ngô": 0.013, "Dương": 0.010, "Lý": 0.005,
}
"""Share of Vietnamese people per surname, national; the southern forms Huỳnh and Võ counted with Hoàng and Vũ (one
name, two pronunciations). The commonly cited figures (Wikipedia "Vietnamese name", after Lê Trung Hoa, "Họ và tên
người Việt Nam", 2005): 14 surnames cover 89 %, every other surname together 10.9 % (`SURNAME_OTHER`)."""
SURNAME_OTHER = round(1.0 - sum(SURNAME_SHARES.values()), 6)

LEGAL_FORM_SHARES: dict[str, float] = {
    "tnhh_1tv": 0.6260, "tnhh_2tv": 0.1446, "co_phan": 0.2004, "tu_nhan": 0.0265, "hop_danh": 0.0025,
}
"""Shares of enterprises in operation by legal form (codes of kho.sources.business.LEGAL_FORMS): Hưng Yên's
structure on 31/12/2022 (Niên giám thống kê tỉnh Hưng Yên 2022, table 90: private 2.65 %, partnerships 0.25 %,
limited companies 71.73 %, joint-stock 20.04 %, state-owned 0.15 %, foreign-invested 5.18 %), an industrial province
with many foreign firms like Bình Dương, whose own table was not found. State-owned and foreign-invested firms are
counted as limited companies (most are); limited companies split one-member : several members as new registrations
split them (69.7 : 16.1, `text.LEGAL_FORM_NEW_CUM`)."""


# --- helpers -------------------------------------------------------------------------------------------------------


def mother_age_shares() -> tuple[float, ...]:
    """Share of births by mother's age group (ASFR_GROUPS): ASFR times the women of each group on the pyramid."""
    first = AGE_GROUPS.index(ASFR_GROUPS[0])
    weights = [rate * PYRAMID_FEMALE[first + i] for i, rate in enumerate(ASFR)]
    total = sum(weights)
    return tuple(w / total for w in weights)


def implied_crude_birth_rate() -> float:
    """Births per 1,000 residents per year that ASFR gives on the pyramid (CRUDE_BIRTH_RATE states it rounded)."""
    first = AGE_GROUPS.index(ASFR_GROUPS[0])
    return sum(rate * PYRAMID_FEMALE[first + i] for i, rate in enumerate(ASFR)) / 100


def implied_crude_death_rate() -> float:
    """Deaths per 1,000 residents per year that the life table gives on the pyramid (CRUDE_DEATH_RATE, rounded)."""
    return sum(m * qm + f * qf for m, f, qm, qf in zip(PYRAMID_MALE, PYRAMID_FEMALE, MORTALITY_MALE,
                                                         MORTALITY_FEMALE, strict=True)) * 10


def life_expectancy(mortality: tuple[float, ...]) -> float:
    """Life expectancy at birth of an annual-probability life table by 5-year groups (the last group open)."""
    alive, years = 1.0, 0.0
    for q in mortality[:-1]:
        for _ in range(5):
            years += alive * (1 - q / 2)
            alive *= 1 - q
    return years + alive / mortality[-1]


def ethnicity_shares(province: str) -> dict[str, float]:
    """Ethnic group shares among people born in `province` (old 2-digit code), the default when not listed."""
    return ETHNICITY_BY_PROVINCE.get(province, ETHNICITY_DEFAULT)
