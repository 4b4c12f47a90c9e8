"""Prepare Airflow to run kho's DAGs in-process (`dag.test()`): its home under KHO_HOME and a migrated DB.

Airflow reads its settings when first imported, so `prepare()` must run before anything imports airflow.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from kho.config import KhoConfig
from kho.errors import ConfigError


def airflow_environment(config: KhoConfig) -> dict[str, str]:
    """The variables that point Airflow at kho's DAGs and plugins and keep its metadata DB under KHO_HOME."""
    home = config.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(config.project_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(config.project_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Asia/Ho_Chi_Minh",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__COSMOS__ENABLE_CACHE": "True",
        "AIRFLOW__COSMOS__CACHE_DIR": str(config.home / "cosmos-cache"),
        # A provincial warehouse phones nobody home: no usage telemetry from Cosmos, dbt or Airflow.
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
        "SCARF_ANALYTICS": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
    }


def prepare(config: KhoConfig) -> dict[str, str]:
    """Export kho's and Airflow's settings into this process and migrate Airflow's DB once (idempotent)."""
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(config.airflow_home):
        raise ConfigError("airflow was imported before kho prepared its environment; call prepare() first")
    env = {**config.child_env(), **airflow_environment(config)}
    venv_bin = str(Path(sys.executable).parent)  # Cosmos finds dbt on PATH: use this environment's
    if venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
        env["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    with contextlib.suppress(ConfigError):  # parsing DAGs needs no warehouse; tasks that do will say so
        env["KHO_PG_PASSWORD"] = config.warehouse.password()
    os.environ.update(env)
    config.airflow_home.mkdir(parents=True, exist_ok=True)
    _migrate_once(config.airflow_home)
    return env


def _migrate_once(home: Path) -> None:
    from importlib.metadata import version

    marker = home / f".migrated-{version('apache-airflow-core')}"
    if marker.exists():
        return
    airflow_bin = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow_bin), "db", "migrate"], env=os.environ.copy(), capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"`airflow db migrate` failed in {home}:\n{result.stderr[-2000:]}")
    marker.touch()
