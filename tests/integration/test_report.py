"""The run report from a real warehouse: a simulated province with defects synced day by day through the raw gates
and built once (real loader, GX, dbt, publication). The numbers behind every plot are checked against the
warehouse read another way, and the page is opened in headless Chromium, which must see every plot drawn."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import http.server
import re
import threading
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from kho.build.run import BuildPlan, build
from kho.cli import build_parser
from kho.config import KhoConfig
from kho.load.pipeline import SyncOptions, sync_api
from kho.quality import validate_raw
from kho.report.data import COVERAGE_BINS, EVENT_MONTHS
from kho.report.page import Written, write_report
from kho.report.plots import PLOTS
from kho.simulator import World
from kho.simulator import calendar as cal
from kho.simulator.defects import ALL_DEFECT_KINDS
from kho.simulator.generate import WorldSpec
from kho.simulator.server import ServerOptions, serve_in_thread
from kho.sources import ENTITIES
from kho.warehouse.connection import connect
from kho.warehouse.migrations import migrate
from tests.conftest import free_port, new_database
from tests.support.browser import artefact_dir, chromium, offline_context

pytestmark = pytest.mark.integration

SPEC = WorldSpec(seed=16, citizens=800, days=2, defect_rate=0.02,
                 defect_kinds=ALL_DEFECT_KINDS - {"schema_drift_renamed_field"})
"""The demo's kinds of defect (a renamed field refuses its whole batch, by design), at a rate that quarantines some."""
AS_OF = dt.date.fromordinal(cal.day_ord(SPEC.days))
ZONE = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")


@dataclasses.dataclass
class Reported:
    config: KhoConfig
    written: Written


def rows(config: KhoConfig, query: sql.Composable | str) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(query)]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reported(kho_config: KhoConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reported]:
    """Each day's feed synced and gated entity by entity, then one build; the report written from that warehouse."""
    with new_database(kho_config) as own:
        yield from _reported(dataclasses.replace(own, home=tmp_path_factory.mktemp("report-home")))


def _reported(config: KhoConfig) -> Iterator[Reported]:
    with connect(config.warehouse, autocommit=True) as conn:
        migrate(conn)
    world = World.build(SPEC)
    with serve_in_thread(world, options=ServerOptions(credentials=config.ensure_registry_credentials())) as served:
        served_config = dataclasses.replace(config, simulator_port=served.port)
        for day in range(SPEC.days + 1):
            if day:
                world.advance(day)
            for entity in ENTITIES:
                batches = [e.batch_id for e in sync_api(served_config, entity, SyncOptions(page_size=1000))]
                validate_raw(config, entity.raw_table, batches, run_id=f"day-{day}")
    build(config, BuildPlan("report-build", AS_OF))
    yield Reported(config, write_report(config))


def test_the_report_is_written_under_kho_home_with_every_plot_drawn(reported: Reported) -> None:
    written = reported.written
    assert written.path == reported.config.home / "report" / "index.html"
    assert written.empty == []
    assert sorted(written.drawn) == sorted(PLOTS)
    text = written.path.read_text(encoding="utf-8")
    assert text.count("<svg") == len(PLOTS)
    assert "No data yet" not in text
    assert not list(written.path.parent.glob(".index.html.*")), "no temp file left beside the page"


