"""The Patroni configuration of the compose deployment: the embedded nodes' configuration, made a template.

`kho generate` writes it to `deploy/patroni/patroni.yml` (and `--check` fails when it drifts). Every container of the
warehouse mounts the same file; what differs between members (its name, addresses, data and program directories,
where etcd is) and every secret comes from Patroni's own `PATRONI_*` environment variables (`MEMBER_ENV`,
`SECRET_ENV`), which Patroni lays over the file before validating it. The cluster-wide part is
`kho.warehouse.patroni.dcs_settings` itself, so the embedded default and compose fail over with the same values.

What differs from an embedded node, and why (`CONTAINER_ONLY`): clients and replicas come from the compose network
(`NETWORK_CIDR`) rather than loopback; the server runs as the image's `postgres` user with Debian's socket
directory; pgaudit is preloaded (the image installs it); WAL goes to pgBackRest through the image's
`/etc/pgbackrest/pgbackrest.conf` rather than a per-node configuration under KHO_HOME.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kho.config import KhoConfig
from kho.warehouse import patroni
from kho.warehouse.backup.pgbackrest import archive_parameters

TEMPLATE = Path("deploy", "patroni", "patroni.yml")
"""Where `kho generate` writes the template, relative to the project root."""
NETWORK_CIDR = "172.30.13.0/24"
"""The compose network's subnet (its `ipam` config must say the same): the only addresses pg_hba lets in over TCP."""
OS_USER = "postgres"
"""The image's server user: the administrator by peer identity over the node's own socket (pgBackRest)."""
SOCKET_DIR = "/var/run/postgresql"
PGBACKREST = "/usr/bin/pgbackrest"
PGBACKREST_CONFIG = "/etc/pgbackrest/pgbackrest.conf"
"""The image's pgBackRest configuration: the repository (a volume shared with the backup container) and pg1-path."""
IMAGE_PACKAGES = ("postgresql-17", "postgresql-17-pgaudit", "pgbackrest", "patroni[etcd3]")
"""What the warehouse image must hold for this configuration: PostgreSQL 15 or later (jsonlog), pgaudit, a pgBackRest
that knows its PostgreSQL (2.54 or later for 17: `patroni.PGBACKREST_MAX_MAJOR`) and Patroni with its etcd3 client."""
COMPOSE_ENV = {"KHO_HOME": "/var/lib/kho"}
"""The settings the committed template is rendered from: kho's defaults, whatever this machine's environment says,
so `kho generate --check` gives the same file everywhere."""

MEMBER_ENV = {
    "PATRONI_NAME": "dc1",
    "PATRONI_RESTAPI_LISTEN": "0.0.0.0:8008",
    "PATRONI_RESTAPI_CONNECT_ADDRESS": "pg-dc1:8008",
    "PATRONI_POSTGRESQL_LISTEN": "0.0.0.0:5432",
    "PATRONI_POSTGRESQL_CONNECT_ADDRESS": "pg-dc1:5432",
    "PATRONI_POSTGRESQL_DATA_DIR": "/var/lib/postgresql/data",
    "PATRONI_POSTGRESQL_BIN_DIR": "/usr/lib/postgresql/17/bin",
    "PATRONI_POSTGRESQL_PGPASS": "/var/lib/postgresql/pgpass",
    "PATRONI_ETCD3_HOSTS": "etcd1:2379,etcd2:2379,etcd3:2379",
}
"""What each warehouse container sets, with the first member's values as an example: Patroni reads these names
(patroni/config.py `_build_environment_configuration`)."""
SECRET_ENV = ("PATRONI_SUPERUSER_PASSWORD", "PATRONI_REPLICATION_PASSWORD", "PATRONI_REWIND_PASSWORD",
              "PATRONI_RESTAPI_USERNAME", "PATRONI_RESTAPI_PASSWORD")
"""The secrets, from the compose `.env`: the same names `kho.warehouse.patroni.secret_env` gives an embedded node."""

MEMBER_SPECIFIC = (
    ("name",), ("restapi", "listen"), ("restapi", "connect_address"), ("etcd3", "hosts"),
    ("postgresql", "listen"), ("postgresql", "connect_address"), ("postgresql", "data_dir"),
    ("postgresql", "bin_dir"), ("postgresql", "pgpass"),
)
"""Paths of the embedded configuration left out of the template, each set by one of MEMBER_ENV."""
CONTAINER_ONLY = (
    ("postgresql", "parameters", "unix_socket_directories"), ("postgresql", "parameters", "shared_preload_libraries"),
    ("postgresql", "parameters", "archive_command"), ("postgresql", "parameters", "restore_command"),
    ("postgresql", "pg_hba"), ("postgresql", "pg_ident"),
)
"""Paths whose value the container gives differently from an embedded node (see the module's docstring)."""
EMBEDDED_ONLY = (("log", "dir"), ("log", "file_num"), ("log", "file_size"))
"""Paths of the embedded configuration a container does without: Patroni's own log files and their rotation (a
container logs to stderr, which compose keeps)."""


def compose_config() -> KhoConfig:
    return KhoConfig.from_env(COMPOSE_ENV)


def parameters(config: KhoConfig) -> dict[str, Any]:
    """A container's own PostgreSQL settings: an embedded node's (`patroni.local_parameters`) with the image's
    socket directory, pgaudit, and archiving through the image's pgBackRest configuration."""
    return {
        "unix_socket_directories": SOCKET_DIR,
        "unix_socket_permissions": "0700",
        "wal_retrieve_retry_interval": "1s",
        "shared_preload_libraries": "pgaudit",
        **patroni.LOGGING_PARAMETERS,
        "log_destination": "stderr,jsonlog",
        **archive_parameters(PGBACKREST, PGBACKREST_CONFIG, config.ha.scope),
    }


def settings(config: KhoConfig | None = None, network: str = NETWORK_CIDR) -> dict[str, Any]:
    """The compose members' Patroni configuration, before the PATRONI_* environment fills in each member: the
    embedded nodes' (`patroni.cluster_settings`) with the container's parameters and network."""
    config = config or compose_config()
    return patroni.cluster_settings(config, parameters=parameters(config), network=network, os_user=OS_USER)


def render(config: KhoConfig | None = None, network: str = NETWORK_CIDR) -> str:
    """deploy/patroni/patroni.yml: the template, headed by what each container must set."""
    header = "\n# ".join([
        "Generated by `kho generate` from kho.warehouse.compose (kho.warehouse.patroni's settings); do not edit.",
        "Each warehouse container sets its own member (values for dc1):",
        *(f"  {name}={value}" for name, value in MEMBER_ENV.items()),
        "and the secrets, from .env: " + ", ".join(SECRET_ENV) + ".",
        f"pg_hba admits the compose network {network} only; the compose file's network must use that subnet.",
    ])
    return patroni.render(settings(config, network), header)
