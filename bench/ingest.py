"""Ingest benchmark: kho load vs `psql \\copy` (the physical baseline) vs dlt, measured in one run.

    uv run --group bench python bench/ingest.py [--citizens 1000000] [--repeat 3] [--memory-citizens 0]

1. The simulator exports N citizens as CSV (dd/mm/yyyy dates), as a registry would deliver a bulk load.
2. A fresh embedded warehouse (primary + streaming standby) is started in a temporary KHO_HOME.
3. `--repeat` rounds, each timing in this order, each step after a CHECKPOINT with the standby caught up (so no
   step pays for flushing the previous one's pages); medians are reported, with every sample:
   - `psql \\copy` of the file into an unindexed all-text table (what the disk and WAL can do),
   - `kho load` of the file into the emptied `raw.population__citizens` (checked, typed, keyed, ledger row),
   - dlt (`dlt[postgres]`, pyarrow batches, its COPY-based csv loader) into a dataset of its own,
   - `psql \\copy` of the file into a table shaped exactly like kho's raw table (typed columns, generated row
     hash, lineage defaults), then building its primary key and batch index: what PostgreSQL itself needs to
     make the same queryable table, with no checking at all (the floor for kho's path, for reference),
   - `kho load` of a change feed touching 1% of the records (merge on top of that round's full load; last, so
     the raw table's pages are no longer the freshest in the cache, as on a real next night).
   With `--against REF` (a git commit, e.g. the loader before a change), each round also times `kho load` of the
   same file into the emptied raw table by REF's code and by this checkout's, each in a process of its own,
   in alternating order: the change's cost on a clean file, as a ratio measured in the same run.
   With `--bad-lines P`, each round also loads a copy of the file in which P% of the lines are broken (ragged,
   invalid UTF-8, NUL, unterminated quote, in turn): what reading around bad lines costs (no target).
4. Optionally, peak RSS of `kho load` on a file of `--memory-citizens` rows (a separate process, into the
   emptied raw table: an initial bulk load).

Targets (issue 4): kho ≥ 0.7× the \\copy rate, ≥ 3× dlt; the 1% merge ≤ 10% of the full load; peak RSS < 1 GiB
at 10M rows. The script prints the ratios and writes bench/results/ingest.json; it never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
from common import cluster_env, timed  # bench/common.py

from kho.config import KhoConfig
from kho.extract.files import ExportFile, read_header
from kho.load.pipeline import load_file
from kho.sources.population import CITIZENS
from kho.warehouse import embedded
from kho.warehouse.binaries import find_binaries
from kho.warehouse.connection import connect, primary_address, wait_for_standby

RESULTS = Path(__file__).parent / "results"
PATHS = ("psql_copy", "kho_load", "dlt", "psql_copy_typed_raw", "kho_merge_1pct", "kho_load_ref", "kho_load_this",
         "kho_load_bad_lines")
BREAKAGES = (b"1,2,3", b"\xff\xfe broken \xc3", b"0\x00", b'"never closed,')
"""What `--bad-lines` puts in place of a line, in turn: ragged, invalid UTF-8, a NUL, an unterminated quote."""




def export_citizens(citizens: int, seed: int, out_dir: Path) -> Path:
    """The simulator's bulk export of the citizens entity (CSV, dd/mm/yyyy dates)."""
    from kho.simulator import WorldSpec
    from kho.simulator.export import export

    manifest = export(WorldSpec(seed=seed, citizens=citizens), out_dir, entities=[CITIZENS], formats=("csv",))
    (entry,) = [f for f in manifest.files if f.entity == CITIZENS.name]
    return out_dir / entry.path


def header_names(path: Path) -> list[str]:
    header = read_header(ExportFile.of(path))
    assert header is not None, f"{path} is empty"
    return list(header.names)


def read_text_csv(path: Path) -> pa.Table:
    names = header_names(path)
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=True))


