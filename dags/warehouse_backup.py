"""
### warehouse_backup

After each night's publication, backs the warehouse up with pgBackRest and proves the backup restores
(`kho.warehouse.backup`). Scheduled on the `kho.publications` Asset, which build_warehouse's `publish` emits once
the standby has replayed the publication: the backup follows publishing however long the night's build took, and
holds what agencies were shown. WAL is archived continuously besides, so a night without a publication still leaves
every change restorable to a point in time.

1. `backup` takes a pgBackRest backup of the node that is the primary now (`auto`: full when the last full one is
   a week old, else incremental), then records at a named restore point the figures a restore must reproduce:
   ledger totals, raw row counts, published mart row hashes.
2. `verify_restore` runs `pgbackrest verify` on the repository (a damaged file fails, named), restores that backup
   into a scratch cluster on another port up to its restore point, and compares the figures. A figure that differs
   fails the task at once with the figures named; restoring the same backup again would give the same answer.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from kho import dag_defaults, pipelines
from kho.assets import published_marts


@dag(
    dag_id="warehouse_backup",
    schedule=published_marts(),
    start_date=dag_defaults.start_date(),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=8),
    tags=dag_defaults.tags("warehouse", "backup"),
    doc_md=__doc__,
    default_args=dag_defaults.default_args(dag_defaults.BUILD_RETRIES),  # one retry, for a lost connection
)
def warehouse_backup() -> None:
    @task
    def backup() -> dict:
        return pipelines.warehouse_backup("auto")

    @task
    def verify_restore(taken: dict) -> dict:
        return pipelines.verify_restore(taken)

    verify_restore(backup())


warehouse_backup()
