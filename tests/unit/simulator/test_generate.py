"""The generator: deterministic, plausible citizens whose injected defects the contract check finds exactly."""

from __future__ import annotations

import inspect
import json
import unicodedata
from collections import Counter
from datetime import date

import pyarrow as pa
import pytest

from kho.errors import ConfigError
from kho.simulator import DEFECT_KINDS, MAX_CITIZENS, DefectKind, citizen, generate_citizens, ground_truth
from kho.sources import check_table
from kho.sources.identity import cccd_prefix
from kho.sources.population import CITIZENS
from kho.sources.reference import commune_codes, province_codes

SEED = 20250701


@pytest.fixture(scope="module")
def twenty_thousand() -> list[dict[str, str | None]]:
    return list(generate_citizens(SEED, 20_000))


def _dump(seed: int, count: int, rate: float = 0.0) -> bytes:
    return json.dumps(list(generate_citizens(seed, count, defect_rate=rate)), ensure_ascii=False).encode()


def test_same_seed_and_count_give_identical_bytes() -> None:
    assert _dump(SEED, 500, 0.1) == _dump(SEED, 500, 0.1)


def test_different_seeds_give_different_citizens() -> None:
    first, second = list(generate_citizens(1, 200)), list(generate_citizens(2, 200))
    assert not {r["cccd"] for r in first} & {r["cccd"] for r in second}
    assert [r["full_name"] for r in first] != [r["full_name"] for r in second]


def test_a_record_depends_only_on_seed_and_index() -> None:
    """So the generator can stream: a longer world starts with the shorter one, and any record can be rebuilt."""
    short, long = list(generate_citizens(SEED, 100)), list(generate_citizens(SEED, 300))
    assert long[:100] == short
    assert citizen(SEED, 250) == long[250]
    assert inspect.isgenerator(generate_citizens(SEED, MAX_CITIZENS))


def test_records_carry_the_contract_fields_as_text(twenty_thousand: list[dict[str, str | None]]) -> None:
    for record in twenty_thousand[:1000]:
        assert tuple(record) == CITIZENS.field_names
        assert all(isinstance(v, str) for v in record.values())


def test_cccd_prefix_agrees_with_birth_province_sex_and_year(twenty_thousand: list[dict[str, str | None]]) -> None:
    for r in twenty_thousand:
        cccd, born = str(r["cccd"]), date.fromisoformat(str(r["date_of_birth"]))
        assert len(cccd) == 12 and cccd.isdigit()
        assert cccd[:6] == cccd_prefix(str(r["birth_province_code"]), born.year, str(r["sex"]))


def test_cccds_are_unique_across_twenty_thousand_citizens_defects_included() -> None:
    cccds = [r["cccd"] for r in generate_citizens(SEED, 20_000, defect_rate=0.1)]
    assert len(set(cccds)) == len(cccds)


def test_names_are_nfc_vietnamese_with_diacritics(twenty_thousand: list[dict[str, str | None]]) -> None:
    names = [str(r["full_name"]) for r in twenty_thousand]
    assert all(unicodedata.is_normalized("NFC", n) for n in names)
    assert all(3 <= len(n.split()) <= 5 for n in names)
    assert sum(not n.isascii() for n in names) / len(names) > 0.95
    surnames = Counter(n.split()[0] for n in names)
    assert surnames.most_common(1)[0][0] == "Nguyễn"
    assert {"Trần", "Lê", "Phạm", "Huỳnh", "Võ", "Đặng", "Ngô", "Lý"} <= set(surnames)


def test_given_names_follow_sex(twenty_thousand: list[dict[str, str | None]]) -> None:
    middles = Counter((r["sex"], str(r["full_name"]).split()[1]) for r in twenty_thousand)
    assert middles[("F", "Thị")] > 1000 and middles[("M", "Văn")] > 1000
    assert middles[("M", "Thị")] == 0 and middles[("F", "Văn")] == 0


def test_communes_and_provinces_are_in_reference(twenty_thousand: list[dict[str, str | None]]) -> None:
    assert {r["permanent_commune_code"] for r in twenty_thousand} <= commune_codes()
    provinces = Counter(r["birth_province_code"] for r in twenty_thousand)
    assert set(provinces) <= province_codes()
    assert 0.5 < provinces["74"] / len(twenty_thousand) < 0.7
    assert len(provinces) > 40


