"""DAG parse time: what Airflow's DAG processor pays to import each file in dags/, measured, never asserted.

    uv run python bench/dag_parse.py [--repeat 5] [--project DIR]

Each sample is a fresh interpreter (as a DAG processor's parsing subprocess is) that has already imported
`airflow.sdk` and prepared kho's Airflow environment (a scratch KHO_HOME, Airflow's DB migrated once, not timed),
then times importing one DAG file: kho's modules, Cosmos, and whatever the file does at import (e.g. rendering the
dbt graph). `--project` measures another checkout (e.g. a `git worktree` of an older commit) with this
environment, so a change can be compared before/after in the same run. Medians are printed per file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, os, runpy, sys, time
sys.path.insert(0, {plugins!r})
from kho.config import KhoConfig
from kho import airflow_env
config = KhoConfig.from_env()
airflow_env.prepare(config)
import airflow.sdk  # what the DAG processor has loaded before it parses a file
before = set(sys.modules)
start = time.perf_counter()
runpy.run_path({path!r}, run_name="dag_parse_bench")
print(json.dumps({{"seconds": time.perf_counter() - start, "modules": len(set(sys.modules) - before)}}))
"""


def parse_once(project: Path, dag_file: Path, home: Path) -> dict[str, float]:
    env = dict(os.environ, KHO_HOME=str(home))
    code = CHILD.format(plugins=str(project / "plugins"), path=str(dag_file))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True,
                         cwd=project)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--project", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    project = args.project.resolve()
    files = sorted((project / "dags").glob("*.py"))
    with tempfile.TemporaryDirectory(prefix="kho-dag-parse-") as tmp:
        parse_once(project, files[0], Path(tmp))  # migrates Airflow's DB in the scratch home once, untimed
        samples = {f.name: [parse_once(project, f, Path(tmp)) for _ in range(args.repeat)] for f in files}
    print(f"DAG parse time of {project} (median of {args.repeat} fresh interpreters each)")
    for name, runs in samples.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        modules = statistics.median(r["modules"] for r in runs)
        print(f"  {name:<24} {seconds:6.2f} s   {modules:5.0f} modules imported   "
              + " ".join(f"{r['seconds']:.2f}" for r in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