def test_records_per_registry_per_day_are_the_ledger_s_batches_summed(reported: Reported) -> None:
    expected: dict[tuple[dt.date, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for finished, registry, *counts in rows(reported.config, "SELECT finished_at, registry, rows_read, rows_new, "
                                            "rows_changed, rows_rejected FROM kho.load_ledger"):
        totals = expected[finished.astimezone(ZONE).date(), registry]
        for i, n in enumerate(counts):
            totals[i] += n
    got = {(r[0], r[1]): list(r[2:]) for r in reported.written.data.plots["ledger"].rows}
    assert got == expected
    assert {registry for _, registry in got} == {e.registry for e in ENTITIES}


def test_quarantine_reasons_count_every_quarantined_record_by_reason_and_entity(reported: Reported) -> None:
    expected = Counter((r[0], f"{r[1]}.{r[2]}") for r in rows(
        reported.config, "SELECT reason_code, registry, entity FROM kho.quarantine"))
    assert expected, "the world's defects quarantined records"
    got = {(r[0], r[1]): r[2] for r in reported.written.data.plots["quarantine"].rows}
    assert got == dict(expected)


def test_quality_pass_rates_count_the_finished_validations_per_day_and_layer_and_expectations_per_suite(
        reported: Reported) -> None:
    by_day: dict[tuple[dt.date, str], Counter[str]] = defaultdict(Counter)
    for started, suite, state in rows(reported.config,
                                      "SELECT started_at, suite_name, state FROM kho.quality_validations"):
        if state in ("passed", "warned", "failed"):
            by_day[started.astimezone(ZONE).date(), "raw" if suite.startswith("raw.") else "mart"][state] += 1
    got = {(r[0], r[1]): Counter(passed=r[2], warned=r[3], failed=r[4]) for r in
           reported.written.data.plots["quality_days"].rows}
    assert {k: +v for k, v in got.items()} == by_day
    assert {layer for _, layer in got} == {"raw", "mart"}
    by_suite: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for suite, success in rows(reported.config, "SELECT suite_name, success FROM kho.quality_results"):
        by_suite[suite][0] += int(success)
        by_suite[suite][1] += 1
    assert {r[0]: [r[1], r[2]] for r in reported.written.data.plots["quality_suites"].rows} == by_suite


def _golden_coverage(config: KhoConfig, unit: str) -> dict[str, tuple[int, int]]:
    """Living and insured golden citizens per unit, straight from the golden record (not the coverage marts)."""
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    query = sql.SQL("SELECT {}, is_alive, has_active_health_cover FROM mart_population.golden_citizens")
    for code, alive, covered in rows(config, query.format(sql.Identifier(unit))):
        if code is not None and alive:
            found[code][0] += 1
            found[code][1] += int(covered)
    return {code: (living, insured) for code, (living, insured) in found.items()}


def test_coverage_by_2025_province_is_the_living_golden_citizens_with_active_cover(reported: Reported) -> None:
    plot = reported.written.data.plots["coverage_new"]
    names = dict(rows(reported.config, "SELECT province_code, province_name FROM reference.ref_provinces_2025"))
    assert {r[0]: (r[2], r[3]) for r in plot.rows} == _golden_coverage(reported.config, "province_code_2025")
    assert {r[0]: r[1] for r in plot.rows} == {r[0]: names[r[0]] for r in plot.rows}
    assert any(re.search(r"[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", r[1].lower())
               for r in plot.rows), "Vietnamese province names"


def test_coverage_by_pre_2025_province_is_the_living_golden_citizens_with_active_cover(reported: Reported) -> None:
    plot = reported.written.data.plots["coverage_old"]
    names = dict(rows(reported.config, "SELECT province_code, province_name FROM reference.ref_provinces"))
    assert {r[0]: (r[2], r[3]) for r in plot.rows} == _golden_coverage(reported.config, "province_code_pre_2025")
    assert {r[0]: r[1] for r in plot.rows} == {r[0]: names[r[0]] for r in plot.rows}


def test_communes_are_counted_by_coverage_share_in_old_and_new_units(reported: Reported) -> None:
    expected: Counter[tuple[str, int]] = Counter()
    for era, unit in (("pre_2025", "commune_code_pre_2025"), ("2025", "commune_code_2025")):
        for living, insured in _golden_coverage(reported.config, unit).values():
            expected[era, min(insured * COVERAGE_BINS // living, COVERAGE_BINS - 1)] += 1
    got = {(r[0], r[1]): r[2] for r in reported.written.data.plots["coverage_communes"].rows}
    assert got == dict(expected)
    assert {era for era, _ in got} == {"pre_2025", "2025"}


def test_vital_events_per_month_sum_the_civil_status_mart_over_communes(reported: Reported) -> None:
    events = rows(reported.config, "SELECT event_month, event_type, events "
                                   "FROM mart_civil_status.vital_events_by_commune_month")
    newest = max(month for month, _, _ in events)
    expected: Counter[tuple[dt.date, str]] = Counter()
    for month, kind, n in events:
        if (newest.year - month.year) * 12 + newest.month - month.month < EVENT_MONTHS:
            expected[month, kind] += n
    got = {(r[0], r[1]): r[2] for r in reported.written.data.plots["vital_events"].rows}
    assert got == dict(expected)
    assert {kind for _, kind in got} == {"birth", "death", "marriage"}


@pytest.fixture
def served_report(reported: Reported) -> Iterator[str]:
    """The report directory over HTTP on localhost, as `kho docs` serves it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(reported.written.path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


DRAWN = """() => [...document.querySelectorAll('figure.plot')].map(f => {
    const svg = f.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    const marks = svg ? [...svg.querySelectorAll('[id^="kho-data-"]')].filter(e => {
        const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; }).length : 0;
    return {id: f.id, state: f.dataset.state, width: box.width, height: box.height, marks: marks,
            caption: f.querySelector('figcaption').textContent, title: f.querySelector('h3').textContent};
})"""


def test_the_page_draws_every_plot_in_a_browser_without_the_network(served_report: str, tmp_path: Path) -> None:
    with chromium() as browser:
        context, blocked = offline_context(browser, viewport={"width": 1200, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        response = page.goto(served_report)
        assert response is not None and response.status == 200
        figures = page.evaluate(DRAWN)
        shot = artefact_dir("test_report", tmp_path) / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        context.close()
    print(f"\nscreenshot: {shot}")
    assert [f["id"] for f in figures] == figures_in_page_order()
    for f in figures:
        assert f["state"] == "drawn", f
        assert f["width"] > 300 and f["height"] > 100, f
        assert f["marks"] > 0, f"{f['id']}: no data drawn"
        assert f["title"] and re.search(r"\b(kho|mart_[a-z_]+)\.[a-z_]+", f["caption"]), "caption names its table"
    assert blocked == [] and errors == []
    assert shot.stat().st_size > 10_000


def figures_in_page_order() -> list[str]:
    from kho.report.page import SECTIONS

    return [key for _, keys in SECTIONS for key in keys]


def test_an_empty_warehouse_gives_a_page_whose_plots_say_no_data_yet(fresh_db_config: KhoConfig, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["report", "--out", str(tmp_path / "out")])
    assert args.handler(args, fresh_db_config) == 0
    out = capsys.readouterr()
    assert f"run report: {tmp_path / 'out' / 'index.html'}" in out.out and "Traceback" not in out.err
    text = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "<svg" not in text
    assert text.count('data-state="empty"') == text.count("No data yet: ") == len(PLOTS)
    assert "mart_health.insurance_coverage_by_province does not exist yet" in text
    assert "kho.load_ledger has no rows yet" in text
    with chromium() as browser:
        context, blocked = offline_context(browser)
        page = context.new_page()
        page.goto((tmp_path / "out" / "index.html").as_uri())
        shown = page.locator("p.empty").all_inner_texts()
        page.screenshot(path=str(artefact_dir("test_report", tmp_path) / "empty.png"), full_page=True)
        context.close()
    assert len(shown) == len(PLOTS) and all(s.startswith("No data yet") for s in shown)
    assert blocked == []


def test_a_warehouse_that_does_not_answer_fails_kho_report_in_one_line(fresh_db_config: KhoConfig, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = dataclasses.replace(fresh_db_config, warehouse=dataclasses.replace(
        fresh_db_config.warehouse, ports=(free_port(),), hosts=("127.0.0.1",)))
    args = build_parser().parse_args(["report", "--out", str(tmp_path)])
    assert args.handler(args, nowhere) == 1
    err = capsys.readouterr().err
    assert err.startswith("kho: run report not written: ") and err.count("\n") == 1
    assert not (tmp_path / "index.html").exists()
