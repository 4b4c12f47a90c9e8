"""The numbers behind each plot of the run report, aggregated in the warehouse (a few hundred rows at most, whatever
the warehouse holds) and read over one connection to the primary.

A table that does not exist yet (a warehouse never built has no marts) is not an error: its plot says so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

LOCAL_ZONE = "Asia/Ho_Chi_Minh"
"""A day of the ledger and of the quality gates is a day in the province."""
HISTORY_DAYS = 60
"""Days of loads and validations the time plots show, back from the newest one recorded."""
EVENT_MONTHS = 60
"""Months of vital events shown, back from the newest month with an event."""
COVERAGE_BINS = 10
"""Communes are counted in bins of coverage share 0–10 %, …, 90–100 %."""


@dataclass(frozen=True)
class PlotData:
    """One plot's numbers: the rows it draws (columns named), the table(s) they come from, and, when the table is
    missing, why (`missing`); no rows and no `missing` means the table exists but holds nothing yet."""

    key: str
    source: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    missing: str | None = None
    note: str = ""

    @property
    def empty(self) -> bool:
        return not self.rows


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows, as of the newest publication."""

    publication: tuple[int, dt.date, dt.datetime] | None
    plots: dict[str, PlotData]


def _exists(conn: psycopg.Connection[Any], table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,)


def _read(conn: psycopg.Connection[Any], key: str, tables: tuple[str, ...], columns: tuple[str, ...],
          query: sql.Composable | str, params: dict[str, Any] | None = None, note: str = "") -> PlotData:
    source = ", ".join(tables)
    absent = [t for t in tables if not _exists(conn, t)]
    if absent:
        return PlotData(key, source, columns, missing=f"{', '.join(absent)} does not exist yet (nothing published, "
                        "or the warehouse not migrated)", note=note)
    rows = [tuple(r) for r in conn.execute(query, params or {})]  # type: ignore[arg-type]
    return PlotData(key, source, columns, rows, note=note)


def ledger_by_day(conn: psycopg.Connection[Any], days: int = HISTORY_DAYS) -> PlotData:
    """Rows read, new, changed and rejected per registry per day (Asia/Ho_Chi_Minh) from kho.load_ledger."""
    return _read(conn, "ledger", ("kho.load_ledger",), ("day", "registry", "read", "new", "changed", "rejected"), """
        SELECT (finished_at AT TIME ZONE %(zone)s)::date AS day, registry,
               sum(rows_read)::bigint, sum(rows_new)::bigint, sum(rows_changed)::bigint, sum(rows_rejected)::bigint
        FROM kho.load_ledger
        WHERE finished_at >= (SELECT max(finished_at) FROM kho.load_ledger) - make_interval(days => %(days)s)
        GROUP BY 1, 2 ORDER BY 1, 2""", {"zone": LOCAL_ZONE, "days": days})


def quarantine_by_reason(conn: psycopg.Connection[Any]) -> PlotData:
    """Every quarantined record by reason code and by the entity it came from."""
    return _read(conn, "quarantine", ("kho.quarantine",), ("reason", "entity", "records"), """
        SELECT reason_code, registry || '.' || entity, count(*)
        FROM kho.quarantine GROUP BY 1, 2 ORDER BY 1, 2""")


def quality_by_day(conn: psycopg.Connection[Any], days: int = HISTORY_DAYS) -> PlotData:
    """Finished validations per day and layer (raw tables, marts) by how they ended (kho.quality_validations)."""
    return _read(conn, "quality_days", ("kho.quality_validations",), ("day", "layer", "passed", "warned", "failed"), """
        SELECT (started_at AT TIME ZONE %(zone)s)::date,
               CASE WHEN suite_name LIKE 'raw.%%' THEN 'raw' ELSE 'mart' END,
               count(*) FILTER (WHERE state = 'passed'), count(*) FILTER (WHERE state = 'warned'),
               count(*) FILTER (WHERE state = 'failed')
        FROM kho.quality_validations
        WHERE state IN ('passed', 'warned', 'failed')
          AND started_at >= (SELECT max(started_at) FROM kho.quality_validations) - make_interval(days => %(days)s)
        GROUP BY 1, 2 ORDER BY 1, 2""", {"zone": LOCAL_ZONE, "days": days})


def quality_by_suite(conn: psycopg.Connection[Any], days: int = HISTORY_DAYS) -> PlotData:
    """Expectations evaluated and passed per suite over the same days (kho.quality_results)."""
    return _read(conn, "quality_suites", ("kho.quality_results",), ("suite", "passed", "evaluated"), """
        SELECT suite_name, count(*) FILTER (WHERE success), count(*)
        FROM kho.quality_results
        WHERE validated_at >= (SELECT max(validated_at) FROM kho.quality_results) - make_interval(days => %(days)s)
        GROUP BY 1 ORDER BY 1""", {"days": days})


COVERAGE_BY_COMMUNE = "mart_health.insurance_coverage_by_commune"
COVERAGE_BY_PROVINCE = "mart_health.insurance_coverage_by_province"


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split("."))


