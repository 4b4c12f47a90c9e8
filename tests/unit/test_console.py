"""The console shows kho's stage lines; dbt's, Airflow's and Python's chatter goes to `$KHO_HOME/logs/kho.log`;
nothing carries colour codes where no terminal reads it."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

from kho import console
from kho.config import PROJECT_ROOT, KhoConfig

ANSI = "\x1b["


def test_stage_lines_reach_the_console_and_everything_reaches_the_log_file(nothing_running: Path) -> None:
    config = KhoConfig.from_env()
    shown = io.StringIO()
    path = console.setup(config, shown)
    try:
        logging.getLogger("kho.pipelines").info("population.citizens: read 10 = new 10 + changed 0")
        logging.getLogger("kho.pipelines").warning("standby lag 3 s")
        logging.getLogger("cosmos.operators.local").warning("To enable emitting Openlineage events, install ...")
        # A library's INFO line, from a logger made here: a named library's may have been set to WARNING by an
        # earlier test in this process (kho holds GX, dbt and Cosmos there in tasks; Airflow's config others)
        logging.getLogger(f"library_{uuid.uuid4().hex}.client").info("HTTP Request: POST /oauth/token 200 OK")
        with warnings.catch_warnings():  # pytest records warnings itself: here they go where the command sends them
            warnings.simplefilter("always")
            warnings.warn("a deprecation nobody asked to see", DeprecationWarning, stacklevel=1)
    finally:
        console.teardown()
    assert shown.getvalue().splitlines() == ["population.citizens: read 10 = new 10 + changed 0",
                                             "warning: standby lag 3 s"]
    logged = path.read_text(encoding="utf-8")
    for text in ("kho.pipelines: population.citizens", "cosmos.operators.local: To enable",
                 ".client: HTTP Request: POST", "a deprecation nobody asked to see"):
        assert text in logged
    assert ANSI not in shown.getvalue() + logged
    assert path == nothing_running / "logs" / "kho.log"


def test_teardown_takes_back_the_handlers_and_settings_it_added(nothing_running: Path) -> None:
    before = (list(logging.getLogger().handlers), dict(os.environ), logging.getLogger().level,
              logging.getLogger("kho").level)
    console.setup(KhoConfig.from_env(), io.StringIO())
    console.teardown()
    assert (list(logging.getLogger().handlers), dict(os.environ), logging.getLogger().level,
            logging.getLogger("kho").level) == before


def test_dbt_run_in_process_prints_nothing_and_its_lines_go_uncoloured_to_the_log_file(nothing_running: Path,
                                                                                      tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        from kho import console
        from kho.build.dbt import run_dbt
        from kho.config import KhoConfig
        from pathlib import Path

        config = KhoConfig.from_env()
        console.setup(config)
        outcome = run_dbt(config, ["parse"], host="127.0.0.1", port=1031, target=Path({str(tmp_path / 'target')!r}))
        print("parsed" if outcome.success else "failed: " + outcome.error)
    """)
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT)])}, capture_output=True, text=True, timeout=600, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "parsed\n", "")
    logged = (nothing_running / "logs" / "kho.log").read_text(encoding="utf-8")
    assert "dbt: " in logged and "Running with dbt=" in logged
    assert ANSI not in logged
