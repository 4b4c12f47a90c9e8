"""A world of 50,000 citizens and 30 days of feeds, measured from its served records against published figures:
one test per measure (kho.simulator.statistics), the whole table printed once.

The measures' names are known without building the world (measured on no records), so each is its own test; the
world is built and measured once per module (about a minute).
"""

from __future__ import annotations

import pytest

from kho.simulator.generate import WorldSpec
from kho.simulator.statistics import Exports, Measure, format_table, measure_exports, summary

SPEC = WorldSpec(seed=14, citizens=50_000, days=30)
NAMES = [m.name for m in measure_exports(Exports.from_records({}))]


@pytest.fixture(scope="module")
def measured(request: pytest.FixtureRequest) -> dict[str, Measure]:
    found = measure_exports(Exports.of(SPEC))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    text = f"\n{SPEC}\n{format_table(found)}\n{summary(found)}\n"
    if reporter is not None:
        reporter.write_line(text)
    else:
        print(text)
    return {m.name: m for m in found}


@pytest.mark.parametrize("name", NAMES)
def test_measure_within_tolerance(measured: dict[str, Measure], name: str) -> None:
    m = measured[name]
    if not m.ok:
        pytest.fail(f"{m.name}: kho {m.value} ({m.detail}), target {m.target} {m.rule} ±{m.tolerance} [{m.source}]",
                    pytrace=False)
