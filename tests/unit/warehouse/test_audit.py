"""Parsing the servers' JSON log lines into audit records: pgaudit's CSV payload and log_statement's messages,
with the statements that break naive parsers, and lines nobody understands skipped and counted, never fatal."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from kho.warehouse.audit import parse

NODE = "127.0.0.1:55433"
ROLE = "kho_agency_health"
NASTY = "SELECT 'a,b', \"weird, \"\"col\"\"\"\nFROM mart_health.t -- Hương's ✓\r\nWHERE x = $1"
"""Commas, double and single quotes, LF and CRLF, Vietnamese text and a symbol outside the BMP's ASCII."""


def pgaudit_csv(value: str) -> str:
    """pgaudit's append_valid_csv: quoted (quotes doubled) only when the value holds a comma, quote, LF or CR."""
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def line(message: str, *, user: str = ROLE, at: str = "2025-07-01 03:04:05.678 UTC", line_num: int = 1,
         **extra: Any) -> bytes:
    entry = {"timestamp": at, "user": user, "dbname": "kho", "pid": 4242, "remote_host": "10.1.2.3",
             "session_id": "686f5a.1092", "line_num": line_num, "error_severity": "LOG", "message": message,
             "backend_type": "client backend", **extra}
    return json.dumps(entry, ensure_ascii=False).encode()


def audit_line(statement: str, *, statement_id: int = 1, cls: str = "READ", command: str = "SELECT",
               obj: str = "", parameter: str = "<none>", **kw: Any) -> bytes:
    fields = ["SESSION", str(statement_id), "1", cls, command, "TABLE" if obj else "", obj, statement, parameter]
    return line("AUDIT: " + ",".join(pgaudit_csv(f) for f in fields), **kw)


def test_a_pgaudit_line_keeps_a_statement_with_commas_quotes_newlines_and_unicode() -> None:
    params = ",".join(pgaudit_csv(p) for p in ["074123456789", "Nguyễn, Văn \"A\""])

    (record,) = parse([(NODE, audit_line(NASTY, obj="mart_health.t", parameter=params))], roles=[ROLE])

    assert record.statement == NASTY
    assert (record.kind, record.audit_class, record.command, record.objects) == (
        "pgaudit", "READ", "SELECT", ("mart_health.t",))
    assert record.parameters == params
    assert (record.node, record.role, record.database, record.pid, record.session_id, record.statement_id) == (
        NODE, ROLE, "kho", 4242, "686f5a.1092", 1)
    assert record.logged_at == dt.datetime(2025, 7, 1, 3, 4, 5, 678000, tzinfo=dt.UTC)


def test_pgaudit_lines_of_one_statement_become_one_record_with_every_table() -> None:
    lines = [(NODE, audit_line("SELECT * FROM a JOIN b USING (k)", obj=name, line_num=n))
             for n, name in enumerate(["mart_population.a", "mart_population.b"], start=1)]

    (record,) = parse(lines, roles=[ROLE])

    assert record.objects == ("mart_population.a", "mart_population.b")


def test_a_log_statement_line_gives_the_statement_and_its_parameters() -> None:
    lines = [
        (NODE, line(f"execute <unnamed>: {NASTY}", detail="parameters: $1 = '074123456789'", line_num=1)),
        (NODE, line("statement: SELECT 1", line_num=2)),
        (NODE, line("execute fetch from S_1/C_2: SELECT 2", line_num=3)),
    ]

    records = parse(lines, roles=[ROLE])

    assert [(r.kind, r.statement, r.parameters) for r in records] == [
        ("log_statement", NASTY, "$1 = '074123456789'"),
        ("log_statement", "SELECT 1", None),
        ("log_statement", "SELECT 2", None),
    ]


def test_a_refused_statement_is_recorded_with_the_error() -> None:
    entry = line('permission denied for schema raw', error_severity="ERROR", statement="SELECT * FROM raw.x")

    (record,) = parse([(NODE, entry)], roles=[ROLE])

    assert (record.kind, record.statement, record.error) == (
        "error", "SELECT * FROM raw.x", "permission denied for schema raw")


def test_other_roles_and_other_messages_are_passed_over_without_counting() -> None:
    lines = [
        (NODE, audit_line("SELECT 1", user="kho")),
        (NODE, line("connection authorized: user=kho_agency_health database=kho")),
        (NODE, line("disconnection: session time: 0:00:00.010", error_severity="LOG")),
        (NODE, b""),
    ]

    records = parse(lines, roles=[ROLE])

    assert (list(records), records.skipped) == ([], 0)


@pytest.mark.parametrize("bad", [
    b'{"timestamp": "2025-07-01 03:04:05 UTC", "user": "kho_agency_health", "message": "AUDIT: trunc',
    b'["kho_agency_health"]',
    line("AUDIT: SESSION,1,1,READ"),  # too few fields
    line("AUDIT: SESSION,x,1,READ,SELECT,,,SELECT 1,<none>"),  # statement id not a number
    line('AUDIT: SESSION,1,1,READ,SELECT,,,"SELECT 1,<none>'),  # unterminated quote
    line("statement: SELECT 1", at="yesterday at noon"),
    line("statement: SELECT 1", at="2025-07-01 03:04:05 ICT"),  # a zone abbreviation kho cannot place
], ids=["truncated-json", "not-an-object", "short", "bad-id", "open-quote", "bad-time", "unknown-zone"])
def test_a_line_that_cannot_be_understood_is_skipped_and_counted(bad: bytes) -> None:
    good = audit_line("SELECT 1", line_num=9)

    records = parse([(NODE, bad), (NODE, good)], roles=[ROLE])

    assert [r.statement for r in records] == ["SELECT 1"]
    assert records.skipped == 1


def test_records_come_sorted_by_time_across_nodes_and_filtered_by_since() -> None:
    lines = [
        ("primary:1", audit_line("SELECT 'late'", at="2025-07-01 10:00:02.000 UTC")),
        ("standby:2", audit_line("SELECT 'early'", at="2025-07-01 10:00:01.000 UTC")),
        ("standby:2", audit_line("SELECT 'too early'", at="2025-07-01 09:59:59.999 UTC")),
        ("primary:1", audit_line("SELECT 'in +07'", at="2025-07-01 17:00:01.500 +07")),
    ]

    since = dt.datetime(2025, 7, 1, 17, 0, tzinfo=dt.timezone(dt.timedelta(hours=7)))

    records = parse(lines, roles=[ROLE], since=since)

    assert [(r.node, r.statement) for r in records] == [
        ("standby:2", "SELECT 'early'"), ("primary:1", "SELECT 'in +07'"), ("primary:1", "SELECT 'late'")]


def test_a_role_whose_name_needs_json_escapes_is_still_found() -> None:
    odd = 'agency "quoted"\\name'

    records = parse([(NODE, audit_line("SELECT 1", user=odd))], roles=[odd])

    assert [r.role for r in records] == [odd]
