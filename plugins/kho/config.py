"""Explicit settings, built once from the environment and passed in (no os.environ reads deep in code)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from kho.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The repository root: plugins/kho/config.py -> ../../"""


def _port(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    try:
        port = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a port number; set it to an integer 1024-65535") from exc
    if not 1024 <= port <= 65535:
        raise ConfigError(f"{name}={port} is outside 1024-65535; pick a free unprivileged port")
    return port


@dataclass(frozen=True)
class WarehouseConfig:
    """Where the warehouse lives: one primary and one streaming standby, addressed together by libpq."""

    hosts: tuple[str, ...]
    ports: tuple[int, ...]
    dbname: str
    user: str
    password_file: Path
    password_env: str | None = field(default=None, repr=False)

    def password(self) -> str:
        """The password comes from KHO_PG_PASSWORD or from a file outside the repository, never from code."""
        if self.password_env:
            return self.password_env
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError as exc:
            raise ConfigError(
                f"no warehouse password: set KHO_PG_PASSWORD or run `kho warehouse up` to create {self.password_file}"
            ) from exc

    def ensure_password(self) -> str:
        """Return the password, generating one for the embedded cluster on first use."""
        if self.password_env or self.password_file.exists():
            return self.password()
        self.password_file.parent.mkdir(parents=True, exist_ok=True)
        self.password_file.parent.chmod(0o700)
        value = secrets.token_urlsafe(24)
        self.password_file.write_text(value + "\n", encoding="utf-8")
        self.password_file.chmod(0o600)
        return value

    @property
    def primary_port(self) -> int:
        return self.ports[0]

    @property
    def standby_port(self) -> int:
        return self.ports[1]


@dataclass(frozen=True)
class KhoConfig:
    """All of kho's settings. Build with `KhoConfig.from_env()` at the edge (CLI, DAG task) and pass it down."""

    home: Path
    warehouse: WarehouseConfig
    simulator_host: str
    simulator_port: int
    simulator_seed: int
    simulator_citizens: int
    pg_os_user: str
    project_root: Path = PROJECT_ROOT

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> KhoConfig:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("KHO_HOME", str(Path.cwd() / ".kho"))).resolve()
        host = env.get("KHO_PG_HOST", "127.0.0.1")
        warehouse = WarehouseConfig(
            hosts=(host, env.get("KHO_PG_STANDBY_HOST", host)),
            ports=(_port(env, "KHO_PG_PORT", 55432), _port(env, "KHO_PG_STANDBY_PORT", 55433)),
            dbname=env.get("KHO_PG_DATABASE", "kho"),
            user=env.get("KHO_PG_USER", "kho"),
            password_file=Path(env.get("KHO_PG_PASSWORD_FILE", str(home / "secrets" / "pg_password"))),
            password_env=env.get("KHO_PG_PASSWORD") or None,
        )
        try:
            seed = int(env.get("KHO_SIM_SEED", "20250701"))
            citizens = int(env.get("KHO_SIM_CITIZENS", "5000"))
        except ValueError as exc:
            raise ConfigError(f"KHO_SIM_SEED and KHO_SIM_CITIZENS must be integers: {exc}") from exc
        return cls(
            home=home,
            warehouse=warehouse,
            simulator_host=env.get("KHO_SIM_HOST", "127.0.0.1"),
            simulator_port=_port(env, "KHO_SIM_PORT", 58080),
            simulator_seed=seed,
            simulator_citizens=citizens,
            pg_os_user=env.get("KHO_PG_OS_USER", "postgres"),
        )

    @property
    def simulator_url(self) -> str:
        return f"http://{self.simulator_host}:{self.simulator_port}"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def gx_home(self) -> Path:
        return self.home / "gx"

    @property
    def dbt_project_dir(self) -> Path:
        return self.project_root / "dbt_project"

    @property
    def expectations_dir(self) -> Path:
        return self.project_root / "expectations"

    def child_env(self) -> dict[str, str]:
        """Environment for subprocesses (dbt, airflow) that must reach the same warehouse and simulator."""
        wh = self.warehouse
        return {
            "KHO_HOME": str(self.home),
            "KHO_PG_HOST": wh.hosts[0],
            "KHO_PG_STANDBY_HOST": wh.hosts[1],
            "KHO_PG_PORT": str(wh.primary_port),
            "KHO_PG_STANDBY_PORT": str(wh.standby_port),
            "KHO_PG_DATABASE": wh.dbname,
            "KHO_PG_USER": wh.user,
            "KHO_PG_PASSWORD_FILE": str(wh.password_file),
            "KHO_SIM_HOST": self.simulator_host,
            "KHO_SIM_PORT": str(self.simulator_port),
            "KHO_SIM_SEED": str(self.simulator_seed),
            "KHO_SIM_CITIZENS": str(self.simulator_citizens),
        }
