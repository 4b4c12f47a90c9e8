"""What `kho up` reads of Airflow and of the processes it starts: the health report, a process that dies while
starting (one line naming its log), and `kho down` with nothing running."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from kho.cli import main
from kho.services.airflow import ServiceFailed, Starting, check_alive, unhealthy
from kho.services.processes import Service, running, start


def test_only_a_report_calling_every_component_healthy_is_healthy() -> None:
    healthy = {name: {"status": "healthy"} for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")}
    assert unhealthy(healthy) == []
    assert unhealthy({**healthy, "scheduler": {"status": "unhealthy"}}) == ["scheduler"]
    assert unhealthy({**healthy, "triggerer": {"status": None}}) == ["triggerer"]
    assert unhealthy(None) == ["api-server"]


def test_a_process_that_dies_while_starting_fails_in_one_line_naming_its_log(tmp_path: Path) -> None:
    svc = Service("airflow scheduler", (sys.executable, "-c", "print('cannot reach the metadata DB'); exit(3)"),
                  tmp_path, marker="-c")
    process = start(svc, os.environ)
    process.wait()
    with pytest.raises(ServiceFailed) as failed:
        check_alive([Starting(svc, process)], running)
    message = str(failed.value)
    assert "\n" not in message
    assert "airflow scheduler exited while starting (exit code 3)" in message
    assert str(svc.log_file) in message and "cannot reach the metadata DB" in message


def test_kho_down_with_nothing_running_says_so_and_succeeds(nothing_running: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["down"]) == 0
    assert capsys.readouterr().out.strip() == "kho down: nothing was running"
