"""A DAG run as `kho demo` makes it (`dag.test()`), with stdout and stderr piped: kho's stage lines on stderr, no
Airflow, Cosmos or dbt output on the console, no colour codes anywhere, the rest in `$KHO_HOME/logs/kho.log`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

from kho.config import PROJECT_ROOT, KhoConfig

SCRIPT = textwrap.dedent("""
    from kho import console, demo
    from kho.config import KhoConfig

    config = KhoConfig.from_env()
    console.setup(config)
    demo.run_dags(config, ("warehouse_health",))
    print("ran")
""")


def test_a_demo_dag_run_piped_shows_stage_lines_only_and_no_colour(dagbag: Any, kho_config: KhoConfig) -> None:
    log = kho_config.home / "logs" / "kho.log"
    before = log.stat().st_size if log.exists() else 0
    env = {**os.environ, **kho_config.child_env(),
           "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT)])}
    for name in ("NO_COLOR", "FORCE_COLOR", "KHO_PG_PASSWORD"):  # the password from its file, as `kho demo` reads
        env.pop(name, None)  # it: the run rewrites airflow.env, which must keep reading the file
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout + done.stderr
    assert done.stdout == "ran\n"
    lines = done.stderr.splitlines()
    assert any(line.startswith("warehouse_health: success in ") for line in lines), done.stderr
    assert not [line for line in lines if "[warning" in line or "[info" in line or "DAG TEST" in line], done.stderr
    with log.open(encoding="utf-8") as f:
        f.seek(before)
        logged = f.read()
    assert "\x1b[" not in logged
    assert " INFO    kho.pipelines: " in logged, "the task's stage lines (INFO) are in the log file"
    assert "kho.demo: warehouse_health: success" in logged