def change_feed(full: Path, out: Path, share: float = 0.01) -> int:
    """Every 1/share-th record moved to another commune with a later updated_at: a day's change feed, as CSV."""
    table = read_text_csv(full)
    picked = table.take(pa.array(range(0, table.num_rows, round(1 / share))))
    communes = picked.column("permanent_commune_code").to_pylist()
    moved = pa.array(communes[1:] + communes[:1], pa.string())
    stamp = pa.array(["2025-07-01T09:00:00Z"] * picked.num_rows, pa.string())
    names = picked.column_names
    picked = picked.set_column(names.index("permanent_commune_code"), "permanent_commune_code", moved)
    picked = picked.set_column(names.index("updated_at"), "updated_at", stamp)
    pacsv.write_csv(picked, out)
    return picked.num_rows


def break_lines(path: Path, out: Path, percent: float) -> int:
    """A copy of `path` with every (100/percent)-th data line replaced by a broken one; returns how many."""
    every = max(1, round(100 / percent))
    broken = 0
    with path.open("rb") as src, out.open("wb") as dst:
        dst.write(src.readline())
        for n, line in enumerate(src, start=1):
            if n % every == 0:
                line = BREAKAGES[broken % len(BREAKAGES)] + b"\r\n"
                broken += 1
            dst.write(line)
    return broken


def load_in_process(config: KhoConfig, path: Path, plugins: Path) -> float:
    """Seconds `load_file` takes in a process of its own that imports kho from `plugins` (imports not timed)."""
    env = dict(os.environ, **config.child_env(), KHO_PG_PASSWORD=config.warehouse.password())
    code = (f"import sys, time; sys.path.insert(0, {str(plugins)!r}); from kho.config import KhoConfig; "
            "from kho.load.pipeline import load_file; from kho.sources.population import CITIZENS; "
            # pyarrow imports pandas on its first pa.array() (~0.5 s); kho once paid it at import, now at first use:
            # paid before the clock starts in both, so the ratio compares loading, not when pandas is imported
            "import pyarrow as pa; pa.array([0]); "
            f"c = KhoConfig.from_env(); t = time.perf_counter(); load_file(c, CITIZENS, {str(path)!r}); "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def time_loads(config: KhoConfig, runs: list[tuple[str, Path, Path]], samples: dict[str, list[float]]) -> None:
    """Time each (path name, kho code, file) in `runs` into the emptied raw table, each after a CHECKPOINT."""
    for name, plugins, file in runs:
        with connect(config.warehouse, autocommit=True) as conn:
            conn.execute("TRUNCATE raw.population__citizens")  # made by `kho warehouse up`
        checkpoint(config)
        samples[name].append(load_in_process(config, file, plugins))


def ref_checkout(ref: str, into: Path) -> Path:
    """The `plugins` folder of `ref`, exported from this repository's history into `into`."""
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "plugins"], check=True, capture_output=True)
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "plugins"


