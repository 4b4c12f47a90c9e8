"""Explicit settings, built once from the environment and passed in (no os.environ reads deep in code)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field as Setting
from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

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
class HaConfig:
    """How the warehouse's nodes fail over (Patroni, with etcd as its store) and are backed up (pgBackRest).

    The embedded default (`kho warehouse up`) runs one Patroni per node and, unless `etcd_hosts` names an etcd
    cluster of the operators', one local etcd. docs/architecture.md#failover says why each value is what it is.
    """

    scope: str = "kho"
    """Patroni's cluster name: the key prefix in etcd (`/service/<scope>/`)."""
    rest_ports: tuple[int, ...] = (58008, 58009)
    """Each node's Patroni REST API port, in the order of the warehouse's nodes (KHO_PATRONI_PORTS)."""
    etcd_hosts: tuple[str, ...] = ()
    """host:port of an etcd cluster to use (KHO_ETCD_HOSTS); empty: the embedded default starts its own."""
    etcd_port: int = 52379
    etcd_peer_port: int = 52380
    synchronous: bool = True
    """KHO_PG_SYNCHRONOUS: Patroni's synchronous_mode with synchronous_commit = remote_apply (a commit returns once
    the synchronous standby has applied it), or asynchronous streaming."""
    ttl: int = 20
    """Seconds a leader's lock outlives its last renewal: how long a lost node goes unnoticed (Patroni's floor)."""
    loop_wait: int = 2
    retry_timeout: int = 9
    maximum_lag_on_failover: int = 1024 * 1024
    """Bytes: a replica further behind than this is never promoted (asynchronous mode's bound on loss)."""
    rest_user: str = "kho_patroni"
    rest_password_file: Path = Path("patroni_password")
    rest_password_env: str | None = field(default=None, repr=False)
    max_lag_bytes: int = 64 * 1024 * 1024
    max_lag_seconds: float = 60.0
    max_slot_retained_bytes: int = 2 * 1024 * 1024 * 1024
    min_disk_free_percent: float = 10.0
    backup_repo: Path = Path("backup")
    """pgBackRest's repository (KHO_BACKUP_REPO), where backups and the WAL archive live."""
    backup_retention_full: int = 2
    """Full backups kept (KHO_BACKUP_RETENTION_FULL); older ones and the WAL only they need are expired."""

    def __post_init__(self) -> None:
        for name, value, floor in (("KHO_PATRONI_TTL", self.ttl, 20), ("KHO_PATRONI_LOOP_WAIT", self.loop_wait, 1),
                                   ("KHO_PATRONI_RETRY_TIMEOUT", self.retry_timeout, 3)):
            if value < floor:  # Patroni would raise it silently; say so instead
                raise ConfigError(f"{name}={value} is below Patroni's minimum of {floor} seconds")
        if self.loop_wait + 2 * self.retry_timeout > self.ttl:
            raise ConfigError(
                f"KHO_PATRONI_LOOP_WAIT ({self.loop_wait}) + 2 x KHO_PATRONI_RETRY_TIMEOUT ({self.retry_timeout}) "
                f"must not exceed KHO_PATRONI_TTL ({self.ttl}): a leader could lose its lock while it still runs "
                "as primary"
            )

    @property
    def embedded_etcd(self) -> bool:
        return not self.etcd_hosts

    @property
    def etcd_endpoints(self) -> tuple[str, ...]:
        return self.etcd_hosts or (f"127.0.0.1:{self.etcd_port}",)

    def rest_password(self) -> str:
        """The Patroni REST API's password (for its unsafe endpoints: switchover, restart, reinit, config)."""
        if self.rest_password_env:
            return self.rest_password_env
        return _read_secret(self.rest_password_file, "Patroni REST API", "KHO_PATRONI_PASSWORD")

    def ensure_rest_password(self) -> str:
        if self.rest_password_env or self.rest_password_file.exists():
            return self.rest_password()
        return generate_secret(self.rest_password_file)


