"""The failover settings kho gives Patroni: read from the environment, refused when Patroni would change them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kho.config import KhoConfig
from kho.errors import ConfigError
from kho.warehouse import patroni
from kho.warehouse.binaries import BinarySource, PgBinaries
from kho.warehouse.layout import layout


def config(tmp_path: Path, **env: str) -> KhoConfig:
    return KhoConfig.from_env({"KHO_HOME": str(tmp_path), **env})


def test_defaults_are_synchronous_with_timing_patroni_accepts(tmp_path: Path) -> None:
    ha = config(tmp_path).ha
    assert (ha.synchronous, ha.ttl, ha.loop_wait, ha.retry_timeout) == (True, 20, 2, 9)
    assert ha.loop_wait + 2 * ha.retry_timeout <= ha.ttl
    assert ha.rest_ports == (58008, 58009) and ha.embedded_etcd


@pytest.mark.parametrize(("value", "synchronous"), [("off", False), ("asynchronous", False), ("0", False),
                                                    ("on", True), ("synchronous", True), ("", True)])
def test_synchronous_switch(tmp_path: Path, value: str, synchronous: bool) -> None:
    assert config(tmp_path, KHO_PG_SYNCHRONOUS=value).ha.synchronous is synchronous


@pytest.mark.parametrize(("env", "message"), [
    ({"KHO_PG_SYNCHRONOUS": "maybe"}, "say on"),
    ({"KHO_PATRONI_TTL": "10"}, "below Patroni's minimum of 20"),
    ({"KHO_PATRONI_RETRY_TIMEOUT": "2"}, "below Patroni's minimum of 3"),
    ({"KHO_PATRONI_LOOP_WAIT": "5"}, "must not exceed KHO_PATRONI_TTL"),
    ({"KHO_PATRONI_PORTS": "58008"}, "one Patroni REST port per node"),
    ({"KHO_PATRONI_PORTS": "58008,x"}, "not a port number"),
    ({"KHO_PATRONI_TTL": "soon"}, "is not a number"),
    ({"KHO_PG_PORTS": "55432"}, "at least two nodes"),
    ({"KHO_PG_PORTS": "55432,55433,55434", "KHO_PG_HOSTS": "a,b"}, "one host per port"),
])
def test_bad_settings_are_refused_in_one_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        config(tmp_path, **env)
    assert "\n" not in str(raised.value)


def test_an_etcd_of_the_operators_replaces_the_embedded_one(tmp_path: Path) -> None:
    ha = config(tmp_path, KHO_ETCD_HOSTS="etcd1:2379, etcd2:2379").ha
    assert not ha.embedded_etcd
    assert ha.etcd_endpoints == ("etcd1:2379", "etcd2:2379")


def test_ha_settings_follow_into_children(tmp_path: Path) -> None:
    env = config(tmp_path, KHO_PG_SYNCHRONOUS="off", KHO_PATRONI_PORTS="50001,50002",
                 KHO_PATRONI_PASSWORD="not-passed").child_env()
    assert env["KHO_PG_SYNCHRONOUS"] == "off" and env["KHO_PATRONI_PORTS"] == "50001,50002"
    assert "KHO_PATRONI_PASSWORD" not in env


def _bins(source: BinarySource = "system") -> PgBinaries:
    return PgBinaries(bindir=Path("/usr/lib/postgresql/15/bin"), source=source, major=15)


def test_patroni_configuration_carries_the_settings_and_no_secret(tmp_path: Path) -> None:
    c = config(tmp_path, KHO_PG_SYNCHRONOUS="off", KHO_PG_ADMIN_PASSWORD="admin-secret",
               KHO_PATRONI_PASSWORD="rest-secret")
    member = layout(c).member("dc2")
    settings = patroni.config_for(c, member, _bins(), "postgres")
    text = patroni.render(settings, "test")

    assert "admin-secret" not in text and "rest-secret" not in text
    dcs = settings["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 2, 9)
    assert dcs["synchronous_mode"] is False and dcs["primary_start_timeout"] == 30
    assert dcs["postgresql"]["parameters"]["synchronous_commit"] == "on"
    assert settings["postgresql"]["listen"] == f"127.0.0.1:{c.warehouse.standby_port}"
    assert settings["restapi"]["listen"] == f"127.0.0.1:{c.ha.rest_ports[1]}"
    assert settings["postgresql"]["pg_ident"] == [f"kho postgres {c.warehouse.admin_user}"]
    assert patroni.secret_env(c)["PATRONI_SUPERUSER_PASSWORD"] == "admin-secret"


def test_pg_hba_quotes_role_names(tmp_path: Path) -> None:
    c = config(tmp_path, KHO_PG_REPLICATION_USER='repl"x', KHO_PG_ADMIN_USER="Admin")
    hba = patroni.pg_hba(c)
    assert hba[0] == 'local all "Admin" peer map=kho'
    assert hba[-1] == 'host replication "repl""x" 127.0.0.1/32 scram-sha-256'
