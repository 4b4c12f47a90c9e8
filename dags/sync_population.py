"""
### sync_population

Nightly pull of the **population registry** (citizens) into `raw.population__citizens`.

1. `extract_load` pages the registry API from the last committed watermark, checks every row against the
   contract in `kho.sources.population`, quarantines rejects with a reason, COPYs the rest, merges by CCCD and
   row hash, and writes one row to `kho.load_ledger` (read = new + changed + unchanged + rejected) — all in one
   transaction with the watermark.
2. `validate_raw` runs the GX suite `expectations/raw.population__citizens.json` on that batch and, on success,
   emits the raw table's Asset, which schedules `build_warehouse`.

Manual runs take `full_refresh` (re-read the registry from the beginning; unchanged rows are counted, not
rewritten).
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Asset, Param, dag, task

from kho import pipelines
from kho.assets import raw_uri
from kho.sources.population import CITIZENS

CITIZENS_ASSET = Asset(raw_uri(CITIZENS))


@dag(
    dag_id="sync_population",
    schedule="0 1 * * *",
    start_date=pendulum.datetime(2025, 7, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=2),
    tags=["kho", "ingest", "population"],
    doc_md=__doc__,
    default_args={"owner": "kho-data-engineering", "retries": 2, "retry_delay": dt.timedelta(minutes=2),
                  "retry_exponential_backoff": True},
    params={"full_refresh": Param(False, type="boolean", description="Re-read the registry from the beginning")},
)
def sync_population() -> None:
    @task
    def extract_load(params: dict | None = None, run_id: str | None = None) -> dict:
        full_refresh = bool((params or {}).get("full_refresh", False))
        return pipelines.sync(CITIZENS.registry, CITIZENS.name, full_refresh=full_refresh, run_id=run_id)

    @task(outlets=[CITIZENS_ASSET])
    def validate_raw(entry: dict) -> dict:
        return pipelines.validate_raw(CITIZENS.registry, CITIZENS.name, int(entry["batch_id"]))

    validate_raw(extract_load())


sync_population()