def checkpoint(config: KhoConfig) -> None:
    """Start each timed step from a clean slate: the previous step's dirty pages flushed (CHECKPOINT) and its
    WAL replayed by the standby, so no step pays for the one before it."""
    with connect(config.warehouse, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    wait_for_standby(config.warehouse)


def psql(config: KhoConfig, options: str = "") -> tuple[list[str], dict[str, str]]:
    """The psql command line (up to its -c arguments) for the primary, and its environment."""
    wh = config.warehouse
    host, port = primary_address(wh)
    binary = str(find_binaries().bindir / "psql")
    env = dict(os.environ, PGPASSWORD=wh.password(), PGOPTIONS=options)
    return [binary, "-h", host, "-p", str(port), "-U", wh.user, "-d", wh.dbname, "-v", "ON_ERROR_STOP=1", "-q"], env


def psql_copy(config: KhoConfig, path: Path, columns: list[str]) -> float:
    base, env = psql(config)
    cols = ", ".join(f'"{c}" text' for c in columns)
    subprocess.run([*base, "-c", f"DROP TABLE IF EXISTS public.bench_copy; CREATE TABLE public.bench_copy ({cols})"],
                   env=env, check=True)
    seconds, _ = timed(lambda: subprocess.run(
        [*base, "-c", f"\\copy public.bench_copy FROM '{path}' WITH (FORMAT csv, HEADER true)"], env=env, check=True))
    return seconds


def psql_copy_typed(config: KhoConfig, path: Path, columns: list[str]) -> float | None:
    """\\copy into a copy of the raw table's shape, then its key and batch index; None if PostgreSQL refuses a row
    (the file holds a defect that kho would have quarantined)."""
    base, env = psql(config, "-c datestyle=ISO,DMY -c maintenance_work_mem=256MB")
    subprocess.run([*base, "-c", "DROP TABLE IF EXISTS public.bench_typed", "-c",
                    "CREATE TABLE public.bench_typed (LIKE raw.population__citizens INCLUDING DEFAULTS"
                    " INCLUDING GENERATED)", "-c",
                    "ALTER TABLE public.bench_typed ALTER COLUMN _batch_id SET DEFAULT 0,"
                    " ALTER COLUMN _first_batch_id SET DEFAULT 0"], env=env, check=True)
    cols = ", ".join(f'"{c}"' for c in columns)
    start = time.perf_counter()
    load = subprocess.run(
        [*base, "-c", f"\\copy public.bench_typed ({cols}) FROM '{path}' WITH (FORMAT csv, HEADER true)",
         "-c", "ALTER TABLE public.bench_typed ADD PRIMARY KEY (cccd)",
         "-c", "CREATE INDEX ON public.bench_typed (_batch_id)"], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if load.returncode != 0:
        print(f"typed \\copy refused the file: {load.stderr.strip()[:300]}")
        return None
    return elapsed


def dlt_load(config: KhoConfig, path: Path, work: Path, dataset: str = "dlt_bench") -> float:
    import dlt
    from dlt.destinations import postgres

    wh = config.warehouse
    host, port = primary_address(wh)
    credentials = f"postgresql://{wh.user}:{wh.password()}@{host}:{port}/{wh.dbname}"
    names = header_names(path)

    @dlt.resource(name="population__citizens", write_disposition="append")
    def batches() -> Iterator[pa.RecordBatch]:
        reader = pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=True))
        yield from reader

    pipeline = dlt.pipeline(pipeline_name="kho_bench", destination=postgres(credentials=credentials),
                            dataset_name=dataset, pipelines_dir=str(work / "dlt" / dataset))
    seconds, _ = timed(lambda: pipeline.run(batches(), loader_file_format="csv"))
    return seconds


