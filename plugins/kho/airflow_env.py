"""Prepare Airflow to run kho's DAGs, in-process (`dag.test()`, `kho demo`) or as the running platform (`kho up`):
its home under KHO_HOME, a migrated DB, the dbt manifest build_warehouse is rendered from (`kho manifest`), and
one environment — port, URLs, executor, sizing, log levels — that the demo, `kho up` and `airflow.env` share.

Airflow reads its settings when first imported, so `prepare()` must run before anything imports airflow.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kho.build.dbt import ensure_manifest
from kho.config import KhoConfig
from kho.dag_defaults import QUIET_LOGGERS
from kho.errors import ConfigError

LISTEN_HOST = "127.0.0.1"
"""Airflow's API server listens here only: the UI and the Execution API are not offered to the network."""
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
UI_USER = "admin"
"""The one user of Airflow's SimpleAuthManager (role admin); its password is generated on the API server's first
start into `passwords_file()`."""


@dataclass(frozen=True)
class Sizing:
    """Airflow's concurrency from the CPUs this process may use: never 32 workers on a 2-core machine."""

    cpus: int
    parallelism: int
    """Task instances running at once (LocalExecutor worker processes): tasks wait on registries and PostgreSQL
    much of the time, so two per CPU."""
    api_workers: int
    """API server processes: one per two CPUs, at most four (Airflow advises more servers, not more workers)."""
    parsing_processes: int

    @classmethod
    def for_cpus(cls, cpus: int) -> Sizing:
        cpus = max(1, cpus)
        half = max(1, min(4, cpus // 2))
        return cls(cpus=cpus, parallelism=max(2, 2 * cpus), api_workers=half, parsing_processes=half)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's or a taskset's share), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


TASK_LOG_ENVIRONMENT = {"DBT_LOG_LEVEL": "warn", "DBT_LOG_LEVEL_FILE": "info", "DBT_USE_COLORS": "False"}
"""For the Airflow processes `kho up` runs: dbt's own lines (one per model and test) stay in its dbt.log under
KHO_HOME/dbt/logs, out of the task logs; its warnings and errors still show there, without colour codes. (`kho demo`
sends them to its log file itself: kho.console.)"""


def api_base_url(config: KhoConfig) -> str:
    """The API server's (and UI's) URL, from the one setting KHO_AIRFLOW_PORT."""
    return f"http://{LISTEN_HOST}:{config.airflow_port}"


def passwords_file(config: KhoConfig) -> Path:
    """Where SimpleAuthManager writes the generated password of `UI_USER` (Airflow's default name)."""
    return config.airflow_home / "simple_auth_manager_passwords.json.generated"


def airflow_environment(config: KhoConfig, sizing: Sizing | None = None) -> dict[str, str]:
    """The variables that point Airflow at kho's DAGs and plugins, keep its metadata DB under KHO_HOME, and derive
    every address from KHO_AIRFLOW_PORT: the API server's port, its base URL and the Execution API URL the task
    workers call (with only the port changed, every task would fail with "Connection refused")."""
    home = config.airflow_home
    size = sizing or Sizing.for_cpus(usable_cpus())
    base_url = api_base_url(config)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(config.project_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(config.project_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Asia/Ho_Chi_Minh",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # SQLite serialises writers; the LocalExecutor is what Airflow's own `standalone` runs on it.
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(size.parallelism),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": str(size.parsing_processes),
        "AIRFLOW__API__HOST": LISTEN_HOST,
        "AIRFLOW__API__PORT": str(config.airflow_port),
        "AIRFLOW__API__WORKERS": str(size.api_workers),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{UI_USER}:admin",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Airflow's structlog loggers; the libraries' stdlib loggers are quieted by each task (dag_defaults).
        "AIRFLOW__LOGGING__NAMESPACE_LEVELS": " ".join(f"{name}=WARNING" for name in QUIET_LOGGERS),
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
    write_env_file(config)
    _migrate_once(config.airflow_home)
    ensure_manifest(config)  # what build_warehouse renders its dbt tasks from
    return env


def env_file(config: KhoConfig) -> Path:
    return config.airflow_home / "airflow.env"


def write_env_file(config: KhoConfig) -> Path:
    """A shell file that points an `airflow` command at the same DAGs, DB, warehouse and API server as `kho demo`
    and `kho up` (`. airflow.env && airflow dags list`).

    It holds no secret: the password is read from its file when the shell sources it.
    """
    lines = [f"export {k}={shlex.quote(v)}"
             for k, v in {**config.child_env(secrets=False), **airflow_environment(config)}.items()]
    lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    if not config.warehouse.password_env:
        lines.append(f'export KHO_PG_PASSWORD="$(cat {shlex.quote(str(config.warehouse.password_file))})"')
    path = env_file(config)
    head = "# generated by kho: `. this-file && airflow dags list` (`kho up` runs Airflow itself)\n"
    path.write_text(head + "\n".join(lines) + "\n", encoding="utf-8")
    return path


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