def test_dates_span_the_age_pyramid_and_updates_follow_birth(twenty_thousand: list[dict[str, str | None]]) -> None:
    births = [str(r["date_of_birth"]) for r in twenty_thousand]
    assert "1930-01-01" <= min(births) < "1945-01-01" and "2025-01-01" < max(births) <= "2025-06-30"
    by_decade = Counter(b[:3] for b in births)
    assert by_decade["199"] > by_decade["195"] > by_decade["193"]
    for r in twenty_thousand:
        updated = str(r["updated_at"])
        assert "2024-01-01T00:00:00Z" <= updated <= "2025-06-30T23:59:59Z" and len(updated) == 20
        assert updated[:10] > str(r["date_of_birth"])


def test_a_small_share_is_deceased(twenty_thousand: list[dict[str, str | None]]) -> None:
    status = Counter(r["status"] for r in twenty_thousand)
    assert set(status) == {"alive", "deceased"}
    assert 0.002 < status["deceased"] / len(twenty_thousand) < 0.05


def test_a_clean_world_passes_the_contract() -> None:
    checked = check_table(CITIZENS, pa.Table.from_pylist(list(generate_citizens(SEED, 5000))))
    assert checked.rejected.num_rows == 0
    assert checked.accepted.num_rows == 5000


def test_check_table_rejects_exactly_the_ground_truth_defects() -> None:
    """The key test: the loader's contract check and the simulator's ground truth agree record for record."""
    count, rate = 5000, 0.2
    records = list(generate_citizens(SEED, count, defect_rate=rate))
    truth = ground_truth(SEED, count, rate)
    checked = check_table(CITIZENS, pa.Table.from_pylist(records))

    rejected = dict(zip(checked.rejected.column("cccd").to_pylist(),
                        checked.rejected.column("_reason_code").to_pylist(), strict=True))
    assert rejected == {d.key: d.expected_reason_code for d in truth}
    assert checked.accepted.num_rows == count - len(truth)
    assert {d.kind for d in truth} == set(DEFECT_KINDS)


def test_calendar_impossible_dates_are_rejected_not_rolled_over() -> None:
    """2001-02-30 must be quarantined, not stored as 2001-03-02 (Arrow's strptime rolls it over)."""
    only: tuple[DefectKind, ...] = ("impossible_date",)
    records = list(generate_citizens(SEED, 2000, defect_rate=0.2, defect_kinds=only))
    truth = ground_truth(SEED, 2000, 0.2, defect_kinds=only)
    checked = check_table(CITIZENS, pa.Table.from_pylist(records))
    assert set(checked.rejected.column("cccd").to_pylist()) == {d.key for d in truth}
    assert {str(r["date_of_birth"])[5:] for r in records if r["cccd"] in {d.key for d in truth}} >= {"02-30", "04-31"}


def test_defects_keep_the_record_identifiable() -> None:
    """Only a cccd defect changes the cccd, and even then digits 7-12 still name the clean record."""
    records = list(generate_citizens(SEED, 3000, defect_rate=0.3))
    for defect in ground_truth(SEED, 3000, 0.3):
        clean, served = citizen(SEED, defect.index), records[defect.index]
        assert served["cccd"] == defect.key
        changed = {k for k in clean if clean[k] != served[k]}
        assert changed == {defect.field}
        if defect.field != "cccd":
            assert defect.key == clean["cccd"]
        else:
            assert str(clean["cccd"])[6:] in defect.key


def test_defects_at_a_lower_rate_stay_defects_at_a_higher_one() -> None:
    low = {d.index: d.kind for d in ground_truth(SEED, 3000, 0.05)}
    high = {d.index: d.kind for d in ground_truth(SEED, 3000, 0.2)}
    assert low.items() <= high.items() and len(high) > 2 * len(low)


@pytest.mark.parametrize(("count", "rate", "kinds"), [
    (MAX_CITIZENS + 1, 0.0, DEFECT_KINDS),
    (-1, 0.0, DEFECT_KINDS),
    (10, 1.5, DEFECT_KINDS),
    (10, 0.1, ("swapped_names",)),
    (10, 0.1, ()),
])
def test_impossible_arguments_raise_config_error(count: int, rate: float, kinds: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        list(generate_citizens(SEED, count, defect_rate=rate, defect_kinds=kinds))  # type: ignore[arg-type]