def peak_rss_of_load(config: KhoConfig, path: Path) -> int:
    """Peak RSS (bytes) of `kho load` in a process of its own.

    Read from the child's own VmHWM (the high-water mark of its address space): Linux carries `ru_maxrss` across
    fork and exec, so the child's getrusage would report this (large) benchmark process's peak instead.
    """
    env = dict(os.environ, **config.child_env(), KHO_PG_PASSWORD=config.warehouse.password())
    code = ("import re, sys; from kho.cli import main; rc = main(['load', 'population', 'citizens', "
            f"{str(path)!r}, '--no-progress']); "
            "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20250701)
    parser.add_argument("--memory-citizens", type=int, default=0, help="also measure peak RSS at this size")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every timed path; medians are reported")
    parser.add_argument("--against", metavar="REF", help="also time kho load by this git commit's code, alternated")
    parser.add_argument("--bad-lines", type=float, default=0.0, metavar="PERCENT",
                        help="also load a copy with this share of broken lines")
    parser.add_argument("--only-loads", action="store_true",
                        help="time only the kho loads (--against, --bad-lines), not \\copy, dlt or the merge")
    return parser.parse_args()


def main() -> int:
    args = parse_args()

    with tempfile.TemporaryDirectory(prefix="kho-bench-") as tmp:
        work = Path(tmp)
        config = KhoConfig.from_env(cluster_env(work / "home"))
        gen_s, path = timed(lambda: export_citizens(args.citizens, args.seed, work / "export"))
        size = path.stat().st_size
        print(f"exported {args.citizens:,} citizens to {path.name} ({size / 1e6:.0f} MB) in {gen_s:.1f} s")
        try:
            embedded.up(config)  # inside the try: a start that fails half way leaves no server behind
            header = header_names(path)
            changes = work / "changes.csv"
            changed = change_feed(path, changes)
            ref_plugins = ref_checkout(args.against, work / "ref") if args.against else None
            this_plugins = Path(__file__).resolve().parents[1] / "plugins"
            broken_file = work / "broken.csv"
            broken = break_lines(path, broken_file, args.bad_lines) if args.bad_lines else 0
            samples: dict[str, list[float]] = {name: [] for name in PATHS}
            for round_ in range(args.repeat):  # interleaved rounds, so drift in the machine hits every path alike
                pair = [("kho_load_ref", ref_plugins, path), ("kho_load_this", this_plugins, path)]
                runs = (pair if round_ % 2 == 0 else pair[::-1]) if ref_plugins is not None else []
                runs += [("kho_load_bad_lines", this_plugins, broken_file)] if broken else []
                time_loads(config, runs, samples)  # type: ignore[arg-type]
                if args.only_loads:
                    print_round(round_, args.repeat, samples)
                    continue
                checkpoint(config)
                samples["psql_copy"].append(psql_copy(config, path, header))
                with connect(config.warehouse, autocommit=True) as conn:
                    conn.execute("TRUNCATE raw.population__citizens")  # made by `kho warehouse up`
                checkpoint(config)
                kho_run, entry = timed(lambda: load_file(config, CITIZENS, path))
                samples["kho_load"].append(kho_run)
                checkpoint(config)
                samples["dlt"].append(dlt_load(config, path, work, f"dlt_bench_{round_}"))
                checkpoint(config)
                typed_run = psql_copy_typed(config, path, header)
                if typed_run is not None:
                    samples["psql_copy_typed_raw"].append(typed_run)
                checkpoint(config)  # the merge comes last: the raw table is no longer the hot one in the cache
                merge_run, merge_entry = timed(lambda: load_file(config, CITIZENS, changes))
                samples["kho_merge_1pct"].append(merge_run)
                print_round(round_, args.repeat, samples)
            with connect(config.warehouse, autocommit=True) as conn:
                raw_rows = conn.execute("SELECT count(*) FROM raw.population__citizens").fetchone()[0]  # type: ignore[index]
            rss = big_s = None
            if args.memory_citizens:  # the initial bulk load of a big file: into the emptied raw table
                big = export_citizens(args.memory_citizens, args.seed + 1, work / "big")
                with connect(config.warehouse, autocommit=True) as conn:
                    conn.execute("TRUNCATE raw.population__citizens")
                checkpoint(config)
                big_s, rss = timed(lambda: peak_rss_of_load(config, big))
        finally:
            embedded.destroy(config)

    seconds = {name: statistics.median(values) if values else None for name, values in samples.items()}
    compared = {
        "against": args.against, "bad_lines": broken,
        "this_vs_ref": (seconds["kho_load_this"] / seconds["kho_load_ref"]  # type: ignore[operator]
                        if seconds["kho_load_ref"] else None),
        "bad_lines_vs_clean": (seconds["kho_load_bad_lines"] / (seconds["kho_load_this"] or seconds["kho_load"])  # type: ignore[operator]
                               if seconds["kho_load_bad_lines"] and (seconds["kho_load_this"] or seconds["kho_load"])
                               else None),
    }
    if args.only_loads:
        return report_loads(args, seconds, samples, compared)
    copy_s, kho_s, dlt_s = seconds["psql_copy"], seconds["kho_load"], seconds["dlt"]
    merge_s, typed_s = seconds["kho_merge_1pct"], seconds["psql_copy_typed_raw"]
    assert copy_s and kho_s and dlt_s and merge_s
    results = {
        "citizens": args.citizens, "file_bytes": size, "rounds": args.repeat,
        "seconds": seconds, "samples": samples,
        "rows_per_second": {"psql_copy": args.citizens / copy_s, "kho_load": args.citizens / kho_s,
                            "dlt": args.citizens / dlt_s},
        "ratios": {"kho_vs_copy": copy_s / kho_s, "kho_vs_dlt": dlt_s / kho_s, "merge_vs_full": merge_s / kho_s,
                   "kho_vs_typed_copy": typed_s / kho_s if typed_s else None},
        "targets": {"kho_vs_copy": 0.7, "kho_vs_dlt": 3.0, "merge_vs_full": 0.10},
        "ledger_full": entry.summary(), "ledger_merge": merge_entry.summary(), "changed_rows": changed,
        "raw_rows": raw_rows, "peak_rss_bytes": rss, "memory_citizens": args.memory_citizens or None,
        "memory_load_seconds": big_s, "compared": compared,
        "bench_process_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    r = results["ratios"]
    print(f"\n{'path (median of ' + str(args.repeat) + ')':<26}{'seconds':>10}{'rows/s':>14}   samples")
    for name, secs in seconds.items():
        if secs is not None:
            rows = changed if "merge" in name else args.citizens
            print(f"{name:<26}{secs:>10.2f}{rows / secs:>14,.0f}   {' '.join(f'{v:.2f}' for v in samples[name])}")
    print(f"\nkho vs \\copy rate : {r['kho_vs_copy']:.2f}x  (target >= 0.7)")
    print(f"kho vs dlt rate    : {r['kho_vs_dlt']:.2f}x  (target >= 3)")
    print(f"1% merge / full    : {r['merge_vs_full']:.1%}  (target <= 10%)")
    if r["kho_vs_typed_copy"] is not None:
        print(f"kho vs typed \\copy + key (the same raw table, unchecked): {r['kho_vs_typed_copy']:.2f}x  (no target)")
    if rss is not None:
        print(f"peak RSS at {args.memory_citizens:,} rows: {rss / 2**20:.0f} MiB (target < 1024),"
              f" load {big_s:.1f} s in its own process")
    print_compared(compared)
    print(f"\n{entry.summary()}\n{merge_entry.summary()}\nresults: {RESULTS / 'ingest.json'}")
    return 0


def print_round(round_: int, rounds: int, samples: dict[str, list[float]]) -> None:
    print(f"round {round_ + 1}/{rounds}: " + ", ".join(
        f"{name} {values[-1]:.2f} s" for name, values in samples.items() if len(values) > round_))


def print_compared(compared: dict[str, object]) -> None:
    if compared["this_vs_ref"] is not None:
        print(f"this checkout vs {compared['against']} on the clean file: {compared['this_vs_ref']:.3f}x the time"
              "  (target <= 1.05)")
    if compared["bad_lines_vs_clean"] is not None:
        print(f"with {compared['bad_lines']:,} broken lines: {compared['bad_lines_vs_clean']:.2f}x the clean load's"
              " time  (no target)")


def report_loads(args: argparse.Namespace, seconds: dict[str, float | None], samples: dict[str, list[float]],
                 compared: dict[str, object]) -> int:
    """The report of an `--only-loads` run (written to bench/results/ingest_loads.json)."""
    results = {"citizens": args.citizens, "rounds": args.repeat, "seconds": seconds, "samples": samples,
               "compared": compared}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest_loads.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\n{'path (median of ' + str(args.repeat) + ')':<26}{'seconds':>10}   samples")
    for name, secs in seconds.items():
        if secs is not None:
            print(f"{name:<26}{secs:>10.2f}   {' '.join(f'{v:.2f}' for v in samples[name])}")
    print_compared(compared)
    print(f"results: {RESULTS / 'ingest_loads.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