def _nodes(env: dict[str, str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The warehouse's nodes: KHO_PG_PORTS (and KHO_PG_HOSTS) list any number, else the primary and standby
    settings name two (KHO_PG_HOST/KHO_PG_PORT, KHO_PG_STANDBY_HOST/KHO_PG_STANDBY_PORT)."""
    host = env.get("KHO_PG_HOST", "127.0.0.1")
    if env.get("KHO_PG_PORTS"):
        ports = _ports(env, "KHO_PG_PORTS", ())
        hosts = tuple(h.strip() for h in env.get("KHO_PG_HOSTS", "").split(",") if h.strip()) or (host,) * len(ports)
        if len(hosts) == 1:
            hosts = hosts * len(ports)
        if len(hosts) != len(ports) or len(ports) < 2:
            raise ConfigError(f"KHO_PG_PORTS lists {len(ports)} ports and KHO_PG_HOSTS {len(hosts)} hosts: give at "
                              "least two nodes, and one host for all or one host per port")
        return hosts, ports
    return ((host, env.get("KHO_PG_STANDBY_HOST", host)),
            (_port(env, "KHO_PG_PORT", 55432), _port(env, "KHO_PG_STANDBY_PORT", 55433)))


def _ports(env: dict[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = env.get(name)
    if not raw:
        return default
    return tuple(_port({name: part.strip()}, name, 0) for part in raw.split(","))


def _whole(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc
    if value < 0:
        raise ConfigError(f"{name}={raw} must not be negative")
    return value


def _switch(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes", "synchronous", "sync"):
        return True
    if raw in ("0", "off", "false", "no", "asynchronous", "async"):
        return False
    raise ConfigError(f"{name}={raw!r}: say on (synchronous) or off (asynchronous)")


def _ha_config(env: dict[str, str], home: Path, nodes: int) -> HaConfig:
    defaults = HaConfig()
    rest_ports = _ports(env, "KHO_PATRONI_PORTS", tuple(58008 + i for i in range(nodes)))
    if len(rest_ports) != nodes:
        raise ConfigError(f"KHO_PATRONI_PORTS lists {len(rest_ports)} ports for {nodes} warehouse nodes; "
                          "give one Patroni REST port per node")
    etcd_hosts = tuple(h.strip() for h in env.get("KHO_ETCD_HOSTS", "").split(",") if h.strip())
    return HaConfig(
        scope=env.get("KHO_PATRONI_SCOPE", defaults.scope),
        rest_ports=rest_ports,
        etcd_hosts=etcd_hosts,
        etcd_port=_port(env, "KHO_ETCD_PORT", defaults.etcd_port),
        etcd_peer_port=_port(env, "KHO_ETCD_PEER_PORT", defaults.etcd_peer_port),
        synchronous=_switch(env, "KHO_PG_SYNCHRONOUS", defaults.synchronous),
        ttl=int(_whole(env, "KHO_PATRONI_TTL", defaults.ttl)),
        loop_wait=int(_whole(env, "KHO_PATRONI_LOOP_WAIT", defaults.loop_wait)),
        retry_timeout=int(_whole(env, "KHO_PATRONI_RETRY_TIMEOUT", defaults.retry_timeout)),
        maximum_lag_on_failover=int(_whole(env, "KHO_PATRONI_MAX_LAG_ON_FAILOVER",
                                           defaults.maximum_lag_on_failover)),
        rest_password_file=Path(env.get("KHO_PATRONI_PASSWORD_FILE", str(home / "secrets" / "patroni_password"))),
        rest_password_env=env.get("KHO_PATRONI_PASSWORD") or None,
        max_lag_bytes=int(_whole(env, "KHO_HEALTH_MAX_LAG_BYTES", defaults.max_lag_bytes)),
        max_lag_seconds=_whole(env, "KHO_HEALTH_MAX_LAG_S", defaults.max_lag_seconds),
        max_slot_retained_bytes=int(_whole(env, "KHO_HEALTH_MAX_SLOT_BYTES", defaults.max_slot_retained_bytes)),
        min_disk_free_percent=_whole(env, "KHO_HEALTH_MIN_DISK_FREE_PERCENT", defaults.min_disk_free_percent),
        backup_repo=Path(env.get("KHO_BACKUP_REPO", str(home / "backup"))).resolve(),
        backup_retention_full=max(1, int(_whole(env, "KHO_BACKUP_RETENTION_FULL", defaults.backup_retention_full))),
    )


HA_SETTINGS = ("KHO_PATRONI_SCOPE", "KHO_PATRONI_PORTS", "KHO_ETCD_HOSTS", "KHO_ETCD_PORT", "KHO_ETCD_PEER_PORT",
               "KHO_PG_SYNCHRONOUS", "KHO_PATRONI_TTL", "KHO_PATRONI_LOOP_WAIT", "KHO_PATRONI_RETRY_TIMEOUT",
               "KHO_PATRONI_MAX_LAG_ON_FAILOVER", "KHO_PATRONI_PASSWORD_FILE", "KHO_HEALTH_MAX_LAG_BYTES",
               "KHO_HEALTH_MAX_LAG_S", "KHO_HEALTH_MAX_SLOT_BYTES", "KHO_HEALTH_MIN_DISK_FREE_PERCENT",
               "KHO_BACKUP_REPO", "KHO_BACKUP_RETENTION_FULL")
"""HA settings passed on to children (DAG tasks, dbt): everything but the REST API's password given by value."""


@dataclass(frozen=True)
class RegistryCredentials:
    """An OAuth2 client of the registries (client-credentials grant): what kho presents and the simulator accepts."""

    client_id: str
    client_secret: str = field(repr=False)


SIMULATOR_CLIENT_ID = "kho-warehouse"
"""The client id written to the simulator's generated credentials file: an identity, not a secret."""
REGISTRY_PREFIX = "KHO_REGISTRY_"
GLOBAL_CLIENT_SETTINGS = ("KHO_REGISTRY_CLIENT_ID", "KHO_REGISTRY_CLIENT_SECRET")
"""One client for every registry: the fallback when a registry has no `KHO_REGISTRY_<SLUG>_CLIENT_ID` of its own."""
REGISTRY_SETTINGS = ("BASE_URL", "TOKEN_URL", "CLIENT_ID", "CLIENT_SECRET_FILE", "CLIENT_SECRET", "TIMEOUT_S",
                     "RATE_LIMIT_PER_S")
"""What `KHO_REGISTRY_<SLUG>_…` may set (`RegistrySettings`); the longer of two names sharing an ending first."""
SECRET_SETTINGS = ("CLIENT_SECRET",)


def registry_prefix(slug: str) -> str:
    """`KHO_REGISTRY_POPULATION_` for `population`."""
    return f"{REGISTRY_PREFIX}{slug.upper()}_"


class _GivenEnvironment(EnvSettingsSource):
    """pydantic-settings' environment source over the mapping `KhoConfig.from_env` was given, not os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str], prefix: str) -> None:
        self._given = env
        super().__init__(settings_cls, case_sensitive=False, env_prefix=prefix, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._given.items() if value != ""}


class RegistrySettings(BaseSettings):
    """How kho reaches one registry: `KHO_REGISTRY_<SLUG>_<SETTING>`, read once (`KhoConfig.from_env`).

    Unset, a registry is the development default: the simulator (`KHO_SIM_HOST`/`KHO_SIM_PORT`) with the
    simulator's credentials file. The secret comes from the environment or from a file outside the repository.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    base_url: str | None = None
    """Where the registry's API is; its entities are under `<base_url>/<api_slug>/v1/<entity>`."""
    token_url: str | None = None
    """The OAuth2 token endpoint; default `<base_url>/oauth/token`."""
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    """A file holding the secret (first line), readable by kho only: what a secrets manager mounts."""
    timeout_s: Annotated[float, Setting(gt=0, le=3600)] = 30.0
    """Seconds to connect, and to wait for each read, of one HTTP request."""
    rate_limit_per_s: Annotated[float, Setting(gt=0)] | None = None
    """Requests per second kho sends at most (the registry's published limit); None: as fast as answered."""

    @field_validator("base_url", "token_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("give an http(s) URL, such as https://api.registry.example/")
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what `from_env` hands over: a configuration never reads os.environ behind its caller's back."""
        return (init_settings,)

    @classmethod
    def from_env(cls, slug: str, env: Mapping[str, str]) -> RegistrySettings:
        prefix = registry_prefix(slug)
        values: dict[str, Any] = _GivenEnvironment(cls, env, prefix)()
        try:
            return cls(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = prefix + str(error["loc"][0]).upper()
            shown = "" if name.endswith(SECRET_SETTINGS) else f"={error.get('input')!r}"
            raise ConfigError(f"{name}{shown}: {error['msg'].removeprefix('Value error, ')}") from None


def _registry_settings(env: Mapping[str, str]) -> dict[str, RegistrySettings]:
    """Per registry slug, the settings named in `env`; a KHO_REGISTRY_ variable kho does not know is an error
    (a typo would otherwise send a sync to the default registry)."""
    slugs: set[str] = set()
    for name in sorted(env):
        if not name.startswith(REGISTRY_PREFIX) or name in (*GLOBAL_CLIENT_SETTINGS, "KHO_REGISTRY_MODULES"):
            continue
        rest = name.removeprefix(REGISTRY_PREFIX)
        setting = next((s for s in REGISTRY_SETTINGS if rest.endswith("_" + s) and len(rest) > len(s) + 1), None)
        if setting is None:
            raise ConfigError(f"{name} is not a kho setting: a registry's are {REGISTRY_PREFIX}<REGISTRY>_"
                              f"{{{','.join(REGISTRY_SETTINGS)}}}, e.g. KHO_REGISTRY_POPULATION_BASE_URL")
        slugs.add(rest.removesuffix("_" + setting).lower())
    return {slug: RegistrySettings.from_env(slug, env) for slug in sorted(slugs)}


@dataclass(frozen=True)
class RegistryConnection:
    """Everything the API client needs to reach one registry, resolved from its settings and the defaults."""

    registry: str
    base_url: str
    token_url: str
    credentials: RegistryCredentials
    timeout_s: float = 30.0
    rate_limit_per_s: float | None = None
    credentials_from: str = ""
    """Which settings (or file) the credentials came from, for a message about a refused client."""


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
class QualityConfig:
    """The quality gates' settings: how long GX's results live, and who is told when a gate fails."""

    retention_days: int = 30
    """KHO_QUALITY_RETENTION_DAYS: GX validation results, their Data Docs pages and kho.quality_flags rows older
    than this are pruned (kho.quality_validations and kho.quality_results, small, are kept for trends)."""
    webhook_url: str | None = field(default=None, repr=False)
    """KHO_QUALITY_WEBHOOK_URL (or a file named by KHO_QUALITY_WEBHOOK_URL_FILE: such URLs often carry a token):
    receives a JSON summary of every validation in which an expectation failed."""
    webhook_timeout: float = 10.0
    """KHO_QUALITY_WEBHOOK_TIMEOUT_S: seconds per attempt; a receiver that cannot be reached is logged, never fails
    the gate."""


def _quality_config(env: dict[str, str]) -> QualityConfig:
    days = _whole(env, "KHO_QUALITY_RETENTION_DAYS", QualityConfig.retention_days)
    if days < 1:
        raise ConfigError(f"KHO_QUALITY_RETENTION_DAYS={days:g} must be at least 1 (days)")
    url = env.get("KHO_QUALITY_WEBHOOK_URL") or None
    url_file = env.get("KHO_QUALITY_WEBHOOK_URL_FILE")
    if url is None and url_file:
        try:
            url = Path(url_file).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise ConfigError(f"KHO_QUALITY_WEBHOOK_URL_FILE={url_file}: {exc.strerror}") from None
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError("KHO_QUALITY_WEBHOOK_URL must be an http:// or https:// URL")
    timeout = _whole(env, "KHO_QUALITY_WEBHOOK_TIMEOUT_S", QualityConfig.webhook_timeout)
    if timeout <= 0:
        raise ConfigError(f"KHO_QUALITY_WEBHOOK_TIMEOUT_S={timeout:g} must be positive (seconds)")
    return QualityConfig(retention_days=int(days), webhook_url=url, webhook_timeout=float(timeout))


QUALITY_SETTINGS = ("KHO_QUALITY_RETENTION_DAYS", "KHO_QUALITY_WEBHOOK_URL", "KHO_QUALITY_WEBHOOK_URL_FILE",
                    "KHO_QUALITY_WEBHOOK_TIMEOUT_S", "KHO_EXPECTATIONS_DIR")


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
    airflow_port: int = 8080
    """KHO_AIRFLOW_PORT: the Airflow API server's port on 127.0.0.1, from which its base URL and the Execution API
    URL its task workers call are derived (`kho.airflow_env`)."""
    project_root: Path = PROJECT_ROOT
    ha: HaConfig = field(default_factory=HaConfig)
    """Failover (Patroni + etcd), health thresholds and backups (pgBackRest)."""
    child_ha_env: Mapping[str, str] = field(default_factory=dict)
    """The HA settings as given in the environment, passed on to children unchanged."""
    registry_client_id: str | None = None
    """From KHO_REGISTRY_CLIENT_ID: with the secret, the client of every registry without one of its own."""
    registry_client_secret: str | None = field(default=None, repr=False)
    registries: Mapping[str, RegistrySettings] = field(default_factory=dict)
    """Per registry slug, its `KHO_REGISTRY_<SLUG>_*` settings; a registry absent here is the simulator."""
    registry_modules: str = ""
    """KHO_REGISTRY_MODULES as given: `kho.sources` reads it itself on import; kept to pass on to children."""
    reject_limits: dict[str, RejectLimit] = field(default_factory=dict)
    """When a batch's rejects refuse it as a whole (`RejectLimit`): under "" for every registry, under a
    registry's name for that one."""
    quality: QualityConfig = field(default_factory=QualityConfig)
    gx_project: Path | None = None
    """KHO_EXPECTATIONS_DIR: the GX project to run (default the repository's `expectations/`); a deployment that
    adds a registry runs the one `kho generate --out DIR` wrote, `DIR/expectations`."""
    child_quality_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The quality settings as given in the environment, passed on to children unchanged."""
    docs_port: int = 58090
    """KHO_DOCS_PORT: where `kho docs` serves the dbt docs, Data Docs and run report (on localhost by default)."""

    def reject_limit(self, registry: str) -> RejectLimit:
        """The registry's own limit, else the default; a limit set for a registry kho does not know is an error."""
        known = _known_registries()
        unknown = sorted(set(self.reject_limits) - {"", *known})
        if unknown:
            names = ", ".join(self.reject_limits[u].setting for u in unknown)
            raise ConfigError(f"{names} names no registry kho knows; registries: {', '.join(known)}")
        return self.reject_limits.get(registry) or self.reject_limits.get("") or RejectLimit()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KhoConfig:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("KHO_HOME", str(Path.cwd() / ".kho"))).resolve()
        hosts, ports = _nodes(env)
        warehouse = WarehouseConfig(
            hosts=hosts,
            ports=ports,
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
            airflow_port=_port(env, "KHO_AIRFLOW_PORT", 8080),
            registry_client_id=env.get("KHO_REGISTRY_CLIENT_ID") or None,
            registry_client_secret=env.get("KHO_REGISTRY_CLIENT_SECRET") or None,
            registries=_registry_settings(env),
            registry_modules=env.get("KHO_REGISTRY_MODULES", ""),
            reject_limits=_reject_limits(env),
            ha=_ha_config(env, home, len(warehouse.ports)),
            child_ha_env={name: env[name] for name in HA_SETTINGS if env.get(name)},
            quality=_quality_config(env),
            gx_project=Path(env["KHO_EXPECTATIONS_DIR"]).resolve() if env.get("KHO_EXPECTATIONS_DIR") else None,
            child_quality_env={name: env[name] for name in QUALITY_SETTINGS if env.get(name)},
            docs_port=_port(env, "KHO_DOCS_PORT", 58090),
        )

    @property
    def simulator_url(self) -> str:
        return f"http://{self.simulator_host}:{self.simulator_port}"

    # --- reaching the registries ---------------------------------------------------------------------------------

    def registry_settings(self, slug: str) -> RegistrySettings:
        """The registry's settings (defaults if none are set); settings naming no registry kho knows are an error."""
        known = _known_registries()
        unknown = sorted(set(self.registries) - set(known))
        if unknown:
            names = ", ".join(f"{registry_prefix(u)}*" for u in unknown)
            raise ConfigError(f"{names} names no registry kho knows; registries: {', '.join(known)}")
        if slug not in known:
            raise ConfigError(f"unknown registry {slug!r}; known registries: {', '.join(known)}")
        return self.registries.get(slug) or RegistrySettings()

    def registry_connection(self, slug: str) -> RegistryConnection:
        """Where and as whom kho reaches one registry. Fails fast, naming the setting to set; never generates
        anything (only `kho demo` and `kho simulate` create the simulator's credentials)."""
        settings = self.registry_settings(slug)
        base_url = settings.base_url or self.simulator_url
        credentials, origin = self._registry_client(slug, settings)
        return RegistryConnection(
            registry=slug, base_url=base_url, token_url=settings.token_url or base_url + "/oauth/token",
            credentials=credentials, timeout_s=settings.timeout_s, rate_limit_per_s=settings.rate_limit_per_s,
            credentials_from=origin)

    def _registry_client(self, slug: str, settings: RegistrySettings) -> tuple[RegistryCredentials, str]:
        """The registry's own client, else the global one, else (for the simulator only) the simulator's file."""
        prefix = registry_prefix(slug)
        wanted = (f"set {prefix}CLIENT_ID and {prefix}CLIENT_SECRET (or {prefix}CLIENT_SECRET_FILE, a file "
                  "holding it)")
        if settings.client_id or settings.client_secret or settings.client_secret_file:
            return self._own_client(prefix, settings), f"{prefix}CLIENT_ID and its secret"
        if self.registry_client_id or self.registry_client_secret:
            return self._global_client(), "KHO_REGISTRY_CLIENT_ID and KHO_REGISTRY_CLIENT_SECRET"
        if settings.base_url is not None:
            raise ConfigError(f"registry {slug} ({settings.base_url}) has no client credentials: {wanted}")
        path = self.simulator_credentials_file
        if not path.exists():
            raise ConfigError(f"registry {slug} has no client credentials: {wanted}; or, for the simulator "
                              f"(the default registry), run `kho simulate serve` or `kho demo` to create {path}")
        return self._simulator_file_credentials(), f"the simulator's {path}"

    @staticmethod
    def _own_client(prefix: str, settings: RegistrySettings) -> RegistryCredentials:
        if not settings.client_id:
            raise ConfigError(f"{prefix}CLIENT_SECRET or _CLIENT_SECRET_FILE is set but not {prefix}CLIENT_ID: "
                              "set the client id too")
        if settings.client_secret and settings.client_secret_file:
            raise ConfigError(f"set {prefix}CLIENT_SECRET or {prefix}CLIENT_SECRET_FILE, not both")
        if settings.client_secret:
            return RegistryCredentials(settings.client_id, settings.client_secret.get_secret_value())
        if settings.client_secret_file is None:
            raise ConfigError(f"{prefix}CLIENT_ID is set without a secret: set {prefix}CLIENT_SECRET or "
                              f"{prefix}CLIENT_SECRET_FILE")
        path = settings.client_secret_file
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{prefix}CLIENT_SECRET_FILE={path}: cannot read it ({exc.strerror})") from None
        if not secret:
            raise ConfigError(f"{prefix}CLIENT_SECRET_FILE={path} is empty; put the client secret in it")
        return RegistryCredentials(settings.client_id, secret)

    def _global_client(self) -> RegistryCredentials:
        if not (self.registry_client_id and self.registry_client_secret):
            raise ConfigError("set both KHO_REGISTRY_CLIENT_ID and KHO_REGISTRY_CLIENT_SECRET, or neither "
                              f"(then {self.simulator_credentials_file} is used for the simulator)")
        return RegistryCredentials(self.registry_client_id, self.registry_client_secret)

    # --- the simulator's own client (development and tests) ----------------------------------------------------------

    @property
    def simulator_credentials_file(self) -> Path:
        """The simulator's generated client credentials: outside the repository, readable by its owner only."""
        return self.home / "secrets" / "registry_client.json"

    def simulator_credentials(self) -> RegistryCredentials:
        """The client the simulator accepts: KHO_REGISTRY_CLIENT_ID/_SECRET, else its credentials file."""
        if self.registry_client_id or self.registry_client_secret:
            return self._global_client()
        if not self.simulator_credentials_file.exists():
            raise ConfigError("no client credentials for the simulator: set KHO_REGISTRY_CLIENT_ID and "
                              "KHO_REGISTRY_CLIENT_SECRET, or run `kho simulate serve` to create "
                              f"{self.simulator_credentials_file}")
        return self._simulator_file_credentials()

    def _simulator_file_credentials(self) -> RegistryCredentials:
        path = self.simulator_credentials_file
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read {path} ({exc.strerror})") from None
        except ValueError as exc:
            raise ConfigError(f"{path} is not JSON ({exc}); delete it to have it generated again") from exc
        if not (isinstance(value, dict) and isinstance(value.get("client_id"), str)
                and isinstance(value.get("client_secret"), str)):
            raise ConfigError(f"{path} must hold a JSON object with string client_id and client_secret")
        return RegistryCredentials(value["client_id"], value["client_secret"])

    def ensure_simulator_credentials(self) -> RegistryCredentials:
        """The simulator's client, generating its file on first use. Only `kho simulate`, `kho demo` and tests
        that stand a simulator up call this; syncs only read (`registry_connection`)."""
        path = self.simulator_credentials_file
        if self.registry_client_id or self.registry_client_secret or path.exists():
            return self.simulator_credentials()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        credentials = RegistryCredentials(SIMULATOR_CLIENT_ID, secrets.token_urlsafe(32))
        # Created 0600 from the start: the secret is never readable by others, not even for an instant.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"client_id": credentials.client_id, "client_secret": credentials.client_secret}, out)
            out.write("\n")
        return credentials

    # Old names, kept for callers that stand a simulator up (tests, benchmarks).
    registry_credentials_file = simulator_credentials_file
    registry_credentials = simulator_credentials
    ensure_registry_credentials = ensure_simulator_credentials

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def gx_home(self) -> Path:
        return self.home / "gx"

    @property
    def expectations_dir(self) -> Path:
        return self.gx_project or self.project_root / "expectations"

    def child_env(self, *, secrets: bool = True) -> dict[str, str]:
        """Environment for subprocesses (dbt, airflow) that must reach the same warehouse, simulator and
        registries. `secrets=False` leaves out registry secrets given by value (for a file written to disk)."""
        wh = self.warehouse
        return {
            "KHO_HOME": str(self.home),
            "KHO_PG_HOST": wh.hosts[0],
            "KHO_PG_STANDBY_HOST": wh.hosts[1],
            "KHO_PG_PORT": str(wh.primary_port),
            "KHO_PG_STANDBY_PORT": str(wh.standby_port),
            **({"KHO_PG_HOSTS": ",".join(wh.hosts), "KHO_PG_PORTS": ",".join(map(str, wh.ports))}
               if len(wh.ports) > 2 else {}),
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
            "KHO_AIRFLOW_PORT": str(self.airflow_port),
            **self.child_ha_env,
            **{k: v for k, v in self.child_quality_env.items() if secrets or k != "KHO_QUALITY_WEBHOOK_URL"},
            **self._registry_env(secrets),
        }

    def _registry_env(self, secrets: bool) -> dict[str, str]:
        """Registry settings given in the environment follow into subprocesses (a file is found via KHO_HOME)."""
        env = {"KHO_REGISTRY_MODULES": self.registry_modules} if self.registry_modules else {}
        if self.registry_client_id and self.registry_client_secret:
            env["KHO_REGISTRY_CLIENT_ID"] = self.registry_client_id
            if secrets:
                env["KHO_REGISTRY_CLIENT_SECRET"] = self.registry_client_secret
        for slug, settings in self.registries.items():
            prefix = registry_prefix(slug)
            for name, value in settings.model_dump(exclude_none=True).items():
                if isinstance(value, SecretStr):
                    if not secrets:
                        continue
                    value = value.get_secret_value()
                env[prefix + name.upper()] = str(value)
        return env


def _known_registries() -> tuple[str, ...]:
    """The slugs of `kho.sources.REGISTRIES`, imported late: config is read before (and below) the sources."""
    from kho.sources import REGISTRIES

    return tuple(r.slug for r in REGISTRIES)
