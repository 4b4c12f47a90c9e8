"""Statement audit for agency roles: personal-data processing must be traceable (Decree 13/2023/ND-CP).

Every statement an audited role runs is written to the server log of the node that ran it — the standby too,
where agencies mostly query — by pgaudit where the server has loaded it, else by PostgreSQL's own statement
logging for that role. Both are role settings only a superuser may change, so the role cannot switch its own
audit off (`SET`, connection options and `ALTER ROLE` on itself are refused). `read` gathers the trail from the
JSON log lines of every node over the administrator's connection (pg_ls_logdir + pg_read_binary_file), so a remote
or read-only node is read the same way as a local one.

Run `python -m kho.warehouse.audit install` (what `make setup` does) to install pgaudit for the PostgreSQL the
embedded warehouse runs, where apt can.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, LiteralString

import psycopg
from psycopg import sql

from kho.config import KhoConfig
from kho.errors import ConfigError, KhoError, WarehouseError
from kho.warehouse.binaries import JSONLOG_SINCE, find_binaries
from kho.warehouse.connection import connect_admin

log = logging.getLogger(__name__)

AuditMode = Literal["pgaudit", "log_statement"]
"""How a role's statements are recorded: pgaudit's session log, or PostgreSQL's `log_statement = 'all'`."""
RecordKind = Literal["pgaudit", "log_statement", "error"]
"""What wrote a record: one of the modes, or the server's error log (a refused statement names its text there)."""

ROLE_SETTINGS: dict[AuditMode, dict[LiteralString, str]] = {
    "pgaudit": {
        "pgaudit.log": "all",  # read, write, function, role, ddl, misc, misc_set
        "pgaudit.log_catalog": "on",  # an agency's SQL tool reading the catalogs is processing too
        "pgaudit.log_relation": "on",  # which tables a statement read or wrote, one line per table
        "pgaudit.log_parameter": "on",  # a looked-up CCCD arrives as a parameter, not in the statement text
        "pgaudit.log_statement_once": "off",  # every line carries its statement: no line depends on another
    },
    "log_statement": {"log_statement": "all"},
}
"""The role settings each mode writes (ALTER ROLE … SET). All are superuser-only parameters."""
_PGAUDIT_CLASSES = frozenset({"read", "write", "function", "role", "ddl", "misc", "misc_set"})
_MTIME_SLACK = dt.timedelta(seconds=2)
"""pg_ls_logdir reports whole seconds: a file written just after `since` may show a time just before it."""
_READ_CHUNK = 4 << 20
"""Bytes per pg_read_binary_file call: a large log arrives in pieces, never as one huge value."""


# --------------------------------------------------------------------------------------------------- settings


def detect_mode(conn: psycopg.Connection[Any]) -> AuditMode:
    """pgaudit if this server has loaded it (its parameters exist only then), else statement logging."""
    row = conn.execute("SELECT 1 FROM pg_settings WHERE name = 'pgaudit.log'").fetchone()
    return "pgaudit" if row is not None else "log_statement"


def enable(conn: psycopg.Connection[Any], role: str, *, mode: AuditMode | None = None) -> AuditMode:
    """Record every statement `role` runs from its next session on, on every node; returns the mode used.

    Run as the administrator on the primary (role settings replicate to the standby). `mode` defaults to what the
    server offers; "log_statement" works everywhere, "pgaudit" needs the library loaded.
    """
    _require_role(conn, role)
    chosen = mode or detect_mode(conn)
    if chosen == "pgaudit" and detect_mode(conn) != "pgaudit":
        raise WarehouseError("pgaudit is not loaded on this server: install it (`make setup` does, as root on "
                             "Debian) and run `kho warehouse up`, or audit with mode 'log_statement'")
    other: AuditMode = "log_statement" if chosen == "pgaudit" else "pgaudit"
    _reset(conn, role, ROLE_SETTINGS[other])
    for name, value in ROLE_SETTINGS[chosen].items():
        conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(sql.Identifier(role), sql.SQL(name),
                                                                 sql.Literal(value)))
    return chosen


def disable(conn: psycopg.Connection[Any], role: str) -> None:
    """Stop recording `role`'s statements (from its next session); its past records stay in the logs."""
    _require_role(conn, role)
    for settings in ROLE_SETTINGS.values():
        _reset(conn, role, settings)


