"""The compose deployment's Patroni configuration: Patroni's own loader and schema accept it once a member's PATRONI_*
variables are set, and it is the embedded nodes' configuration except where a container must differ."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from kho.config import PROJECT_ROOT, KhoConfig
from kho.warehouse import compose, patroni
from kho.warehouse.binaries import find_binaries
from kho.warehouse.layout import layout

SECRETS = {"PATRONI_SUPERUSER_PASSWORD": "s3", "PATRONI_REPLICATION_PASSWORD": "r3", "PATRONI_REWIND_PASSWORD": "s3",
           "PATRONI_RESTAPI_USERNAME": "kho_patroni", "PATRONI_RESTAPI_PASSWORD": "p3"}


def leaves(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, value) of every setting; a list (pg_hba, initdb) is one value."""
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


@pytest.fixture
def etcd_ports() -> Iterator[list[int]]:
    """Three listening TCP ports standing where the compose file's etcd members would: Patroni's validator only
    checks that each of etcd's addresses accepts a connection."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(3):
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            ports.append(int(listener.getsockname()[1]))
        yield ports


def member_env(tmp_path: Path, etcd_ports: list[int]) -> dict[str, str]:
    """A member's variables as a container would set them, with its data and program directories and etcd's hosts on
    this machine (Patroni's validator checks that the programs exist and that etcd answers)."""
    return {**compose.MEMBER_ENV, "PATRONI_POSTGRESQL_DATA_DIR": str(tmp_path / "data"),
            "PATRONI_ETCD3_HOSTS": ",".join(f"127.0.0.1:{port}" for port in etcd_ports),
            "PATRONI_POSTGRESQL_BIN_DIR": str(find_binaries().bindir), **SECRETS}


def validated(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What `patroni --validate-config --ignore-listen-port` does: load the file under the environment and check it
    against patroni.validator's schema (the ports are the container's, not this machine's to bind)."""
    from patroni import validator
    from patroni.config import Config

    monkeypatch.setitem(validator._validation_params, "ignore_listen_port", True)
    return Config(str(path), validator=validator.schema)


def test_the_committed_template_is_what_kho_renders() -> None:
    assert (PROJECT_ROOT / compose.TEMPLATE).read_text(encoding="utf-8") == compose.render()


def test_patroni_loads_and_validates_the_template_with_a_members_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, etcd_ports: list[int]) -> None:
    path = tmp_path / "patroni.yml"
    path.write_text(compose.render(), encoding="utf-8")
    env = member_env(tmp_path, etcd_ports)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    loaded = validated(path, monkeypatch)  # raises ConfigParseError listing what the schema refuses

    local = loaded.local_configuration
    assert local["name"] == "dc1"
    assert local["postgresql"]["data_dir"] == env["PATRONI_POSTGRESQL_DATA_DIR"]
    assert local["etcd3"] == {"hosts": [f"127.0.0.1:{port}" for port in etcd_ports], "protocol": "http"}
    assert local["postgresql"]["authentication"]["superuser"] == {"username": "kho_admin", "password": "s3"}
    assert local["restapi"]["authentication"] == {"username": "kho_patroni", "password": "p3"}
    assert local["bootstrap"]["dcs"] == patroni.dcs_settings(compose.compose_config())  # what the cluster starts on


def test_patroni_refuses_the_template_without_a_members_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, etcd_ports: list[int]) -> None:
    """The template alone names no member: the schema check really runs on it."""
    from patroni.exceptions import ConfigParseError

    path = tmp_path / "patroni.yml"
    path.write_text(compose.render(), encoding="utf-8")
    env = member_env(tmp_path, etcd_ports)
    del env["PATRONI_NAME"], env["PATRONI_RESTAPI_LISTEN"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigParseError) as refused:
        validated(path, monkeypatch)
    assert "name" in str(refused.value) and "restapi.listen" in str(refused.value)


def test_the_member_variables_set_exactly_what_the_template_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from patroni.config import Config

    for name, value in compose.MEMBER_ENV.items():
        monkeypatch.setenv(name, value)
    from_env = dict(Config._build_environment_configuration())
    assert {path for path, _ in leaves(from_env)} == set(compose.MEMBER_SPECIFIC)


def test_the_secrets_are_those_an_embedded_node_gets(tmp_path: Path) -> None:
    config = KhoConfig.from_env({"KHO_HOME": str(tmp_path), "KHO_PG_ADMIN_PASSWORD": "a", "KHO_PATRONI_PASSWORD": "p"})
    assert set(compose.SECRET_ENV) == set(patroni.secret_env(config))


def test_the_cluster_wide_settings_are_the_embedded_ones() -> None:
    template = yaml.safe_load(compose.render())
    assert template["bootstrap"]["dcs"] == patroni.dcs_settings(compose.compose_config())
    dcs = template["bootstrap"]["dcs"]
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]
    assert dcs["postgresql"]["parameters"]["synchronous_commit"] == "remote_apply"


def test_the_template_is_an_embedded_nodes_configuration_but_for_the_member_and_the_container(
        tmp_path: Path) -> None:
    """Every setting of an embedded node's configuration (`patroni.config_for`) is in the template with the same
    value, unless it is the member's own (left to PATRONI_*), one a container must give differently, or one it does
    without (Patroni's log files); and the template has nothing else. A setting added to the embedded nodes fails
    here until compose has it too."""
    config = KhoConfig.from_env({"KHO_HOME": str(tmp_path)})
    embedded = dict(leaves(patroni.config_for(config, layout(config).members[0], find_binaries(), "postgres")))
    template = dict(leaves(yaml.safe_load(compose.render())))

    assert not set(compose.MEMBER_SPECIFIC) & set(template), "a member's own setting is baked into the template"
    assert set(compose.MEMBER_SPECIFIC) <= set(embedded)
    assert set(template) == set(embedded) - set(compose.MEMBER_SPECIFIC) - set(compose.EMBEDDED_ONLY)
    differ = {path for path in template if template[path] != embedded[path]}
    assert differ <= set(compose.CONTAINER_ONLY), sorted(differ - set(compose.CONTAINER_ONLY))


def test_only_the_compose_network_reaches_the_server_over_tcp() -> None:
    hba = yaml.safe_load(compose.render())["postgresql"]["pg_hba"]
    tcp = [line.split() for line in hba if line.startswith("host")]
    assert tcp and all(fields[3] == compose.NETWORK_CIDR and fields[4] == "scram-sha-256" for fields in tcp)
    assert ipaddress.ip_network(compose.NETWORK_CIDR).is_private
    assert not any("trust" in line for line in hba)
    assert [f[1] for f in tcp if f[2] == '"kho_replicator"'] == ["replication"]
