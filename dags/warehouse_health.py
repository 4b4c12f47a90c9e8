"""
### warehouse_health

Every five minutes, asks the warehouse whether it still keeps the province's promise (`kho.warehouse.health`): one
primary, which Patroni leads; every standby streaming from it (one synchronous, in synchronous mode); standby lag
in bytes and seconds, WAL held back by each replication slot and free disk under the thresholds `KHO_HEALTH_*`.

`check` logs the whole report. When any alert fires the task fails at once, its error one line per alert (no
retry: a retry would only hold the alert back for its delay), so the failure is what operators see and are told
about. Its single retry is for the check itself failing (the task's process killed, say), not for an alert.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronTriggerTimetable, dag, task

from kho import dag_defaults, pipelines
from kho.sources.registry import TIMEZONE

EVERY = "*/5 * * * *"
CHECK_RETRIES = dag_defaults.Retries(1, dt.timedelta(seconds=30))
"""One quick retry, for the check failing rather than finding something: an alert fails without retrying."""


@dag(
    dag_id="warehouse_health",
    schedule=CronTriggerTimetable(EVERY, timezone=TIMEZONE),  # a probe: it looks at now, not at a data interval
    start_date=dag_defaults.start_date(),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=4),  # a hung check gives way to the next one
    tags=dag_defaults.tags("warehouse", "health"),
    doc_md=__doc__,
    default_args=dag_defaults.default_args(CHECK_RETRIES),
)
def warehouse_health() -> None:
    @task
    def check() -> dict:
        return pipelines.warehouse_health()

    check()


warehouse_health()