def is_enabled(conn: psycopg.Connection[Any], role: str) -> bool:
    """Whether `role`'s next session will be recorded on this server, with nothing set for it in one database
    that turns the recording off there."""
    rows = conn.execute(
        "SELECT s.setdatabase, s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
        "WHERE r.rolname = %s", (role,)).fetchall()
    everywhere = _settings(next((config for database, config in rows if database == 0), None))
    if not _records_all(everywhere, pgaudit=detect_mode(conn) == "pgaudit"):
        return False
    per_database = [_settings(config) for database, config in rows if database != 0]
    return all(_records_all(everywhere | own, pgaudit=detect_mode(conn) == "pgaudit") for own in per_database)


def _records_all(settings: dict[str, str], *, pgaudit: bool) -> bool:
    if settings.get("log_statement", "").lower() == "all":
        return True
    if not pgaudit:
        return False
    classes = {c.strip().lower() for c in settings.get("pgaudit.log", "").split(",")}
    return (("all" in classes or classes >= _PGAUDIT_CLASSES)
            and not any(c.startswith("-") for c in classes)
            and settings.get("pgaudit.log_catalog", "on").lower() in ("on", "true", "1", "yes"))


def _settings(config: list[str] | None) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in config or [] if "=" in item)
    return {name.lower(): value for name, value in pairs}


def _require_role(conn: psycopg.Connection[Any], role: str) -> None:
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
        raise WarehouseError(f"there is no role {role!r} to audit; create it first (`kho access apply`)")


def _reset(conn: psycopg.Connection[Any], role: str, settings: dict[LiteralString, str]) -> None:
    for name in settings:
        conn.execute(sql.SQL("ALTER ROLE {} RESET {}").format(sql.Identifier(role), sql.SQL(name)))


# --------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class AuditRecord:
    """One recorded statement of an audited role, as the node that ran it logged it."""

    node: str
    """host:port of the node whose log holds the record (primary or standby)."""
    logged_at: dt.datetime
    role: str
    """The login that ran it (the session user, whatever SET ROLE it did)."""
    database: str | None
    statement: str
    kind: RecordKind
    audit_class: str | None = None
    """pgaudit's class: READ, WRITE, FUNCTION, ROLE, DDL, MISC or MISC_SET."""
    command: str | None = None
    """pgaudit's command tag (SELECT, INSERT, …)."""
    objects: tuple[str, ...] = ()
    """The relations pgaudit saw the statement use (schema-qualified)."""
    parameters: str | None = None
    """Bound parameters as the server logged them, when the statement had any."""
    error: str | None = None
    """For kind "error": why the server refused or aborted the statement."""
    session_id: str = ""
    pid: int | None = None
    statement_id: int | None = None
    """pgaudit's statement number within the session."""
    substatement_id: int | None = None
    application_name: str | None = None
    remote_host: str | None = None


class AuditRecords(list[AuditRecord]):
    """`read`'s records, sorted by time, and how many log lines looked like audit records but did not parse."""

    skipped: int = 0


def read(config: KhoConfig, *, roles: Collection[str], since: dt.datetime | None = None) -> AuditRecords:
    """Every recorded statement of `roles` (at or after `since`) from every node's logs, oldest first.

    Reads over the administrator's connection, node by node; a node that cannot be reached is an error, because a
    trail silently missing a node would be a false answer.
    """
    if since is not None and since.tzinfo is None:
        raise ConfigError(f"audit since {since.isoformat()} has no time zone; give one (e.g. +07:00)")
    return parse(_every_node_lines(config, since), roles=roles, since=since)


def parse(lines: Iterable[tuple[str, bytes]], *, roles: Collection[str], since: dt.datetime | None = None
          ) -> AuditRecords:
    """The records in (node, JSON log line) pairs; lines of other roles and other messages are passed over."""
    parser = _LogParser(frozenset(roles), since)
    for node, line in lines:
        parser.feed(node, line)
    records = AuditRecords(parser.records())
    records.skipped = parser.skipped
    return records


