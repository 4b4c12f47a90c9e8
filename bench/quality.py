"""Quality gate benchmark: what the raw gate costs against the same checks written by hand, and against the sync it
guards.

    uv run python bench/quality.py [--citizens 1000000] [--seed 20250701] [--rounds 3]

On a warehouse of its own (two nodes under Patroni, as `kho warehouse up` makes them) and a simulated population
registry served over HTTP from another process:

1. **Sync with and without the raw gate**: an API full refresh of every citizen (`kho.load.pipeline.sync_api`,
   pages of 1,000, 10 pages a batch: about 100 batches for a million), then the raw gate over the run's batches
   (`kho.quality.validate_raw`: one validation through the gate view, results recorded, failing warning rows listed
   in kho.quality_flags). The raw table and watermark are emptied before each round, so every round loads and
   validates every row.
2. **GX against a hand-written scan** of the same rows: the GX checkpoint alone (the validation, without kho's
   recording), and one SELECT with a `count(*) FILTER (WHERE ...)` per row-level expectation of the suite — each
   condition the one GX's metric uses (`kho.quality.flags`), which is what an engineer would write without GX —
   plus the catalogue query for the column set. Alternated round by round; medians.

Targets (issue 15): GX <= 2x the hand-written scan; the raw gate adds <= 25% to the sync. GX's import (once per
Airflow task process) is reported on its own and in a second gate ratio. Prints the ratios and writes
bench/results/quality.json; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "plugins"), str(HERE)]

from common import cluster_env, free_ports, log, timed  # noqa: E402

from kho.config import KhoConfig  # noqa: E402

PAGE_SIZE = 1000
PAGES_PER_BATCH = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20250701)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measure, alternated; medians reported")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "quality.json")
    return parser.parse_args()


@contextmanager
def warehouse(home: Path) -> Iterator[KhoConfig]:
    from kho.warehouse import embedded
    from kho.warehouse.connection import connect
    from kho.warehouse.migrations import migrate

    (simulator_port,) = free_ports(1)
    config = KhoConfig.from_env({**os.environ, **cluster_env(home), "KHO_SIM_PORT": str(simulator_port)})
    embedded.up(config)
    try:
        with connect(config.warehouse, autocommit=True) as conn:
            migrate(conn)
        yield config
    finally:
        embedded.down(config)


@contextmanager
def registry(config: KhoConfig, citizens: int, seed: int) -> Iterator[None]:
    """`kho simulate serve` in its own process (so the server does not share the loader's interpreter)."""
    config.ensure_registry_credentials()
    env = {**os.environ, **config.child_env(), "PYTHONPATH": str(HERE.parent / "plugins")}
    server = subprocess.Popen([sys.executable, "-m", "kho.cli", "simulate", "serve", "--citizens", str(citizens),
                               "--seed", str(seed), "--port", str(config.simulator_port), "--days", "0", "--rate", "0"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(config)
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_for(config: KhoConfig, timeout: float = 1800) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(config.simulator_url + "/health", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(1)
    raise TimeoutError(f"the simulated registry did not start within {timeout:.0f} s")


def empty_citizens(config: KhoConfig) -> None:
    from kho.warehouse.connection import connect

    with connect(config.warehouse) as conn, conn.transaction():
        conn.execute("TRUNCATE raw.population__citizens")
        conn.execute("DELETE FROM kho.watermarks WHERE registry = 'population' AND entity = 'citizens'")
        conn.execute("DELETE FROM kho.quality_flags")


def full_refresh(config: KhoConfig) -> tuple[float, list[int]]:
    from kho.load.pipeline import SyncOptions, sync_api
    from kho.sources.population import CITIZENS

    seconds, entries = timed(lambda: sync_api(config, CITIZENS, SyncOptions(
        full_refresh=True, page_size=PAGE_SIZE, pages_per_batch=PAGES_PER_BATCH, run_id="bench-quality")))
    return seconds, [e.batch_id for e in entries]


def gate(config: KhoConfig, batch_ids: list[int]) -> tuple[float, Any]:
    from kho.errors import QualityError
    from kho.quality import validate_raw

    def run() -> Any:
        try:
            return validate_raw(config, "population__citizens", batch_ids, run_id="bench-quality")
        except QualityError as exc:  # a blocking failure still cost what it cost; say so
            log(f"  the gate failed: {exc}")
            return None

    return timed(run)


def gx_checkpoint_only(config: KhoConfig, batch_ids: list[int]) -> float:
    """The GX checkpoint over the range, without kho's recording: GX's own cost (the view pointed at the range as
    the gate does it, under its lock)."""
    from kho.quality import project
    from kho.quality.runner import _open, _run_checkpoint
    from kho.warehouse.connection import connect

    target = project.raw_table_target("population__citizens")
    with connect(config.warehouse, autocommit=True) as conn:
        validation_id = _open(conn, target, "bench-gx", (min(batch_ids), max(batch_ids)))
    seconds, _ = timed(lambda: _run_checkpoint(config, target))
    with connect(config.warehouse, autocommit=True) as conn:
        conn.execute("UPDATE kho.quality_validations SET state = 'abandoned', finished_at = now() "
                     "WHERE validation_id = %s", (validation_id,))
    return seconds


def hand_scan(config: KhoConfig, batch_ids: list[int]) -> tuple[float, dict[str, int]]:
    """Every row-level expectation of the suite as one `count(*) FILTER (WHERE <its condition>)` of one SELECT over
    the run's rows, and the column set from the catalogue."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    from kho.quality.flags import _condition
    from kho.quality.suites import load_suite, parameter_values, suite_path
    from kho.warehouse.connection import connect

    suite = load_suite(suite_path(config.expectations_dir, "raw.population__citizens"))
    values = parameter_values()
    counts = []
    for i, exp in enumerate(suite["expectations"]):
        kwargs = {k: values[v["$PARAMETER"]] if isinstance(v, dict) and "$PARAMETER" in v else v
                  for k, v in exp["kwargs"].items()}
        condition = _condition(exp["type"], kwargs)
        if condition is not None:
            counts.append(sa.func.count().filter(condition).label(f"e{i}"))
    query = sa.select(*counts).select_from(sa.table("population__citizens", schema="raw")).where(
        sa.column("_batch_id").between(min(batch_ids), max(batch_ids)))
    compiled = query.compile(dialect=postgresql.psycopg.dialect(), compile_kwargs={"render_postcompile": True})

    def scan() -> dict[str, int]:
        with connect(config.warehouse, autocommit=True) as conn:
            conn.execute("SELECT array_agg(column_name::text ORDER BY ordinal_position) FROM "
                         "information_schema.columns WHERE table_schema = 'raw' AND table_name = "
                         "'population__citizens'").fetchone()
            cur = conn.execute(str(compiled), dict(compiled.params))
            row = cur.fetchone()
            assert row is not None
            return {d.name: int(v) for d, v in zip(cur.description or (), row, strict=True)}

    return timed(scan)


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="kho-bench-quality-") as tmp:
        home = Path(tmp) / "home"
        with warehouse(home) as config:
            log(f"simulating {args.citizens:,} citizens (seed {args.seed}) in a registry process")
            with registry(config, args.citizens, args.seed):
                import_seconds, _ = timed(lambda: __import__("kho.quality.runner", fromlist=["_import_gx"])
                                          ._import_gx())
                log(f"GX and kho's domain expectations imported in {import_seconds:.1f} s")
                samples: dict[str, list[float]] = {"sync": [], "gate": [], "gx": [], "hand": []}
                rows = 0
                for round_ in range(1, args.rounds + 1):
                    empty_citizens(config)
                    sync_s, batch_ids = full_refresh(config)
                    gate_s, result = gate(config, batch_ids)
                    gx_s = gx_checkpoint_only(config, batch_ids)
                    hand_s, counts = hand_scan(config, batch_ids)
                    rows = result.rows if result is not None and result.rows else rows
                    for name, value in (("sync", sync_s), ("gate", gate_s), ("gx", gx_s), ("hand", hand_s)):
                        samples[name].append(value)
                    log(f"round {round_}/{args.rounds}: sync {sync_s:.1f} s ({len(batch_ids)} batches), gate "
                        f"{gate_s:.1f} s ({result.state if result else 'failed'}, {result.flagged if result else 0}"
                        f" rows flagged), GX checkpoint {gx_s:.1f} s, hand scan {hand_s:.1f} s "
                        f"({sum(counts.values())} unexpected)")
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {
        "gx_over_hand_scan": medians["gx"] / medians["hand"],
        "gate_over_hand_scan": medians["gate"] / medians["hand"],
        "gate_over_sync": medians["gate"] / medians["sync"],
        "gate_with_gx_import_over_sync": (medians["gate"] + import_seconds) / medians["sync"],
    }
    print(f"\nmedians of {args.rounds} ({rows:,} rows validated; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs): sync {medians['sync']:.1f} s, gate {medians['gate']:.1f} s, GX checkpoint "
          f"{medians['gx']:.1f} s, hand-written scan {medians['hand']:.1f} s, GX import {import_seconds:.1f} s")
    print(f"GX checkpoint / hand-written scan: {ratios['gx_over_hand_scan']:.2f}x   (target <= 2x)")
    print(f"raw gate (GX + results + flags) / hand-written scan: {ratios['gate_over_hand_scan']:.2f}x")
    print(f"raw gate / sync: {ratios['gate_over_sync']:.0%} added   (target <= 25%); with GX's import "
          f"{ratios['gate_with_gx_import_over_sync']:.0%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"citizens": args.citizens, "seed": args.seed, "rounds": args.rounds,
                                    "rows": rows, "samples": samples, "medians": medians,
                                    "gx_import_seconds": import_seconds, "ratios": ratios}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
