"""`kho status`, `kho runs`, `kho ledger` on screen: aligned plain text, colour only on a terminal, what needs
attention said in words — checked on reports built by hand, and on a KHO_HOME where nothing runs (no server)."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import re
from pathlib import Path

import pytest

from kho import airflow_runs
from kho.airflow_runs import DagLine, DagRun
from kho.cli import build_parser, main
from kho.config import KhoConfig
from kho.history import LedgerQuery, LedgerRow, render_ledger, render_runs
from kho.screen import local, local_day, span, table, wants_colour
from kho.status import DatasetFreshness, LedgerTotal, QualityLayer, QuarantineReason, StatusReport
from kho.warehouse.health import ClusterStatus, HealthReport, NodeStatus

NOW = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)  # 11:00 in Vietnam
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def report(**changes: object) -> StatusReport:
    """A night that went well: every part read, nothing to act on."""
    run = DagRun("sync_population", "scheduled__2026-11-30T18:00:00+00:00", "success", "scheduled",
                 NOW - dt.timedelta(hours=3), NOW - dt.timedelta(hours=3) + dt.timedelta(seconds=75))
    fields: dict[str, object] = {
        "now": NOW, "home": "/srv/kho", "airflow_db": "/srv/kho/airflow/airflow.db",
        "dags": [DagLine("sync_population", False, run), DagLine("warehouse_backup", True, None)],
        "ledger": [LedgerTotal("population", 4, 1_200_000, 1000, 20, 1_198_900, 80),
                   LedgerTotal("insurance", 0, 0, 0, 0, 0, 0)],
        "quarantine": [QuarantineReason("malformed", 60, 900), QuarantineReason("missing_required", 20, 20)],
        "quality": [QualityLayer("raw", passed=3, warned=1), QualityLayer("mart")],
        "health": HealthReport(status=ClusterStatus(nodes=(
            NodeStatus("dc1", "127.0.0.1", 55432, True, "primary", patroni_role="leader"),
            NodeStatus("dc2", "127.0.0.1", 55433, True, "standby", patroni_role="sync_standby",
                       replication_state="streaming", lag_bytes=1_048_576, lag_seconds=0.25))), alerts=(), checked=()),
        "backup": "none here (test)",
        "datasets": [DatasetFreshness("mart_population.golden_citizens", 7, dt.date(2026, 11, 30),
                                      NOW - dt.timedelta(hours=2))],
    }
    fields.update(changes)
    return StatusReport(**fields)  # type: ignore[arg-type]


def section(text: str, title: str) -> list[str]:
    """The lines under the heading that starts with `title`, up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1:end]


def test_the_ledger_part_sums_each_registry_and_the_day_and_aligns_the_numbers_right() -> None:
    lines = section(report().render(), "Loaded today (2026-12-01)")
    assert lines[0].split() == ["REGISTRY", "BATCHES", "READ", "NEW", "CHANGED", "UNCHANGED", "REJECTED"]
    assert lines[1].split() == ["population", "4", "1,200,000", "1,000", "20", "1,198,900", "80"]
    assert lines[2].split() == ["insurance", "0", "0", "0", "0", "0", "0"]
    assert lines[3].split() == ["total", "4", "1,200,000", "1,000", "20", "1,198,900", "80"]
    assert len({len(line) for line in lines}) == 1, "right-aligned columns end in the same place"


def test_dag_runs_show_state_start_on_the_provinces_clock_duration_and_never_run() -> None:
    lines = section(report().render(), "DAG runs, the newest of each")
    assert lines[1].split() == ["sync_population", "active", "scheduled__2026-11-30T18:00:00+00:00", "success",
                                "2026-12-01", "08:00:00", "1", "min", "15", "s"]
    assert lines[2].split()[:4] == ["warehouse_backup", "paused", "-", "never"]


def test_quality_pass_rate_is_the_share_of_validations_that_met_every_expectation() -> None:
    lines = section(report().render(), "Quality today")
    assert lines[1].split() == ["raw", "3", "1", "0", "0", "0", "75%"]
    assert lines[2].split() == ["mart", "0", "0", "0", "0", "0", "-"]


def test_a_night_that_went_well_needs_no_attention() -> None:
    text = report().render()
    assert report().attention == [] and text.endswith("Nothing needs attention.")


def test_replication_shows_each_nodes_role_and_lag() -> None:
    lines = section(report().render(), "Replication")
    assert lines[1].split() == ["dc1", "127.0.0.1:55432", "primary", "-", "-"]
    assert lines[2].split() == ["dc2", "127.0.0.1:55433", "standby", "streaming", "1,048,576", "B", "/", "0.250", "s"]


def test_a_failed_run_a_failed_validation_and_an_old_publication_each_need_attention() -> None:
    failed = DagRun("build_warehouse", "scheduled__x", "failed", "scheduled", NOW - dt.timedelta(hours=1), NOW)
    old = [DatasetFreshness("mart_population.households", 6, dt.date(2026, 11, 28), NOW - dt.timedelta(hours=30))]
    problems = report(dags=[DagLine("build_warehouse", False, failed)], failed_suites=["raw.population__citizens"],
                      quality=[QualityLayer("raw", passed=1, failed=1)], datasets=old).attention
    assert len(problems) == 3
    assert problems[0].startswith("build_warehouse: its newest run scheduled__x ended failed")
    assert "1 validation(s) failed a blocking expectation today: raw.population__citizens" in problems[1]
    assert "the newest publication (#6, as of 2026-11-28) is 30 h 00 min old" in problems[2]


