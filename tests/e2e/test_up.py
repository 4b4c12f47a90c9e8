"""`kho up` as an operator meets it: the platform started on a KHO_HOME and ports of the test's own, the Airflow UI
used in a real headless Chromium — log in, see kho's DAGs, trigger sync_population from its form, open the
extract_load task's log once the run succeeded and read the ledger line there — then `kho down`, after which no
process `kho up` started is left.

Its own warehouse, not the session's: `kho down` must stop the warehouse, and the session's serves other tests.
Screenshots of each step are kept under KHO_TEST_ARTEFACTS (if set) or the test's tmp_path, printed at the start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kho import airflow_env
from kho.config import KhoConfig
from kho.services import airflow, processes, stack
from tests.conftest import free_ports
from tests.support.browser import artefact_dir, chromium, offline_context

pytestmark = pytest.mark.e2e

DAG = "sync_population"
LEDGER_LINE = re.compile(r"ledger batch \d+ population\.citizens: read (\d+) = new \d+ \+ changed \d+ \+ "
                         r"unchanged \d+ \+ rejected \d+")


@dataclass(frozen=True)
class Platform:
    env: dict[str, str]
    config: KhoConfig
    up_output: str

    @property
    def base_url(self) -> str:
        return airflow_env.api_base_url(self.config)


def kho(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kho.cli", *args], env=env, capture_output=True, text=True,
                          check=False)


def own_environment(home: Path) -> dict[str, str]:
    """This process's environment without any KHO_ or AIRFLOW setting (other tests export theirs), on free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KHO_", "AIRFLOW"))}
    primary, standby, simulator, rest1, rest2, etcd, etcd_peer, api = free_ports(8)
    env.update({
        "KHO_HOME": str(home), "KHO_PG_PORT": str(primary), "KHO_PG_STANDBY_PORT": str(standby),
        "KHO_PATRONI_PORTS": f"{rest1},{rest2}", "KHO_ETCD_PORT": str(etcd), "KHO_ETCD_PEER_PORT": str(etcd_peer),
        "KHO_SIM_PORT": str(simulator), "KHO_SIM_CITIZENS": "200", "KHO_SIM_SEED": "11",
        "KHO_AIRFLOW_PORT": str(api),
    })
    return env


@pytest.fixture
def artefacts(tmp_path: Path) -> Path:
    where = artefact_dir("test_up", tmp_path)
    print(f"\nscreenshots of the Airflow UI: {where}")
    return where


@pytest.fixture
def platform() -> Iterator[Platform]:
    """`kho up` on a home outside pytest's basetemp (the servers run as another user when the tests run as root);
    `kho down` afterwards whatever the test did, and the home removed."""
    home = Path(tempfile.mkdtemp(prefix="kho-test-up-"))
    env = own_environment(home)
    try:
        done = kho(["up"], env)
        assert done.returncode == 0, f"kho up failed:\n{done.stdout}\n{done.stderr}"
        yield Platform(env, KhoConfig.from_env(env), done.stdout)
    finally:
        kho(["down"], env)
        shutil.rmtree(home, ignore_errors=True)


