"""Explicit settings, built once from the environment and passed in (no os.environ reads deep in code)."""

from __future__ import annotations

import json
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


def generate_secret(path: Path, *, replace: bool = False) -> str:
    """A new random password in a file readable by its owner only, from the first byte on (an existing file is an
    error unless `replace`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(value + "\n")
    return value


def _read_secret(path: Path, what: str, env_name: str | None) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        given = f"set {env_name} or " if env_name else ""
        raise ConfigError(f"no {what} password: {given}run `kho warehouse up` to create {path}") from exc


@dataclass(frozen=True)
class WarehouseConfig:
    """Where the warehouse lives: one primary and one streaming standby, addressed together by libpq.

    Three logins, each with its own password: `user`, the application's (loader, dbt, GX, DAGs; no superuser
    power), `admin_user`, the superuser kept for `kho warehouse up` and administrative commands, and
    `replication_user`, which the standby streams with.
    """

    hosts: tuple[str, ...]
    ports: tuple[int, ...]
    dbname: str
    user: str
    password_file: Path
    password_env: str | None = field(default=None, repr=False)
    admin_user: str = "kho_admin"
    admin_password_file: Path | None = None
    """Default: `pg_admin_password` beside `password_file`."""
    admin_password_env: str | None = field(default=None, repr=False)
    replication_user: str = "kho_replicator"
    replication_password_file: Path | None = None
    """Default: `pg_replication_password` beside `password_file`; always generated, never given."""

    def __post_init__(self) -> None:
        names = [self.user, self.admin_user, self.replication_user]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"KHO_PG_USER ({self.user}), KHO_PG_ADMIN_USER ({self.admin_user}) and KHO_PG_REPLICATION_USER "
                f"({self.replication_user}) must be three different roles: the application never logs in as the "
                "administrator or the replication role"
            )

    def password(self) -> str:
        """The password comes from KHO_PG_PASSWORD or from a file outside the repository, never from code."""
        if self.password_env:
            return self.password_env
        return _read_secret(self.password_file, "warehouse", "KHO_PG_PASSWORD")

    def ensure_password(self) -> str:
        """Return the password, generating one for the embedded cluster on first use."""
        if self.password_env or self.password_file.exists():
            return self.password()
        return generate_secret(self.password_file)

    @property
    def admin_password_path(self) -> Path:
        return self.admin_password_file or self.password_file.with_name("pg_admin_password")

    def admin_password(self) -> str:
        """The administrator's password: KHO_PG_ADMIN_PASSWORD, else its file (root-only, like the others)."""
        if self.admin_password_env:
            return self.admin_password_env
        return _read_secret(self.admin_password_path, "warehouse administrator", "KHO_PG_ADMIN_PASSWORD")

    def ensure_admin_password(self) -> str:
        """Return the administrator's password, generating it on first use (`kho warehouse up`)."""
        if self.admin_password_env or self.admin_password_path.exists():
            return self.admin_password()
        return generate_secret(self.admin_password_path)

    @property
    def replication_password_path(self) -> Path:
        return self.replication_password_file or self.password_file.with_name("pg_replication_password")

    def ensure_replication_password(self) -> str:
        """The replication role's password, generated on first use; only the embedded standby needs it."""
        path = self.replication_password_path
        return _read_secret(path, "replication", None) if path.exists() else generate_secret(path)

    @property
    def primary_port(self) -> int:
        return self.ports[0]

    @property
    def standby_port(self) -> int:
        return self.ports[1]


@dataclass(frozen=True)
class RegistryCredentials:
    """An OAuth2 client of the registries (client-credentials grant): what kho presents and the simulator accepts."""

    client_id: str
    client_secret: str = field(repr=False)


REGISTRY_CLIENT_ID = "kho-warehouse"
"""The client id written to a generated credentials file: an identity, not a secret."""


@dataclass(frozen=True)
class RejectLimit:
    """When a batch is refused as a whole: more than `percent` of its records rejected, and at least `min_rows`
    of them (so one bad record in a small batch is quarantined, not escalated). A registry sending garbage
    stops the line instead of filling the quarantine."""

    percent: float = 10.0
    min_rows: int = 100
    setting: str = "KHO_REJECT_LIMIT_PERCENT"
    """The variable the percentage came from, for the message that names it."""

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ConfigError(f"{self.setting}={self.percent:g} is not a percentage; give 0-100 (100 never refuses)")
        if self.min_rows < 1:
            raise ConfigError(f"KHO_REJECT_LIMIT_MIN_ROWS={self.min_rows} must be at least 1")

    def exceeded(self, read: int, rejected: int) -> bool:
        return rejected >= self.min_rows and rejected * 100 > self.percent * read