def _every_node_lines(config: KhoConfig, since: dt.datetime | None) -> Iterator[tuple[str, bytes]]:
    wh = config.warehouse
    for index in range(len(wh.hosts)):
        node = f"{wh.hosts[index]}:{wh.ports[index]}"
        try:
            with connect_admin(wh, dbname="postgres", node_index=index) as conn:
                if conn.info.server_version // 10000 < JSONLOG_SINCE:
                    raise WarehouseError(f"{node} runs PostgreSQL {conn.info.server_version // 10000}, which cannot "
                                         f"log JSON lines; reading the audit trail needs {JSONLOG_SINCE} or later")
                for line in _log_lines(conn, since):
                    yield node, line
        except psycopg.Error as exc:
            raise WarehouseError(f"cannot read the server logs of {node}: {str(exc).strip()}") from exc


def _log_lines(conn: psycopg.Connection[Any], since: dt.datetime | None) -> Iterator[bytes]:
    """The complete JSON lines of the node's log files; files last written before `since` are not read."""
    files = conn.execute("SELECT name, modification FROM pg_ls_logdir() WHERE name LIKE '%.json' "
                         "ORDER BY modification, name").fetchall()
    for name, modified in files:
        if since is not None and modified + _MTIME_SLACK < since:
            continue
        offset, rest = 0, b""
        while True:
            row = conn.execute(
                "SELECT pg_read_binary_file(current_setting('log_directory') || '/' || %s, %s, %s, true)",
                (name, offset, _READ_CHUNK)).fetchone()
            chunk = bytes(row[0]) if row and row[0] is not None else b""
            offset += len(chunk)
            *complete, rest = (rest + chunk).split(b"\n")
            yield from complete
            if len(chunk) < _READ_CHUNK:
                break  # `rest` is a line still being written: the next read has it whole


_STATEMENT = re.compile(r"(?:statement|execute(?: fetch from)? [^:]*): (.*)", re.DOTALL)
"""log_statement's message: `statement: …` (simple protocol), `execute <name>: …` (extended protocol)."""
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (\S+)")
_PGAUDIT_FIELDS = 9
"""AUDIT_TYPE, STATEMENT_ID, SUBSTATEMENT_ID, CLASS, COMMAND, OBJECT_TYPE, OBJECT_NAME, STATEMENT, PARAMETER."""


@dataclass
class _LogParser:
    """Turns JSON log lines into records: pgaudit lines of one statement become one record (their objects
    collected); a line it cannot understand is skipped and counted, never fatal."""

    roles: frozenset[str]
    since: dt.datetime | None
    skipped: int = 0
    _found: dict[tuple[Any, ...], tuple[tuple[Any, ...], AuditRecord]] = field(default_factory=dict)
    _needles: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        """A line that does not hold a wanted role's name as a JSON string is not even decoded (most are not)."""
        if all(re.fullmatch(r'[^"\\\x00-\x1f]+', r) for r in self.roles):
            self._needles = tuple(json.dumps(r, ensure_ascii=False).encode() for r in self.roles)

    def feed(self, node: str, line: bytes) -> None:
        if not line.strip() or (self._needles and not any(n in line for n in self._needles)):
            return
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not a JSON object")
            if entry.get("user") not in self.roles:
                return
            record = _record(node, entry)
            line_num = int(entry.get("line_num") or 0)
        except (ValueError, TypeError, KeyError):
            self.skipped += 1
            return
        if record is None or (self.since is not None and record.logged_at < self.since):
            return
        order = (record.logged_at, node, record.session_id, line_num)
        key: tuple[Any, ...] = (node, order) if record.kind != "pgaudit" else (
            node, record.session_id, record.statement_id, record.substatement_id, record.audit_class, record.command,
            record.statement)
        if key in self._found and record.kind == "pgaudit":
            first_order, first = self._found[key]
            self._found[key] = (first_order, replace(first, objects=first.objects + record.objects))
        else:
            self._found[key] = (order, record)

    def records(self) -> list[AuditRecord]:
        return [record for _, record in sorted(self._found.values(), key=lambda pair: pair[0])]


