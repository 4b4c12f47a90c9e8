"""`kho up` / `kho down`: the whole platform started and left running — the embedded warehouse, the simulated
registries and Airflow's four processes, kho's DAGs unpaused so the nightly schedule runs — and stopped again.

Both are idempotent: `up` starts only what is not running (and says when that was nothing), `down` stops only what
runs (and says when that was nothing). A simulator kho did not start is used, never stopped.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from kho import airflow_env
from kho.config import KhoConfig
from kho.services import airflow, processes
from kho.services.processes import Service

STARTUP_TIMEOUT_S = 600.0
"""How long `kho up` waits for a process to answer before it gives up naming its log: a cold Airflow on a loaded
two-core machine takes minutes, a broken one never answers."""

Say = Callable[[str], None]


def _say(line: str) -> None:
    print(line, flush=True)


@dataclass
class UpReport:
    started: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    unpaused: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.started or self.unpaused)


def simulator_service(config: KhoConfig) -> Service:
    return Service("simulated registries", (sys.executable, "-m", "kho.cli", "simulate", "serve"),
                   airflow.run_dir(config), marker="simulate serve")


def _uses_simulator(config: KhoConfig) -> bool:
    from kho.sources import REGISTRIES

    return any(not config.registry_settings(r.slug).base_url for r in REGISTRIES)


def simulator_answers(config: KhoConfig) -> bool:
    from kho.simulator.server import HEALTH_PATH

    try:
        with urllib.request.urlopen(config.simulator_url + HEALTH_PATH, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def warehouse_running(config: KhoConfig) -> bool:
    from kho.warehouse import embedded

    lay = embedded.layout(config)
    if any(embedded.postmaster_pid(m) or embedded.patroni_pid(m) for m in lay.members):
        return True
    return lay.etcd_pidfile.exists() and processes.read_pid(lay.etcd_pidfile, str(lay.etcd_dir)) is not None


def up(config: KhoConfig, say: Say = _say, timeout_s: float = STARTUP_TIMEOUT_S) -> UpReport:
    """Start what is not running, wait until all of it answers, unpause kho's DAGs; print the UI's address."""
    from kho.warehouse import embedded

    report = UpReport()
    was_up = warehouse_running(config)
    embedded.up(config)
    (report.running if was_up else report.started).append("warehouse")
    say(f"warehouse: {'already running' if was_up else 'started'} (`kho warehouse status` for its nodes)")
    if _uses_simulator(config):
        _simulator_up(config, say, report, timeout_s)
    _airflow_up(config, say, report, timeout_s)
    if not report.changed:
        say("kho up: everything was already running; nothing changed")
    say(f"Airflow UI: {airflow_env.api_base_url(config)}  user {airflow_env.UI_USER!r}, password in "
        f"{airflow_env.passwords_file(config)}")
    say(f"logs: {airflow.run_dir(config)};  `kho down` stops it all")
    return report


def _simulator_up(config: KhoConfig, say: Say, report: UpReport, timeout_s: float) -> None:
    service = simulator_service(config)
    pid = processes.running(service)
    if simulator_answers(config):
        report.running.append(service.name)
        whose = f"pid {pid}" if pid else "not started by kho up: left alone by kho down"
        say(f"{service.name}: already answering on {config.simulator_url} ({whose})")
        return
    if pid is not None:  # ours, alive but not answering: a restart is the honest repair
        processes.stop(service)
    config.ensure_simulator_credentials()
    process = processes.start(service, os.environ)
    starting = [airflow.Starting(service, process)]
    deadline = time.monotonic() + timeout_s
    while not simulator_answers(config):
        airflow.check_alive(starting, processes.running)
        if time.monotonic() > deadline:
            raise airflow.ServiceFailed(f"{service.name} not answering on {config.simulator_url} after "
                                        f"{timeout_s:.0f} s; see {service.log_file}")
        time.sleep(0.5)
    report.started.append(service.name)
    say(f"{service.name}: started on {config.simulator_url} (pid {process.pid}, log {service.log_file})")


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((airflow_env.LISTEN_HOST, port))
        except OSError:
            return True
    return False


def _airflow_up(config: KhoConfig, say: Say, report: UpReport, timeout_s: float) -> None:
    from kho.status import KHO_DAGS

    airflow_env.prepare(config)  # exports Airflow's environment here, migrates its DB once, writes the manifest
    env = {**os.environ, **airflow_env.TASK_LOG_ENVIRONMENT}
    starting = []
    for service in airflow.services(config):
        pid = processes.running(service)
        if pid is not None:
            report.running.append(service.name)
            starting.append(airflow.Starting(service, None))
            continue
        if service.argv[1] == "api-server" and _port_taken(config.airflow_port):
            raise airflow.ServiceFailed(f"cannot start the Airflow API server on {airflow_env.LISTEN_HOST}:"
                                        f"{config.airflow_port}: another program uses the port. Stop it or set "
                                        "KHO_AIRFLOW_PORT to a free port")
        starting.append(airflow.Starting(service, processes.start(service, env)))
        report.started.append(service.name)
    airflow.wait_healthy(config, starting, processes.running, timeout_s)
    for item in starting:
        pid = processes.running(item.service)
        state = "started" if item.process is not None else "already running"
        say(f"{item.service.name}: {state} (pid {pid}, log {item.service.log_file})")
    parsed = airflow.wait_parsed(config, KHO_DAGS, starting, processes.running, timeout_s)
    paused = [dag_id for dag_id, is_paused in parsed if is_paused]
    airflow.unpause(paused, env)
    report.unpaused = paused
    say(f"DAGs: {len(parsed)} from {config.project_root / 'dags'} scheduled"
        + (f" (unpaused {', '.join(paused)})" if paused else ", none paused"))
    sizing = env.get("AIRFLOW__CORE__PARALLELISM"), env.get("AIRFLOW__API__WORKERS")
    say(f"Airflow: LocalExecutor, {sizing[0]} tasks at once, {sizing[1]} API worker(s), on "
        f"{airflow_env.LISTEN_HOST} only")


def ui_password(config: KhoConfig) -> str | None:
    """The UI user's generated password (SimpleAuthManager's file), or None before the API server first ran."""
    try:
        found = json.loads(airflow_env.passwords_file(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = found.get(airflow_env.UI_USER) if isinstance(found, dict) else None
    return str(value) if value else None


def down(config: KhoConfig, say: Say = _say) -> list[str]:
    """Stop Airflow (scheduler first: it hands its running tasks back), the simulator kho up started, then the
    warehouse; returns what it stopped."""
    from kho.warehouse import embedded

    stopped = []
    by_name = {s.name: s for s in airflow.services(config)}
    order = ("airflow scheduler", "airflow triggerer", "airflow dag-processor", "airflow api-server")
    for service in [*(by_name[n] for n in order), simulator_service(config)]:
        pid = processes.stop(service)
        if pid is not None:
            stopped.append(service.name)
            say(f"stopped {service.name} (pid {pid})")
    if warehouse_running(config):
        embedded.down(config)
        stopped.append("warehouse")
        say("stopped the warehouse (every node, then etcd)")
    if not stopped:
        say("kho down: nothing was running")
    return stopped
