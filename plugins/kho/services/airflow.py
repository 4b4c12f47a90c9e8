"""Airflow 3 as four long-running processes — api-server, scheduler, dag-processor, triggerer — on the environment
`kho.airflow_env` derives (one port, 127.0.0.1 only, the LocalExecutor sized to the CPUs), with the health checks
and the unpausing `kho up` needs. Airflow's own CLI starts and changes everything; kho only reads its metadata DB.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kho import airflow_env
from kho.config import KhoConfig
from kho.errors import KhoError
from kho.services.processes import Service, tail

HEALTH_PATH = "/api/v2/monitor/health"
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
"""What Airflow's health endpoint reports on; `kho up` waits for each to be healthy (the scheduler's heartbeat)."""


class ServiceFailed(KhoError):
    """A background process died while starting, or never became healthy; the message names its log file."""


def run_dir(config: KhoConfig) -> Path:
    """Pid and log files of the processes `kho up` starts (Airflow's own task logs stay in AIRFLOW_HOME/logs)."""
    return config.airflow_home / "run"


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def services(config: KhoConfig) -> list[Service]:
    """The four components, in the order they start. Scheduler and triggerer serve no logs of their own
    (`--skip-serve-logs`: that server binds every interface); the API server reads the task logs from disk."""
    where, binary = run_dir(config), airflow_bin()
    return [
        Service("airflow api-server", (binary, "api-server"), where, marker="airflow"),  # retitles itself
        Service("airflow scheduler", (binary, "scheduler", "--skip-serve-logs"), where, marker="scheduler"),
        Service("airflow dag-processor", (binary, "dag-processor"), where, marker="dag-processor"),
        Service("airflow triggerer", (binary, "triggerer", "--skip-serve-logs"), where, marker="triggerer"),
    ]


def health(config: KhoConfig) -> dict[str, Any] | None:
    """Airflow's health report from its API server, or None if nothing answers there."""
    try:
        with urllib.request.urlopen(airflow_env.api_base_url(config) + HEALTH_PATH, timeout=5) as response:
            found: dict[str, Any] = json.load(response)
            return found
    except (OSError, ValueError):
        return None


def unhealthy(report: Mapping[str, Any] | None) -> list[str]:
    """The components the health report does not call healthy (all of them if there is no report)."""
    if report is None:
        return ["api-server"]
    return [name for name in COMPONENTS if (report.get(name) or {}).get("status") != "healthy"]


@dataclass(frozen=True)
class Starting:
    """A service `kho up` launched (process set) or found running (process None)."""

    service: Service
    process: subprocess.Popen[bytes] | None


def check_alive(starting: Sequence[Starting], is_running: Any) -> None:
    """A process that died while starting fails `kho up` in one line naming its log file (its last line too)."""
    for item in starting:
        if item.process is not None:
            code = item.process.poll()
            if code is None:
                continue
            how = f"exited while starting (exit code {code})"
        elif is_running(item.service) is None:
            how = "stopped while the others started"
        else:
            continue
        last = next((line for line in reversed(tail(item.service.log_file, 40)) if line.strip()), "")
        why = f" (last line: {last.strip()[:200]})" if last else ""
        raise ServiceFailed(f"{item.service.name} {how}; see {item.service.log_file}{why}")


def wait_healthy(config: KhoConfig, starting: Sequence[Starting], is_running: Any, timeout_s: float) -> None:
    """Until the API server answers and reports the metadata DB, scheduler, triggerer and dag-processor healthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        check_alive(starting, is_running)
        waiting = unhealthy(health(config))
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise ServiceFailed(f"Airflow not healthy after {timeout_s:.0f} s ({', '.join(waiting)} not yet); see "
                                f"the logs in {run_dir(config)}")
        time.sleep(1.0)


def kho_dags(config: KhoConfig) -> list[tuple[str, bool]]:
    """The DAGs Airflow has parsed from kho's dags folder (not stale): (dag_id, paused), from its metadata DB."""
    folder = str(config.project_root / "dags")
    try:
        with sqlite3.connect(f"{(config.airflow_home / 'airflow.db').as_uri()}?mode=ro", uri=True, timeout=10) as db:
            rows = db.execute("SELECT dag_id, is_paused, fileloc FROM dag WHERE NOT is_stale").fetchall()
    except sqlite3.Error:
        return []
    return sorted((str(d), bool(p)) for d, p, f in rows if str(f or "").startswith(folder + "/"))


def import_errors(config: KhoConfig) -> list[str]:
    try:
        with sqlite3.connect(f"{(config.airflow_home / 'airflow.db').as_uri()}?mode=ro", uri=True, timeout=10) as db:
            return [f"{f}: {(s or '').strip().splitlines()[-1:]}"
                    for f, s in db.execute("SELECT filename, stacktrace FROM import_error").fetchall()]
    except sqlite3.Error:
        return []


def wait_parsed(config: KhoConfig, expected: Sequence[str], starting: Sequence[Starting], is_running: Any,
                timeout_s: float) -> list[tuple[str, bool]]:
    """Until the dag-processor has put every DAG kho ships into the metadata DB; an import error fails at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        check_alive(starting, is_running)
        found = kho_dags(config)
        missing = sorted(set(expected) - {d for d, _ in found})
        if not missing:
            return found
        errors = import_errors(config)
        if errors:
            raise ServiceFailed(f"Airflow cannot import kho's DAGs: {'; '.join(errors)}")
        if time.monotonic() > deadline:
            raise ServiceFailed(f"the dag-processor has not parsed {', '.join(missing)} after {timeout_s:.0f} s; see "
                                f"{run_dir(config) / 'airflow-dag-processor.log'}")
        time.sleep(1.0)


def unpause(dag_ids: Sequence[str], env: Mapping[str, str]) -> None:
    """`airflow dags unpause` for these DAGs at once (Airflow's CLI, one regex), so the schedule runs them."""
    if not dag_ids:
        return
    pattern = "^(" + "|".join(re.escape(d) for d in dag_ids) + ")$"
    done = subprocess.run([airflow_bin(), "dags", "unpause", "--treat-dag-id-as-regex", "-y", pattern],
                          env=dict(env), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServiceFailed(f"`airflow dags unpause` failed: {last[0][:300]}")