def test_parts_the_warehouse_could_not_give_are_said_once_as_needing_attention() -> None:
    why = "not read: no primary answers (127.0.0.1:1031)"
    r = report(ledger=why, quarantine=why, quality=why, datasets=why, dags="no Airflow metadata DB at /x")
    assert r.attention == [f"warehouse: {why}"], "no Airflow yet is said in its line, not an alert"
    assert section(r.render(), "DAG runs")[0] == "  no Airflow metadata DB at /x"


def test_colour_only_changes_the_escapes_never_the_layout() -> None:
    failed = DagRun("build_warehouse", "r", "failed", "manual", NOW - dt.timedelta(minutes=5), NOW)
    r = report(dags=[DagLine("build_warehouse", False, failed)])
    plain, coloured = r.render(), r.render(colour=True)
    assert "\x1b[" not in plain
    assert "\x1b[31mfailed" in coloured and ANSI.sub("", coloured) == plain


def test_no_colour_into_a_pipe_or_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not wants_colour(io.StringIO())
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert wants_colour(Terminal())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_colour(Terminal())


def test_the_day_is_vietnams_whatever_the_servers_zone() -> None:
    day, start, end = local_day(dt.datetime(2026, 11, 30, 17, 30, tzinfo=dt.UTC))
    assert day == dt.date(2026, 12, 1)
    assert start == dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC) and end - start == dt.timedelta(days=1)
    assert local(dt.datetime(2026, 11, 30, 17, 30)) == "2026-12-01 00:30:00", "Airflow's naive UTC"


@pytest.mark.parametrize(("seconds", "text"), [(3.62, "3.6 s"), (65, "1 min 05 s"), (7380, "2 h 03 min"),
                                               (3 * 86400, "3.0 days"), (None, "-")])
def test_spans_read_at_a_glance(seconds: float | None, text: str) -> None:
    assert span(seconds) == text


def test_a_table_pads_each_column_to_its_widest_cell() -> None:
    lines = table(("A", "NUMBER"), [["long name", "1"], ["x", "12345678"]], align=("<", ">"), indent="")
    assert lines == ["A            NUMBER", "long name         1", "x          12345678"]


def test_ledger_rows_list_counts_source_and_cursor_range_on_the_provinces_clock() -> None:
    at = dt.datetime(2026, 11, 30, 18, 5, tzinfo=dt.UTC)
    rows = [LedgerRow(42, "population", "citizens", "api", None, "scheduled__x", at, 10, 2, 1, 6, 1,
                      at - dt.timedelta(days=1), at),
            LedgerRow(41, "insurance", "participants", "file", "insurance__participants__day001.csv.gz", None, at,
                      5, 5, 0, 0, 0, None, None)]
    lines = render_ledger(rows)
    assert lines[0].split()[:3] == ["BATCH", "ENTITY", "SOURCE"]
    assert lines[1].split() == ["42", "population.citizens", "api", "2026-12-01", "01:05:00", "10", "2", "1", "6",
                                "1", "2026-11-30", "01:05:00", "..", "2026-12-01", "01:05:00"]
    assert lines[2].split()[2] == "insurance__participants__day001.csv.gz" and lines[2].endswith("-")


def test_run_history_shows_a_running_run_for_as_long_as_it_has_run() -> None:
    running = DagRun("sync_business", "manual__1", "running", "manual", NOW - dt.timedelta(seconds=90), None)
    assert render_runs([running], NOW)[1].split() == ["sync_business", "manual__1", "running", "2026-12-01",
                                                      "10:58:30", "1", "min", "30", "s"]


@pytest.mark.parametrize(("query", "message"), [
    (LedgerQuery(registry="nope"), "unknown registry 'nope'"),
    (LedgerQuery(registry="population", entity="nope"), "registry population has no entity 'nope'"),
    (LedgerQuery(entity="unicorns"), "no registry has an entity 'unicorns'"),
])
def test_a_ledger_filter_naming_nothing_known_says_what_exists(query: LedgerQuery, message: str) -> None:
    from kho.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        query.check()


def test_every_argument_of_status_runs_and_ledger_has_help() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("status", "runs", "ledger"):
        for action in sub.choices[name]._actions:
            assert action.help, f"kho {name} {action.option_strings} has no help"


def test_status_with_nothing_running_says_so_part_by_part_and_exits_1(nothing_running: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert "Traceback" not in out + captured.err and "\x1b[" not in out
    assert section(out, "DAG runs")[0].startswith("  no Airflow metadata DB at ")
    assert section(out, "Loaded today")[0].startswith("  not read: no primary answers (127.0.0.1:1031")
    assert [line.split()[:3] for line in section(out, "Replication")[1:]] == [
        ["dc1", "127.0.0.1:1031", "down"], ["dc2", "127.0.0.1:1033", "down"]]
    needs = section(out, "Needs attention")
    assert any("no primary answers" in line for line in needs) and any("dc1" in line for line in needs)
    assert not (nothing_running / "airflow").exists(), "looking must not create Airflow's home"


def test_runs_without_airflow_fail_in_one_line_naming_what_makes_it(nothing_running: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--dag", "sync_population"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no Airflow metadata DB" in err and "kho demo" in err


def test_an_airflow_db_that_is_not_airflows_is_refused_in_one_line(nothing_running: Path) -> None:
    config = KhoConfig.from_env()
    airflow_runs.metadata_db(config).parent.mkdir(parents=True)
    airflow_runs.metadata_db(config).write_bytes(b"not a database at all" * 100)
    with pytest.raises(airflow_runs.AirflowUnavailable, match="cannot read Airflow's metadata DB"):
        airflow_runs.runs(config)
