"""Agency access benchmark: what row-level security and masked views cost an agency's query, on the standby.

    uv run --frozen python bench/access.py [--citizens 1000000] [--seed 20250701] [--repeat 15]

1. A world of N citizens (all registries, day 0) is exported as CSV, loaded into a fresh embedded warehouse
   (primary + streaming standby, temporary KHO_HOME, free ports), vacuumed and analysed, built with dbt and
   published (kho's own build, without the GX audit, which this benchmark is not about).
2. `kho access apply` with the repository's access file plus two bench agencies: `bench_health`, the health
   department's twin with its statement audit switched off (so RLS and the masked view are measured alone), and
   `bench_population` (the population marts, province 79, no personal data), so both kinds of access are measured:
   a masked agency (RLS + masked security-barrier views) and a full one (RLS only). The health department itself
   is measured too, as deployed: every statement it runs is written to the audit log.
3. Each query runs on the STANDBY (where agencies query), `--repeat` times after one warm-up, as the agency and as
   the owner of the marts, alternating run by run (the owner runs the same query on the base table with the
   agency's province filter written by hand: what the agency gets without RLS). Medians are compared:
   - typical: coverage by commune for one province (masked): the issue's query, without and with the audit;
   - heavy: living citizens and health cover by commune for one province from the golden record, 1M rows scanned
     (bench_population masked, and the police, full).

Target (issue): the typical agency query ≤ 1.5× the owner's. Printed, written to bench/results/access.json; never
asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from common import cluster_env, log  # bench/common.py

from kho.build.run import BuildPlan, build_dbt, marts_to_publish, publish_marts
from kho.config import PROJECT_ROOT, KhoConfig
from kho.load.pipeline import load_file
from kho.simulator import calendar as cal
from kho.simulator.export import export
from kho.simulator.generate import WorldSpec
from kho.sources import get_entity
from kho.sources.reference import province_codes_2025
from kho.warehouse import access, audit, embedded
from kho.warehouse.access import roles
from kho.warehouse.connection import connect_admin, wait_for_standby

RESULTS = Path(__file__).parent / "results"
BENCH_AGENCY = """
  - slug: bench_health
    name: Benchmark twin of the health department, without statement audit
    datasets: [mart_health]
    provinces: ["79"]
    pii: none
  - slug: bench_population
    name: Benchmark agency (population marts, masked)
    datasets: [mart_population]
    provinces: ["79"]
    pii: none
    connection_limit: 5
    statement_timeout: 10min
