"""Background processes that outlive the command that started them: a pid file and a log file each, as a daemon
supervisor would keep them, so `kho down` (another process, later) finds and stops exactly what `kho up` started.

A pid file holds the pid and, on its second line, a marker the process's command line must contain: a pid reused by
an unrelated program after a reboot is never taken for ours, never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_S = 30.0
"""How long a process gets to finish after SIGTERM (a scheduler hands its running tasks back) before SIGKILL."""


@dataclass(frozen=True)
class Service:
    """One background process kho manages: its name for people, its command, and where its pid and log live."""

    name: str
    argv: tuple[str, ...]
    run_dir: Path
    marker: str
    """What its command line contains while it runs (a server may retitle itself: `airflow api_server -- …`)."""

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.slug}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.slug}.log"

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-")


def read_pid(pid_file: Path, marker: str) -> int | None:
    """The pid recorded in `pid_file` if that process lives (not a zombie) and its command line contains `marker`
    (the one the file records, if any); else None."""
    try:
        lines = pid_file.read_text(encoding="utf-8").splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    recorded = lines[1] if len(lines) > 1 else marker
    return pid if _lives(pid, recorded or marker) else None


def _lives(pid: int, marker: str) -> bool:
    proc = Path("/proc") / str(pid)
    try:
        if (proc / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return marker in cmdline


def running(service: Service) -> int | None:
    return read_pid(service.pid_file, service.marker)


def start(service: Service, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start it detached (its own session, so it and its children outlive this command and stop as one group),
    output appended to its log file, and record its pid."""
    service.run_dir.mkdir(parents=True, exist_ok=True)
    with service.log_file.open("ab") as log:
        process = subprocess.Popen(service.argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    write_pid(service.pid_file, process.pid, service.marker)
    return process


def _recorded_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text(encoding="utf-8").splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def write_pid(pid_file: Path, pid: int, marker: str) -> None:
    temporary = pid_file.with_suffix(".tmp")
    temporary.write_text(f"{pid}\n{marker}\n", encoding="utf-8")
    temporary.replace(pid_file)


def stop(service: Service, grace_s: float = STOP_GRACE_S) -> int | None:
    """SIGTERM its process group, SIGKILL what is left after `grace_s`; remove the pid file. Returns the pid it
    stopped, or None if it was not running.

    A leader that died leaves its group behind (an API server's workers, the LocalExecutor's task processes): those
    are stopped too. Linux never hands out a pid still in use as a process group's id, so the group is ours."""
    pid = running(service)
    if pid is None:
        recorded = _recorded_pid(service.pid_file)
        pid = recorded if recorded is not None and group_members(recorded) else None
    if pid is not None:
        _signal_group(pid, signal.SIGTERM)
        if not _wait_group_gone(pid, grace_s):
            _signal_group(pid, signal.SIGKILL)
            _wait_group_gone(pid, 5.0)
    service.pid_file.unlink(missing_ok=True)
    return pid


def _wait_group_gone(pid: int, timeout_s: float) -> bool:
    """Until no process of the group is left (the leader may go before its workers)."""
    deadline = time.monotonic() + timeout_s
    while group_members(pid) or _lives(pid, ""):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """The group led by `pid` (its workers, the LocalExecutor's task processes) or, if it leads none, the process."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def group_members(pid: int) -> list[int]:
    """Live processes in the process group `pid` leads (what `stop` signals), for checks that nothing is left."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pid:
            found.append(int(entry.name))
    return found


def tail(path: Path, lines: int = 5) -> Sequence[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return []