def api_token(platform: Platform, password: str) -> str:
    request = urllib.request.Request(platform.base_url + "/auth/token", method="POST",
                                     data=json.dumps({"username": airflow_env.UI_USER, "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.load(response)["access_token"])


def api_get(platform: Platform, token: str, path: str) -> Any:
    request = urllib.request.Request(platform.base_url + "/api/v2" + path,
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def manual_runs(platform: Platform, token: str) -> dict[str, str]:
    found = api_get(platform, token, f"/dags/{DAG}/dagRuns?run_type=manual&limit=100")
    return {run["dag_run_id"]: run["state"] for run in found["dag_runs"]}


def wait_for_end(platform: Platform, token: str, run_id: str) -> str:
    """The run's final state, polled from Airflow's REST API (pytest-timeout bounds the wait, not the test)."""
    while (state := manual_runs(platform, token).get(run_id)) not in ("success", "failed"):
        time.sleep(3)
    return str(state)


def log_in(page: Any, platform: Platform, password: str, shots: Path) -> None:
    page.goto(platform.base_url)
    page.get_by_label("Username").fill(airflow_env.UI_USER)
    page.get_by_label("Password").fill(password)
    page.screenshot(path=shots / "1-login.png")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def see_dags(page: Any, platform: Platform, shots: Path) -> list[str]:
    from kho.status import KHO_DAGS

    page.goto(platform.base_url + "/dags")
    for dag_id in KHO_DAGS:
        page.get_by_role("link", name=dag_id, exact=True).first.wait_for()
    page.screenshot(path=shots / "2-dags.png", full_page=True)
    return [dag_id for dag_id in KHO_DAGS if page.get_by_role("link", name=dag_id, exact=True).count()]


def trigger_from_form(page: Any, platform: Platform, shots: Path) -> None:
    page.goto(f"{platform.base_url}/dags/{DAG}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("full_refresh").wait_for()
    page.screenshot(path=shots / "3-trigger-form.png")
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    dialog.wait_for(state="hidden")
    page.screenshot(path=shots / "4-triggered.png")


def see_run(page: Any, platform: Platform, run_id: str, state: str, shots: Path) -> None:
    page.goto(f"{platform.base_url}/dags/{DAG}/runs/{urllib.parse.quote(run_id, safe='')}")
    page.get_by_text(run_id).first.wait_for()
    page.get_by_text(state.capitalize(), exact=True).first.wait_for()
    page.screenshot(path=shots / "5-run.png", full_page=True)


def read_task_log(page: Any, platform: Platform, run_id: str, task_id: str, shots: Path) -> str:
    quoted = urllib.parse.quote(run_id, safe="")
    page.goto(f"{platform.base_url}/dags/{DAG}/runs/{quoted}/tasks/{task_id}")
    page.get_by_text(re.compile(r"ledger batch \d+")).first.wait_for()
    page.screenshot(path=shots / "6-task-log.png", full_page=True)
    return str(page.inner_text("body"))


def test_kho_up_serves_the_ui_where_a_triggered_sync_logs_its_ledger_line_until_kho_down_stops_it_all(
    platform: Platform, artefacts: Path
) -> None:
    config = platform.config
    password_file = airflow_env.passwords_file(config)
    assert platform.base_url in platform.up_output and str(password_file) in platform.up_output
    password = json.loads(password_file.read_text(encoding="utf-8"))[airflow_env.UI_USER]
    token = api_token(platform, password)
    before = set(manual_runs(platform, token))

    with chromium() as browser:
        context, blocked = offline_context(browser, viewport={"width": 1400, "height": 900})
        page = context.new_page()
        log_in(page, platform, password, artefacts)
        listed = see_dags(page, platform, artefacts)
        trigger_from_form(page, platform, artefacts)
        new = set(manual_runs(platform, token)) - before
        assert len(new) == 1, f"the form started {len(new)} manual runs of {DAG}"
        run_id = new.pop()
        state = wait_for_end(platform, token, run_id)
        see_run(page, platform, run_id, state, artefacts)
        text = read_task_log(page, platform, run_id, "citizens.extract_load", artefacts) if state == "success" \
            else ""
        context.close()

    from kho.status import KHO_DAGS

    assert listed == list(KHO_DAGS)
    assert state == "success", f"{DAG} run {run_id} ended {state}; logs under {config.airflow_home / 'logs'}"
    assert LEDGER_LINE.search(text), f"no ledger line in the UI's task log:\n{text[-3000:]}"
    assert not blocked, f"the UI asked the network for {blocked}"

    again = kho(["up"], platform.env)
    assert again.returncode == 0 and "nothing changed" in again.stdout, again.stdout + again.stderr

    started = {s.name: processes.running(s) for s in [*airflow.services(config), stack.simulator_service(config)]}
    assert all(started.values()), f"not running before kho down: {started}"
    down = kho(["down"], platform.env)
    assert down.returncode == 0, down.stderr
    for name, pid in started.items():
        assert f"stopped {name} (pid {pid})" in down.stdout
        assert not processes.group_members(pid or 0), f"{name}'s processes outlived kho down"
    assert "stopped the warehouse" in down.stdout and not stack.warehouse_running(config)
    assert not any(s.pid_file.exists() for s in airflow.services(config))
    assert kho(["down"], platform.env).stdout.strip() == "kho down: nothing was running"
