"""Simulator benchmark: records per second and peak memory of streaming every entity's full snapshot.

    .venv/bin/python bench/simulate.py --citizens 1000000 [--seed 1] [--days 0] [--defect-rate 0.0]
    .venv/bin/python bench/simulate.py --citizens 10000000 --only population.citizens

Streams `stream_snapshot(spec, entity, day)` of each entity to nowhere (nothing is kept), timing each, and reads
the process's peak RSS after each entity (a high-water mark: it can only grow). Prints a table and writes
bench/results/simulate.json. The target (issue 3) is ~100,000 citizens per second over all entities with memory
that does not grow with the number of records; the script measures, it never asserts.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

from kho.simulator.generate import WorldSpec, engine, stream_snapshot
from kho.sources import ENTITIES


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=0, help="stream the snapshot as of this day (default 0)")
    parser.add_argument("--defect-rate", type=float, default=0.0)
    parser.add_argument("--only", action="append", default=[], help="entity (registry.name) to stream; repeatable")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "simulate.json")
    args = parser.parse_args(argv)

    spec = WorldSpec(args.seed, args.citizens, args.days, args.defect_rate)
    started = time.perf_counter()
    eng = engine(spec)
    _ = eng.base.index  # the CCCD rank index: one pass over every citizen, built once per world
    eng.reach(args.days)
    setup_s = time.perf_counter() - started
    rows: list[dict[str, Any]] = []
    print(f"simulate: {args.citizens:,} citizens, seed {args.seed}, day {args.days}, defect rate "
          f"{args.defect_rate}; setup (CCCD index + replaying days) {setup_s:.1f} s, peak RSS {peak_rss_mib():.0f} MiB",
          flush=True)
    print(f"{'entity':40s} {'records':>12s} {'seconds':>9s} {'records/s':>12s} {'peak RSS MiB':>13s}", flush=True)
    total_records, total_s = 0, 0.0
    for entity in ENTITIES:
        if args.only and entity.qualified_name not in args.only:
            continue
        t0 = time.perf_counter()
        count = 0
        for _ in stream_snapshot(spec, entity, args.days):
            count += 1
        seconds = time.perf_counter() - t0
        total_records += count
        total_s += seconds
        rows.append({"entity": entity.qualified_name, "records": count, "seconds": round(seconds, 3),
                     "records_per_s": round(count / seconds) if seconds else None,
                     "peak_rss_mib": round(peak_rss_mib(), 1)})
        print(f"{entity.qualified_name:40s} {count:12,d} {seconds:9.1f} {count / seconds:12,.0f} "
              f"{peak_rss_mib():13.0f}", flush=True)
    all_s = setup_s + total_s
    summary = {
        "citizens": args.citizens, "seed": args.seed, "day": args.days, "defect_rate": args.defect_rate,
        "setup_s": round(setup_s, 2), "stream_s": round(total_s, 2), "records": total_records,
        "records_per_s": round(total_records / total_s) if total_s else None,
        "citizens_per_s": round(args.citizens / all_s) if all_s else None,
        "peak_rss_mib": round(peak_rss_mib(), 1), "python": sys.version.split()[0], "machine": platform.machine(),
        "entities": rows,
    }
    print(f"{'all entities':40s} {total_records:12,d} {total_s:9.1f} {total_records / max(total_s, 1e-9):12,.0f} "
          f"{peak_rss_mib():13.0f}")
    print(f"citizens per second, setup included: {summary['citizens_per_s']:,}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[f"{args.citizens}:{'+'.join(args.only) or 'all'}:day{args.days}"] = summary
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