def coverage_new_provinces(conn: psycopg.Connection[Any]) -> PlotData:
    """The 34 provinces after the 2025 reform, as the province mart publishes them (newest as-of date)."""
    return _read(conn, "coverage_new", (COVERAGE_BY_PROVINCE,),
                 ("province_code", "province", "living_population", "insured"), sql.SQL("""
        SELECT province_code_2025, coalesce(province_name_2025, province_code_2025), living_population, insured
        FROM {t}
        WHERE as_of_date = (SELECT max(as_of_date) FROM {t}) AND living_population > 0
        ORDER BY province_code_2025""").format(t=_table(COVERAGE_BY_PROVINCE)))


def coverage_old_provinces(conn: psycopg.Connection[Any]) -> PlotData:
    """The 63 provinces before the reform: the commune mart summed by each commune's pre-2025 province (a 2025
    commune formed from communes of several old provinces has none, and is counted apart)."""
    tables = (COVERAGE_BY_COMMUNE, "reference.ref_provinces")
    columns = ("province_code", "province", "living_population", "insured")
    data = _read(conn, "coverage_old", tables, columns, sql.SQL("""
        SELECT c.province_code_pre_2025, coalesce(p.province_name, c.province_code_pre_2025),
               sum(c.living_population)::bigint, sum(c.insured)::bigint
        FROM {t} AS c
        LEFT JOIN reference.ref_provinces AS p ON p.province_code = c.province_code_pre_2025
        WHERE c.as_of_date = (SELECT max(as_of_date) FROM {t}) AND c.province_code_pre_2025 IS NOT NULL
        GROUP BY 1, 2 HAVING sum(c.living_population) > 0 ORDER BY 1""").format(t=_table(COVERAGE_BY_COMMUNE)))
    if data.missing:
        return data
    unplaced = conn.execute(sql.SQL("""
        SELECT coalesce(sum(living_population), 0)::bigint FROM {t}
        WHERE as_of_date = (SELECT max(as_of_date) FROM {t})
          AND province_code_pre_2025 IS NULL""").format(t=_table(COVERAGE_BY_COMMUNE))).fetchone()
    people = int(unplaced[0]) if unplaced else 0
    note = (f" {people:,} living people live in 2025 communes formed from several old provinces and have no pre-2025 "
            "province: they are left out here." if people else "")
    return PlotData(data.key, data.source, data.columns, data.rows, note=note)


def coverage_commune_distribution(conn: psycopg.Connection[Any]) -> PlotData:
    """How many communes have each coverage share, in each era's units: the commune mart summed by the pre-2025
    commune and by the 2025 commune (a code whose unit in that era is unknown is left out of that era)."""
    return _read(conn, "coverage_communes", (COVERAGE_BY_COMMUNE,), ("units", "bin", "communes"), sql.SQL("""
        WITH latest AS (
            SELECT * FROM {t}
            WHERE as_of_date = (SELECT max(as_of_date) FROM {t})
        ), units AS (
            SELECT 'pre_2025' AS units, commune_code_pre_2025 AS commune,
                   sum(insured) AS insured, sum(living_population) AS living
            FROM latest WHERE commune_code_pre_2025 IS NOT NULL GROUP BY 2
            UNION ALL
            SELECT '2025', commune_code_2025, sum(insured), sum(living_population)
            FROM latest WHERE commune_code_2025 IS NOT NULL GROUP BY 2
        )
        SELECT units, least(floor(insured::numeric * %(bins)s / living), %(bins)s - 1)::int, count(*)
        FROM units WHERE living > 0 GROUP BY 1, 2 ORDER BY 1, 2""").format(t=_table(COVERAGE_BY_COMMUNE)),
        {"bins": COVERAGE_BINS})


VITAL_EVENTS = "mart_civil_status.vital_events_by_commune_month"


def vital_events_by_month(conn: psycopg.Connection[Any], months: int = EVENT_MONTHS) -> PlotData:
    """Births, deaths and marriages per month (the civil-status mart, summed over communes)."""
    return _read(conn, "vital_events", (VITAL_EVENTS,), ("month", "event", "events"), sql.SQL("""
        SELECT event_month, event_type, sum(events)::bigint FROM {t}
        WHERE event_month > (SELECT max(event_month) FROM {t}) - make_interval(months => %(months)s)
        GROUP BY 1, 2 ORDER BY 1, 2""").format(t=_table(VITAL_EVENTS)), {"months": months})


def latest_publication(conn: psycopg.Connection[Any]) -> tuple[int, dt.date, dt.datetime] | None:
    if not _exists(conn, "kho.publications"):
        return None
    row = conn.execute("SELECT publication_id, as_of, published_at FROM kho.publications "
                       "ORDER BY publication_id DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), row[1], row[2])


def gather(conn: psycopg.Connection[Any]) -> ReportData:
    plots = [ledger_by_day(conn), quarantine_by_reason(conn), quality_by_day(conn), quality_by_suite(conn),
             coverage_new_provinces(conn), coverage_old_provinces(conn), coverage_commune_distribution(conn),
             vital_events_by_month(conn)]
    return ReportData(latest_publication(conn), {p.key: p for p in plots})
