"""Session-wide real infrastructure: one embedded primary + standby for every test that needs a warehouse.

Starting PostgreSQL twice, migrating Airflow and importing GX are the expensive steps; each happens once per
session. Tests that write isolate themselves in a database of their own (`fresh_db_config`).

A skip is a promise not tested. With `KHO_TEST_NO_SKIP=1` (what `make test` and CI set) a skipped test fails,
unless its reason is in `TOLERATED_SKIPS`: something this machine cannot have. Those are listed at the end of the
run as untested, never counted as passed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kho.config import KhoConfig

# --- skips ------------------------------------------------------------------------------------------------------

NO_SKIP = "KHO_TEST_NO_SKIP"


def _pgaudit_required() -> str | None:
    """Where `make setup` installs pgaudit (root with apt-get, as in CI), a missing pgaudit is a setup failure."""
    if os.geteuid() == 0 and shutil.which("apt-get"):
        return ("this machine runs as root with apt-get, where `make setup` installs pgaudit (for Debian's "
                "PostgreSQL: `apt-get install postgresql`); run `make setup` and read what it says")
    return None


def _chromium_required() -> str | None:
    """Where `make test` installs Chromium (root with apt-get), a missing browser is a setup failure."""
    if os.geteuid() == 0 and shutil.which("apt-get"):
        return ("this machine runs as root with apt-get, where `make test` installs Debian's chromium: run "
                "`python -m tests.support.browser install` and read what it says")
    return None


TOLERATED_SKIPS: dict[str, Callable[[], str | None]] = {
    # the start of a skip's reason: returns why this machine should have run the test (None: the skip is tolerated)
    "the switch to an unprivileged OS user only happens as root": lambda: None,
    "no system PostgreSQL on this machine": lambda: None,  # kho runs pgserver's binaries; their test runs instead
    "this PostgreSQL has neither ICU nor a vi_VN locale": lambda: None,  # the documented fallback to byte order
    "pgaudit is not installed for this PostgreSQL": _pgaudit_required,
    "no Chromium on this machine": _chromium_required,
}
_tolerated = pytest.StashKey[list[tuple[str, str]]]()


def _no_skip() -> bool:
    return os.environ.get(NO_SKIP, "") not in ("", "0")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    if hasattr(report, "wasxfail"):
        return f"expected to fail (xfail) {report.wasxfail}".rstrip()
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def _refuse_skip(report: pytest.TestReport | pytest.CollectReport, config: pytest.Config) -> None:
    """Turn a skip into a failure in a no-skip run, unless the machine cannot have what it lacks."""
    if not (report.skipped and _no_skip()):
        return
    reason = _skip_reason(report)
    check = next((c for prefix, c in TOLERATED_SKIPS.items() if reason.startswith(prefix)), None)
    if check is not None and (required := check()) is None:
        config.stash.setdefault(_tolerated, []).append((report.nodeid, reason))
        return
    why = required if check is not None else "a skip means a promise this run did not test"
    report.outcome = "failed"
    report.longrepr = f"skipped in a run with {NO_SKIP}=1, which allows no skip here: {reason}\n({why})"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _refuse_skip(report, item.config)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector
                               ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _refuse_skip(report, collector.config)
    return report


# --- ports ------------------------------------------------------------------------------------------------------

_reserved: list[socket.socket] = []


def free_ports(n: int) -> list[int]:
    """n distinct free ports, each held until the session ends by a socket bound to it (SO_REUSEADDR, never
    listening). The kernel then hands it to nobody else (no bind to port 0, no outgoing connection's local port),
    so nothing takes it between now and the server's start; PostgreSQL and the simulator bind with SO_REUSEADDR
    and listen on it as if it were free."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
    _reserved.extend(sockets)
    return [int(s.getsockname()[1]) for s in sockets]


def free_port() -> int:
    return free_ports(1)[0]


# --- the process environment -------------------------------------------------------------------------------------

ENVIRONMENT_NOT_OURS = frozenset({
    "PYTEST_CURRENT_TEST",  # pytest's own bookkeeping
    "SF_PARTNER",  # GX's SQL execution engine sets it whenever it is made, in kho's runs as in tests
})
_environment_at_start = pytest.StashKey[dict[str, str]]()
_environment_left = pytest.StashKey[list[str]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_environment_at_start] = dict(os.environ)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Every fixture restores what it set in os.environ: a setting left behind would reach the tests after it."""
    while _reserved:
        _reserved.pop().close()
    before = session.config.stash.get(_environment_at_start, None)
    if before is None:
        return
    changed = (before.keys() | os.environ.keys()) - ENVIRONMENT_NOT_OURS
    left = sorted(k for k in changed if before.get(k) != os.environ.get(k))
    if left:
        session.config.stash[_environment_left] = left
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    left = config.stash.get(_environment_left, [])
    if left:
        terminalreporter.section("ENVIRONMENT NOT RESTORED", sep="!", red=True)
        terminalreporter.write_line(f"os.environ differs from the session's start in {', '.join(left)}: a fixture "
                                    "set them and did not take them back", red=True)
    tolerated = config.stash.get(_tolerated, [])
    if tolerated:
        terminalreporter.section(f"{len(tolerated)} SKIPPED: NOT TESTED ON THIS MACHINE, which cannot have what "
                                 "they need", sep="!", red=True)
        for nodeid, reason in tolerated:
            terminalreporter.write_line(f"{nodeid}: {reason}", yellow=True)
    elif not _no_skip() and terminalreporter.stats.get("skipped"):
        terminalreporter.write_line(f"skips are not failures in this run ({NO_SKIP} unset); `make test` refuses "
                                    "them", yellow=True)


# --- the session's warehouse ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kho_home() -> Iterator[Path]:
    """Outside pytest's basetemp: pytest resets that tree to 0700 when another session starts, which would cut
    the servers (running as an unprivileged user) off from their own files mid-run."""
    home = Path(tempfile.mkdtemp(prefix="kho-test-home-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def kho_config(kho_home: Path) -> Iterator[KhoConfig]:
    """A running embedded warehouse (primary + streaming standby) on free ports, torn down at the end."""
    from kho.warehouse import embedded

    primary, standby, simulator, rest1, rest2, etcd, etcd_peer = free_ports(7)
    config = KhoConfig.from_env({
        "KHO_HOME": str(kho_home),
        "KHO_PG_PORT": str(primary),
        "KHO_PG_STANDBY_PORT": str(standby),
        "KHO_PATRONI_PORTS": f"{rest1},{rest2}",
        "KHO_ETCD_PORT": str(etcd),
        "KHO_ETCD_PEER_PORT": str(etcd_peer),
        "KHO_SIM_PORT": str(simulator),
        "KHO_SIM_CITIZENS": "3000",
        "KHO_SIM_SEED": "7",
    })
    try:
        embedded.up(config)  # inside the try: a start that fails half way (primary up, standby not) is stopped too
        yield config
    finally:
        embedded.down(config)


@contextlib.contextmanager
def new_database(kho_config: KhoConfig) -> Iterator[KhoConfig]:
    """The session warehouse, pointed at a new empty database (replicated like any other), dropped afterwards.

    The administrator creates it, owned by the application login (which may not create databases itself).
    """
    from kho.warehouse.connection import connect_admin

    name = f"t_{uuid.uuid4().hex[:12]}"
    wh = kho_config.warehouse
    with connect_admin(wh, dbname="postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(wh.user)))
    yield dataclasses.replace(kho_config, warehouse=dataclasses.replace(wh, dbname=name))
    with connect_admin(wh, dbname="postgres") as conn, \
            contextlib.suppress(psycopg.Error):  # a leftover database only costs disk in a temp home
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def empty_db_config(kho_config: KhoConfig) -> Iterator[KhoConfig]:
    """A new database of its own for this test with nothing in it, not migrated: for tests of the migrations."""
    with new_database(kho_config) as config:
        yield config


@pytest.fixture
def fresh_db_config(kho_config: KhoConfig) -> Iterator[KhoConfig]:
    """A new database of its own for this test, migrated as `kho warehouse up` migrates the warehouse's: the kho
    schema and every entity's raw table."""
    from kho.warehouse.connection import connect
    from kho.warehouse.migrations import migrate

    with new_database(kho_config) as config:
        with connect(config.warehouse, autocommit=True) as conn:
            migrate(conn)
        yield config
