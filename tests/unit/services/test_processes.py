"""Pid files of the processes `kho up` leaves running: a live process is found, a dead one or a reused pid is not,
and stopping takes its whole process group."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from kho.services.processes import Service, group_members, read_pid, running, start, stop, write_pid

SLEEPER = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); " \
    "time.sleep(600)"
"""A process with a child of its own, as the API server has workers and the scheduler task processes."""


def service(tmp_path: Path, marker: str = "kho-test-sleeper") -> Service:
    return Service("test sleeper", (sys.executable, "-c", SLEEPER, marker), tmp_path / "run", marker=marker)


def test_a_started_service_is_found_running_and_logs_to_its_file(tmp_path: Path) -> None:
    svc = service(tmp_path)
    process = start(svc, os.environ)
    try:
        assert running(svc) == process.pid
        assert svc.pid_file.read_text(encoding="utf-8").splitlines() == [str(process.pid), svc.marker]
        assert svc.log_file.exists() and svc.pid_file.parent == tmp_path / "run"
    finally:
        stop(svc)
        process.wait()


def test_stop_ends_the_process_and_its_children_and_removes_the_pid_file(tmp_path: Path) -> None:
    svc = service(tmp_path)
    process = start(svc, os.environ)
    while len(group_members(process.pid)) < 2:  # its child has started
        time.sleep(0.05)
    assert stop(svc) == process.pid
    process.wait()
    assert not group_members(process.pid)
    assert not svc.pid_file.exists() and running(svc) is None


def test_stop_with_nothing_running_says_none(tmp_path: Path) -> None:
    assert stop(service(tmp_path)) is None


def test_a_pid_whose_command_line_is_another_program_s_is_not_ours(tmp_path: Path) -> None:
    """After a reboot the recorded pid may belong to anything: its command line must carry the marker."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        write_pid(tmp_path / "x.pid", other.pid, "kho-test-sleeper")
        assert read_pid(tmp_path / "x.pid", "kho-test-sleeper") is None
        assert read_pid(tmp_path / "x.pid", "time.sleep(600)") is None  # the file's own marker decides
        write_pid(tmp_path / "y.pid", other.pid, "time.sleep(600)")
        assert read_pid(tmp_path / "y.pid", "anything") == other.pid
    finally:
        other.kill()
        other.wait()


def test_a_dead_process_or_a_garbled_pid_file_is_not_running(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_pid(tmp_path / "gone.pid", gone.pid, "")
    (tmp_path / "garbled.pid").write_text("not a pid\n", encoding="utf-8")
    assert read_pid(tmp_path / "gone.pid", sys.executable) is None
    assert read_pid(tmp_path / "garbled.pid", "x") is None
    assert read_pid(tmp_path / "missing.pid", "x") is None


ORPHANING = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])"
"""A leader that starts a child and exits: what a crashed API server leaves of its workers."""


def test_stop_takes_the_group_a_dead_leader_left_behind(tmp_path: Path) -> None:
    svc = Service("test orphaner", (sys.executable, "-c", ORPHANING), tmp_path / "run", marker="orphaner")
    process = start(svc, os.environ)
    process.wait()  # the leader is gone, its child lives on in the group
    assert running(svc) is None and len(group_members(process.pid)) == 1
    assert stop(svc, grace_s=10.0) == process.pid
    assert not group_members(process.pid) and not svc.pid_file.exists()
    assert stop(svc) is None  # nothing left: nothing said stopped
