"""The test harness keeps its own promises (tests/conftest.py): a skip fails a run that allows none, a skip for what
the machine cannot have is listed as not tested, a setting left in os.environ fails the run, a free port stays
reserved until the session ends. Each run here is a real pytest session in a subprocess with kho's conftest."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import NO_SKIP, free_ports

CONFTEST = (Path(__file__).parents[1] / "conftest.py").read_text(encoding="utf-8")


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, test: str, *, no_skip: bool
        ) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_case=test)
    if no_skip:
        monkeypatch.setenv(NO_SKIP, "1")
    else:
        monkeypatch.delenv(NO_SKIP, raising=False)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")


SKIPS = """
import pytest

def test_passes():
    pass

def test_skips():
    pytest.skip("the registry is not reachable from here")

@pytest.fixture
def lacking():
    pytest.skip("nothing to set up")

def test_skips_in_its_fixture(lacking):
    pass
"""


def test_a_skip_fails_a_run_that_allows_none(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(pytester, monkeypatch, SKIPS, no_skip=True)
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*KHO_TEST_NO_SKIP=1, which allows no skip here: the registry is not reachable*"])


def test_without_the_setting_a_skip_is_a_skip_and_says_so(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(pytester, monkeypatch, SKIPS, no_skip=False)
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*skips are not failures in this run (KHO_TEST_NO_SKIP unset)*"])


def test_a_skip_for_what_the_machine_cannot_have_is_listed_as_not_tested(pytester: pytest.Pytester,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(pytester, monkeypatch, """
import pytest

@pytest.mark.skipif(True, reason="the switch to an unprivileged OS user only happens as root")
def test_as_root():
    pass
""", no_skip=True)
    result.assert_outcomes(skipped=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*1 SKIPPED: NOT TESTED ON THIS MACHINE*",
                                 "test_case.py::test_as_root: the switch to an unprivileged OS user*"])


def test_a_setting_left_in_the_environment_fails_the_run(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(pytester, monkeypatch, """
import os

def test_leaves_a_setting():
    os.environ["KHO_LEFT_BEHIND"] = "1"
""", no_skip=True)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*os.environ differs from the session's start in KHO_LEFT_BEHIND*"])


def test_a_free_port_is_kept_from_other_programs_but_not_from_a_server_that_reuses_it() -> None:
    (port,) = free_ports(1)
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", port))
    server = ThreadingHTTPServer(("127.0.0.1", port), BaseHTTPRequestHandler)  # binds with SO_REUSEADDR
    server.server_close()
    for _ in range(2000):
        with socket.socket() as anyone:
            anyone.bind(("127.0.0.1", 0))
            assert anyone.getsockname()[1] != port