def _reject_limits(env: dict[str, str]) -> dict[str, RejectLimit]:
    """KHO_REJECT_LIMIT_PERCENT (and _MIN_ROWS) for every registry under the key "", and
    KHO_REJECT_LIMIT_PERCENT_<REGISTRY> for one registry under its name."""

    def number(name: str, default: str) -> float:
        raw = env.get(name, default)
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number") from None

    prefix = "KHO_REJECT_LIMIT_PERCENT"
    percent = number(prefix, "10")
    min_rows = number("KHO_REJECT_LIMIT_MIN_ROWS", "100")
    if min_rows != int(min_rows):
        raise ConfigError(f"KHO_REJECT_LIMIT_MIN_ROWS={min_rows:g} must be a whole number")
    limits = {"": RejectLimit(percent, int(min_rows), prefix)}
    for name in sorted(env):
        if name.startswith(prefix + "_"):
            limits[name.removeprefix(prefix + "_").lower()] = RejectLimit(number(name, "0"), int(min_rows), name)
    return limits


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
    registry_client_id: str | None = None
    """From KHO_REGISTRY_CLIENT_ID; with the secret it overrides the credentials file."""
    registry_client_secret: str | None = field(default=None, repr=False)
    reject_limits: dict[str, RejectLimit] = field(default_factory=dict)
    """When a batch's rejects refuse it as a whole (`RejectLimit`): under "" for every registry, under a
    registry's name for that one."""

    def reject_limit(self, registry: str) -> RejectLimit:
        """The registry's own limit, else the default; a limit set for a registry kho does not know is an error."""
        from kho.sources import REGISTRIES

        unknown = sorted(set(self.reject_limits) - {"", *REGISTRIES})
        if unknown:
            names = ", ".join(self.reject_limits[u].setting for u in unknown)
            raise ConfigError(f"{names} names no registry kho knows; registries: {', '.join(REGISTRIES)}")
        return self.reject_limits.get(registry) or self.reject_limits.get("") or RejectLimit()

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
            admin_user=env.get("KHO_PG_ADMIN_USER", "kho_admin"),
            admin_password_file=Path(env.get("KHO_PG_ADMIN_PASSWORD_FILE",
                                             str(home / "secrets" / "pg_admin_password"))),
            admin_password_env=env.get("KHO_PG_ADMIN_PASSWORD") or None,
            replication_user=env.get("KHO_PG_REPLICATION_USER", "kho_replicator"),
            replication_password_file=home / "secrets" / "pg_replication_password",
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
            registry_client_id=env.get("KHO_REGISTRY_CLIENT_ID") or None,
            registry_client_secret=env.get("KHO_REGISTRY_CLIENT_SECRET") or None,
            reject_limits=_reject_limits(env),
        )

    @property
    def simulator_url(self) -> str:
        return f"http://{self.simulator_host}:{self.simulator_port}"

    @property
    def registry_credentials_file(self) -> Path:
        """Where generated registry client credentials live: outside the repository, readable by its owner only."""
        return self.home / "secrets" / "registry_client.json"

    def registry_credentials(self) -> RegistryCredentials:
        """The registry client credentials from KHO_REGISTRY_CLIENT_ID/_SECRET, else from the credentials file."""
        if self.registry_client_id and self.registry_client_secret:
            return RegistryCredentials(self.registry_client_id, self.registry_client_secret)
        if self.registry_client_id or self.registry_client_secret:
            raise ConfigError("set both KHO_REGISTRY_CLIENT_ID and KHO_REGISTRY_CLIENT_SECRET, or neither "
                              f"(then {self.registry_credentials_file} is used)")
        path = self.registry_credentials_file
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"no registry client credentials: set KHO_REGISTRY_CLIENT_ID and "
                              f"KHO_REGISTRY_CLIENT_SECRET, or run `kho simulate serve` to create {path}") from exc
        except ValueError as exc:
            raise ConfigError(f"{path} is not JSON ({exc}); delete it to have it generated again") from exc
        if not (isinstance(value, dict) and isinstance(value.get("client_id"), str)
                and isinstance(value.get("client_secret"), str)):
            raise ConfigError(f"{path} must hold a JSON object with string client_id and client_secret")
        return RegistryCredentials(value["client_id"], value["client_secret"])

    def ensure_registry_credentials(self) -> RegistryCredentials:
        """Return the registry client credentials, generating the file on first use (like `ensure_password`)."""
        path = self.registry_credentials_file
        if self.registry_client_id or self.registry_client_secret or path.exists():
            return self.registry_credentials()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        credentials = RegistryCredentials(REGISTRY_CLIENT_ID, secrets.token_urlsafe(32))
        # Created 0600 from the start: the secret is never readable by others, not even for an instant.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"client_id": credentials.client_id, "client_secret": credentials.client_secret}, out)
            out.write("\n")
        return credentials

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def gx_home(self) -> Path:
        return self.home / "gx"

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
            # Where the administrator's password is, for a child that is an administrative command (`kho access`);
            # the password itself never travels in the environment of children.
            "KHO_PG_ADMIN_USER": wh.admin_user,
            "KHO_PG_ADMIN_PASSWORD_FILE": str(wh.admin_password_path),
            "KHO_PG_REPLICATION_USER": wh.replication_user,
            "KHO_SIM_HOST": self.simulator_host,
            "KHO_SIM_PORT": str(self.simulator_port),
            "KHO_SIM_SEED": str(self.simulator_seed),
            "KHO_SIM_CITIZENS": str(self.simulator_citizens),
            **self._registry_client_env(),
        }

    def _registry_client_env(self) -> dict[str, str]:
        """Credentials given in the environment follow into subprocesses; a file is found there via KHO_HOME."""
        if self.registry_client_id and self.registry_client_secret:
            return {"KHO_REGISTRY_CLIENT_ID": self.registry_client_id,
                    "KHO_REGISTRY_CLIENT_SECRET": self.registry_client_secret}
        return {}
