"""The warehouse's own DAGs run for real (dag.test) against the session's Patroni cluster: warehouse_health passes on
a healthy cluster and fails at once, one line per alert, when a threshold is crossed; warehouse_backup takes a
pgBackRest backup and proves it restores, and fails naming the damaged file when the repository is corrupted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from kho.config import KhoConfig
from kho.demo import DagOutcome, run_dag

pytestmark = pytest.mark.e2e


def task_instances(outcome: DagOutcome) -> dict[str, Any]:
    """Each task instance of the run (state, try_number), from Airflow's metadata DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == outcome.dag_id,
                                                           TaskInstance.run_id == outcome.run_id)).all()
        return {ti.task_id: (str(ti.state), ti.try_number) for ti in found}


def xcom(outcome: DagOutcome, task_id: str) -> Any:
    """What the task returned, as Airflow stored it."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(select(XComModel).where(
            XComModel.dag_id == outcome.dag_id, XComModel.run_id == outcome.run_id, XComModel.task_id == task_id,
            XComModel.key == "return_value")).one()
        return XComModel.deserialize_value(row)


@pytest.fixture
def no_retries(dagbag: Any) -> Iterator[None]:
    """A failure that must fail again on retry (damage in the repository) is not waited out in the test."""
    dag = dagbag.get_dag("warehouse_backup")
    retries = {task.task_id: task.retries for task in dag.tasks}
    for task in dag.tasks:
        task.retries = 0
    try:
        yield
    finally:
        for task in dag.tasks:
            task.retries = retries[task.task_id]


def test_warehouse_health_passes_on_the_healthy_cluster_and_logs_what_it_checked(
    kho_config: KhoConfig, dagbag: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from kho.warehouse import patroni

    patroni.wait_for(kho_config, lambda v: patroni.replicas_streaming(kho_config, v), "every replica streaming", 120)
    with caplog.at_level(logging.INFO, logger="kho.pipelines"):
        outcome = run_dag(dagbag, "warehouse_health")
    logs = capfd.readouterr()
    assert outcome.state == "success", logs.out[-3000:] + logs.err[-3000:]
    assert task_instances(outcome) == {"check": ("success", 1)}
    summary = xcom(outcome, "check")
    assert summary["nodes"] == len(kho_config.warehouse.ports)
    assert summary["primary"] == "dc1"
    assert any(line.startswith("dc2: lag ") for line in summary["checked"]), summary["checked"]
    logged = [r.getMessage() for r in caplog.records if r.name == "kho.pipelines" and r.levelno == logging.INFO]
    assert any("warehouse health:" in m and m.rstrip().endswith("no alert") for m in logged), logged


def test_warehouse_health_fails_at_once_naming_each_alert_when_a_threshold_is_crossed(
    kho_config: KhoConfig, dagbag: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """No disk is ever 100% free: the free-disk threshold fires for every local path the check looks at, and the task
    fails on its first try although it has a retry (an alert is not retried away)."""
    assert dagbag.get_dag("warehouse_health").get_task("check").retries >= 1
    monkeypatch.setenv("KHO_HEALTH_MIN_DISK_FREE_PERCENT", "100")
    outcome = run_dag(dagbag, "warehouse_health")
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert outcome.state == "failed"
    assert task_instances(outcome) == {"check": ("failed", 1)}, "the alert must fail the task without a retry"
    datadirs = [str(kho_config.home / "pg" / f"dc{i + 1}") for i in range(len(kho_config.warehouse.ports))]
    assert "warehouse alert(s):" in text
    for datadir in datadirs:
        assert f"the disk holding {datadir} has" in text
    assert "threshold KHO_HEALTH_MIN_DISK_FREE_PERCENT=100)" in text
    assert "Traceback" not in text.split("warehouse alert(s):")[1].split("\n")[1], "one line per alert"


def test_warehouse_backup_backs_up_then_proves_the_backup_restores(
    kho_config: KhoConfig, dagbag: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from kho.warehouse import backup

    with caplog.at_level(logging.INFO, logger="kho.pipelines"):
        outcome = run_dag(dagbag, "warehouse_backup")
    logs = capfd.readouterr()
    assert outcome.state == "success", logs.out[-3000:] + logs.err[-3000:]
    assert task_instances(outcome) == {"backup": ("success", 1), "verify_restore": ("success", 1)}
    taken, verified = xcom(outcome, "backup"), xcom(outcome, "verify_restore")
    assert verified["label"] == taken["label"], "verify-restore checks the backup this run took"
    assert verified["figures_matched"] > 0
    last = backup.status(kho_config).last
    assert last is not None and last.label == taken["label"]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "kho.pipelines")
    assert f"backup {taken['label']} ({taken['kind']}) of {taken['node']}" in logged
    assert f"verify-restore of backup {taken['label']}" in logged
    assert f"PASSED: {verified['figures_matched']} of {verified['figures_matched']} figures match" in logged


def test_warehouse_backup_fails_naming_the_damaged_file_when_the_repository_is_corrupted(
    kho_config: KhoConfig, dagbag: Any, no_retries: None, capfd: pytest.CaptureFixture[str]
) -> None:
    """A file of an earlier backup damaged in the repository: tonight's backup still succeeds, and verify-restore,
    which checks the whole repository against its checksums, fails the run naming the file. Put back afterwards."""
    first = run_dag(dagbag, "warehouse_backup")
    assert first.state == "success"
    label = xcom(first, "backup")["label"]
    files = sorted((p for p in (kho_config.ha.backup_repo / "backup" / kho_config.ha.scope / label).rglob("*")
                    if p.is_file() and "pg_data" in p.parts and p.stat().st_size > 64),
                   key=lambda p: p.stat().st_size)
    assert files, f"backup {label} stored no data file"
    damaged = files[-1]
    original = damaged.read_bytes()
    try:
        data = bytearray(original)
        middle = len(data) // 2
        data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
        damaged.write_bytes(bytes(data))
        capfd.readouterr()
        outcome = run_dag(dagbag, "warehouse_backup")
        logs = capfd.readouterr()
    finally:
        # Written back in place: a copy moved over it would belong to root, and pgBackRest (the server user) could
        # no longer read the file, failing every later verify of the session's repository.
        damaged.write_bytes(original)
    text = logs.out + logs.err
    assert outcome.state == "failed"
    assert task_instances(outcome) == {"backup": ("success", 1), "verify_restore": ("failed", 1)}
    assert "pgbackrest verify found damage in the repository" in text
    assert str(damaged) in text, f"the message must name {damaged}"
    repaired = run_dag(dagbag, "warehouse_backup")
    assert repaired.state == "success", "the file put back, the repository verifies whole again"