"""
PROVINCE = "79"
TYPICAL_AGENCY_SQL = ("SELECT commune_code_2025, commune_name_2025, living_population, insured, coverage_rate "
                      "FROM masked_health.insurance_coverage_by_commune ORDER BY commune_name_2025")
TYPICAL_OWNER_SQL = ("SELECT commune_code_2025, commune_name_2025, living_population, insured, coverage_rate "
                     "FROM mart_health.insurance_coverage_by_commune WHERE province_code_2025 = '79' "
                     "ORDER BY commune_name_2025")
QUERIES: dict[str, dict[str, Any]] = {
    "typical: coverage by commune, one province (masked view + RLS)": {
        "agency": "bench_health", "agency_sql": TYPICAL_AGENCY_SQL, "owner_sql": TYPICAL_OWNER_SQL, "typical": True,
    },
    "typical, as deployed: the health department (+ statement audit)": {
        "agency": "health", "agency_sql": TYPICAL_AGENCY_SQL, "owner_sql": TYPICAL_OWNER_SQL,
    },
    "heavy: golden record by commune, one province (masked view + RLS)": {
        "agency": "bench_population",
        "agency_sql": "SELECT commune_code_2025, count(*), count(*) FILTER (WHERE has_active_health_cover) "
                      "FROM masked_population.golden_citizens WHERE is_alive GROUP BY 1 ORDER BY 1",
        "owner_sql": "SELECT commune_code_2025, count(*), count(*) FILTER (WHERE has_active_health_cover) "
                     "FROM mart_population.golden_citizens WHERE is_alive AND province_code_2025 = '79' "
                     "GROUP BY 1 ORDER BY 1",
    },
    "heavy: golden record by commune, one province (police, RLS only)": {
        "agency": "police",
        "agency_sql": "SELECT commune_code_2025, count(*), count(*) FILTER (WHERE has_active_health_cover) "
                      "FROM mart_population.golden_citizens WHERE is_alive GROUP BY 1 ORDER BY 1",
        "owner_sql": "SELECT commune_code_2025, count(*), count(*) FILTER (WHERE has_active_health_cover) "
                     "FROM mart_population.golden_citizens WHERE is_alive AND province_code_2025 = '79' "
                     "GROUP BY 1 ORDER BY 1",
    },
}






def prepare(config: KhoConfig, work: Path, citizens: int, seed: int) -> dict[str, float]:
    spent: dict[str, float] = {}
    start = time.perf_counter()
    out = work / "export"
    manifest = export(WorldSpec(seed, citizens, days=0, defect_rate=0.0), out, day=range(1), formats=("csv",),
                      gzip=False)
    spent["export"] = time.perf_counter() - start
    log(f"exported {citizens:,} citizens in {spent['export']:.1f} s")
    embedded.up(config)
    start = time.perf_counter()
    for f in manifest.files:
        load_file(config, get_entity(f.registry, f.entity), out / f.path)
    spent["load"] = time.perf_counter() - start
    with connect_admin(config.warehouse) as conn:
        conn.execute("VACUUM (ANALYZE)")
    log(f"loaded in {spent['load']:.1f} s; building")
    plan = BuildPlan("bench-access", dt.date.fromordinal(cal.day_ord(0)))
    start = time.perf_counter()
    build_dbt(config, plan)
    publish_marts(config, plan, marts_to_publish(config))
    spent["build_and_publish"] = time.perf_counter() - start
    with connect_admin(config.warehouse) as conn:
        conn.execute("VACUUM (ANALYZE)")
    wait_for_standby(config.warehouse, timeout_s=600)
    log(f"built and published in {spent['build_and_publish']:.1f} s")
    return spent


def apply_access(config: KhoConfig, work: Path) -> access.AccessFile:
    file = work / "agencies.yml"
    file.write_text((PROJECT_ROOT / "access" / "agencies.yml").read_text(encoding="utf-8") + BENCH_AGENCY,
                    encoding="utf-8")
    declared = access.load(file, known_provinces=province_codes_2025())
    with connect_admin(config.warehouse) as conn:
        report = access.apply(conn, config, declared)
        audit.disable(conn, "agency_bench_health")  # the twin measures RLS + masking alone
    wait_for_standby(config.warehouse)
    log(f"kho access apply: {len(report.changes)} changes")
    return declared


def standby_as(config: KhoConfig, user: str, password: str) -> psycopg.Connection[Any]:
    wh = config.warehouse
    return psycopg.connect(host=wh.hosts[1], port=wh.ports[1], dbname=wh.dbname, user=user, password=password,
                           autocommit=True)


def _timed(conn: psycopg.Connection[Any], query: str) -> float:
    start = time.perf_counter()
    conn.execute(query).fetchall()  # type: ignore[call-overload]
    return time.perf_counter() - start


def measure(config: KhoConfig, declared: access.AccessFile, repeat: int) -> dict[str, Any]:
    """Agency and owner alternate, run by run (which goes first alternates too), so a cache warming or a noisy
    neighbour weighs on both sides alike."""
    results: dict[str, Any] = {}
    wh = config.warehouse
    for label, q in QUERIES.items():
        agency = roles.require_declared(declared.agencies, q["agency"])
        password = roles.read_password(config, agency.slug)
        assert password is not None
        with standby_as(config, agency.role, password) as as_agency, \
                standby_as(config, wh.user, wh.password()) as owner:
            agency_rows = as_agency.execute(q["agency_sql"]).fetchall()  # warm-up, and the answers compared
            owner_rows = owner.execute(q["owner_sql"]).fetchall()
            agency_samples, owner_samples = [], []
            for i in range(repeat):
                if i % 2:
                    owner_samples.append(_timed(owner, q["owner_sql"]))
                    agency_samples.append(_timed(as_agency, q["agency_sql"]))
                else:
                    agency_samples.append(_timed(as_agency, q["agency_sql"]))
                    owner_samples.append(_timed(owner, q["owner_sql"]))
            plan = [r[0] for r in as_agency.execute("EXPLAIN (ANALYZE, BUFFERS) " + q["agency_sql"])]  # type: ignore[call-overload]
        agency_s, owner_s = statistics.median(agency_samples), statistics.median(owner_samples)
        same = [tuple(r[:1]) + tuple(r[2:]) for r in agency_rows] == [tuple(r[:1]) + tuple(r[2:]) for r in owner_rows]
        results[label] = {"agency": agency.role, "agency_seconds": agency_s, "owner_seconds": owner_s,
                          "ratio": agency_s / owner_s if owner_s else None, "rows": len(agency_rows),
                          "same_answer": same, "agency_samples": agency_samples, "owner_samples": owner_samples,
                          "agency_plan": plan, "typical": bool(q.get("typical"))}
        log(f"{label}: agency {agency_s * 1000:.2f} ms, owner {owner_s * 1000:.2f} ms "
            f"({agency_s / owner_s:.2f}x), {len(agency_rows)} rows, same answer: {same}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20250701)
    parser.add_argument("--repeat", type=int, default=15, help="timed runs of each query (median reported)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kho-bench-access-") as tmp:
        work = Path(tmp)
        config = KhoConfig.from_env(cluster_env(work / "home"))
        try:
            spent = prepare(config, work, args.citizens, args.seed)
            declared = apply_access(config, work)
            results = measure(config, declared, args.repeat)
        finally:
            embedded.destroy(config)
    typical = next(r for r in results.values() if r["typical"])
    report = {"citizens": args.citizens, "seed": args.seed, "repeat": args.repeat, "preparation_seconds": spent,
              "queries": results, "target": {"typical_agency_vs_owner": 1.5}}
    (RESULTS / "access.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\n{args.citizens:,} citizens; queries on the standby, median of {args.repeat}")
    print(f"  {'query':<72}{'agency ms':>10}{'owner ms':>10}{'ratio':>8}")
    for label, r in results.items():
        print(f"  {label:<72}{r['agency_seconds'] * 1000:>10.2f}{r['owner_seconds'] * 1000:>10.2f}"
              f"{r['ratio']:>7.2f}x")
    verdict = "meets" if typical["ratio"] <= 1.5 else "misses"
    print(f"\ntypical agency query / owner: {typical['ratio']:.2f}x (target <= 1.5x: {verdict})")
    print(f"results: {RESULTS / 'access.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