def _record(node: str, entry: dict[str, Any]) -> AuditRecord | None:
    """The record a log entry of an audited role holds, or None if it is no statement (a connection, a notice)."""
    message = str(entry.get("message", ""))
    common: dict[str, Any] = {
        "node": node, "logged_at": _timestamp(str(entry["timestamp"])), "role": str(entry["user"]),
        "database": entry.get("dbname"), "session_id": str(entry.get("session_id", "")), "pid": entry.get("pid"),
        "application_name": entry.get("application_name"), "remote_host": entry.get("remote_host"),
    }
    if message.startswith("AUDIT: "):
        return _pgaudit_record(message[len("AUDIT: "):], common)
    if entry.get("error_severity") in ("ERROR", "FATAL", "PANIC") and entry.get("statement") is not None:
        return AuditRecord(statement=str(entry["statement"]), kind="error", error=message, **common)
    if entry.get("error_severity") == "LOG" and (match := _STATEMENT.fullmatch(message)):
        detail = str(entry.get("detail") or "")
        parameters = detail.removeprefix("parameters: ") if detail.startswith("parameters: ") else None
        return AuditRecord(statement=match[1], kind="log_statement", parameters=parameters, **common)
    return None


def _pgaudit_record(payload: str, common: dict[str, Any]) -> AuditRecord:
    """pgaudit's CSV payload; the statement and parameters are quoted CSV when they hold commas, quotes or
    newlines. Raises ValueError for a payload that is not pgaudit's shape."""
    try:
        fields = next(csv.reader(io.StringIO(payload, newline=""), strict=True))
    except csv.Error as exc:
        raise ValueError(f"not a pgaudit line ({exc}): {payload[:80]!r}") from exc
    if len(fields) < _PGAUDIT_FIELDS or fields[0] not in ("SESSION", "OBJECT"):
        raise ValueError(f"not a pgaudit line: {payload[:80]!r}")
    parameters = fields[8] if fields[8] not in ("<none>", "<not logged>") else None
    return AuditRecord(
        statement=fields[7], kind="pgaudit", audit_class=fields[3] or None, command=fields[4] or None,
        objects=(fields[6],) if fields[6] else (), parameters=parameters, statement_id=int(fields[1]),
        substatement_id=int(fields[2]), **common,
    )


def _timestamp(text: str) -> dt.datetime:
    """jsonlog's `2025-07-01 03:04:05.678 UTC` (log_timezone; kho sets UTC) or a numeric zone like `+07`."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"unknown timestamp {text!r}")
    moment = dt.datetime.fromisoformat(match[1])
    zone = match[2]
    if zone in ("UTC", "GMT", "Z"):
        return moment.replace(tzinfo=dt.UTC)
    offset = re.fullmatch(r"([+-])(\d\d)(?::?(\d\d))?", zone)
    if offset is None:
        raise ValueError(f"unknown time zone {zone!r} in {text!r}")
    delta = dt.timedelta(hours=int(offset[2]), minutes=int(offset[3] or 0))
    return moment.replace(tzinfo=dt.timezone(delta if offset[1] == "+" else -delta))


# --------------------------------------------------------------------------------------------------- install


def install_pgaudit() -> str:
    """Install Debian's postgresql-N-pgaudit for the PostgreSQL the embedded warehouse runs, when it is missing
    and this is root on apt; returns one line saying what happened (never raises: audit falls back)."""
    fallback = "audit falls back to PostgreSQL's statement logging"
    try:
        bins = find_binaries()
    except KhoError as exc:
        return f"pgaudit: no PostgreSQL found yet ({str(exc).splitlines()[0][:120]}); {fallback}"
    if bins.has_pgaudit:
        return f"pgaudit: installed for PostgreSQL {bins.major} ({bins.pkglibdir})"
    package = f"postgresql-{bins.major}-pgaudit"
    apt = shutil.which("apt-get")
    if bins.source != "system" or not str(bins.bindir).startswith("/usr/lib/postgresql/"):
        return f"pgaudit: the warehouse runs {bins.source} PostgreSQL {bins.major} in {bins.bindir}, which apt " \
               f"cannot extend; {fallback}"
    if apt is None or os.geteuid() != 0:
        return f"pgaudit: not installed; as root run `apt-get install {package}`, until then {fallback}"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", package]):
        done = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"pgaudit: `{' '.join(args[1:])}` failed ({last[0][:160]}); {fallback}"
    if not bins.has_pgaudit:
        return f"pgaudit: {package} installed but {bins.pkglibdir}/pgaudit.so is missing; {fallback}"
    return f"pgaudit: installed {package}; `kho warehouse up` loads it"


def _main(argv: list[str]) -> int:
    """`make setup`'s step: says, on stderr through logging, what it installed or why audit falls back."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if argv != ["install"]:
        log.error("usage: python -m kho.warehouse.audit install")
        return 2
    log.info("%s", install_pgaudit())
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
