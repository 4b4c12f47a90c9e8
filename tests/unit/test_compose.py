"""docker-compose.yml is valid Compose and names only what exists and agrees with kho's own configuration.

No Docker engine runs on these machines, so the file is checked as data: against the Compose specification's JSON
schema, vendored as tests/support/compose/compose-spec.json from github:compose-spec/compose-spec
(schema/compose-spec.json at commit a08f8d51631b7127ddac3d2c65537db429d0f1d0, "Update compose-spec.json",
2025-10-28; the repository's HEAD when vendored was 170098ba07d9f53c383a41bfd4c5166b0a4529a6); then against the
repository (images, volumes, mounted paths, `${VAR}`s and .env.example), kho's argparse parser and Airflow's, and the
settings kho.config reads and deploy/patroni/patroni.yml gives Patroni.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.version import Version

from kho.cli import build_parser
from kho.config import PROJECT_ROOT, KhoConfig
from kho.warehouse import compose, logins

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
SCHEMA = Path(__file__).resolve().parents[1] / "support" / "compose" / "compose-spec.json"
MEMBERS = {"pg-dc1": "dc1", "pg-dc2": "dc2"}
"""The warehouse services and the Patroni member each one is (compose.MEMBER_ENV's values are dc1's)."""
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$")


def raw_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


def compose_file() -> dict[str, Any]:
    """The file as Compose reads it before interpolation: YAML with anchors and merge keys resolved."""
    loaded = yaml.safe_load(raw_text())
    assert isinstance(loaded, dict)
    return loaded


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not NAME=value"
            values[name.strip()] = value
    return values


def operator_env() -> dict[str, str]:
    """.env.example as an operator fills it in: every secret given a value, the rest left as they are."""
    return {name: value or (f"filled-{name.lower()}" if SECRET_NAME.search(name) else "")
            for name, value in env_example().items()}


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one string (`${VAR}`, `:-`/`-` defaults, `:?`/`?` required, `$$`)."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        given = env.get(name)
        empty = given is None or (op.startswith(":") and given == "")
        if op.endswith("?") and empty:
            raise AssertionError(f"compose would refuse to start: {name} unset ({arg})")
        if op.endswith("-") and empty:
            return arg
        return given or ""

    return VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def service_env(service: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    given = compose_file()["services"][service].get("environment", {})
    assert isinstance(given, dict), f"{service}: give environment as a mapping"
    return {name: interpolate(str(value), operator_env() if env is None else env) for name, value in given.items()}


def argv(service: Mapping[str, Any]) -> list[str]:
    """What a service runs: its entrypoint (if it overrides the image's) followed by its command."""
    def as_list(value: Any) -> list[str]:
        return shlex.split(value) if isinstance(value, str) else [str(v) for v in value or []]

    return as_list(service.get("entrypoint")) + as_list(service.get("command"))


def mounts(service: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(source, target) of each of a service's volumes, short or long syntax."""
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            yield source, rest.split(":")[0]
        else:
            yield str(volume.get("source", "")), str(volume["target"])


def is_host_path(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def locked_version(package: str) -> Version:
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text(encoding="utf-8"))
    return Version(next(p["version"] for p in lock["package"] if p["name"] == package))


def project_version() -> str:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return str(pyproject["project"]["version"])


def patroni_template() -> dict[str, Any]:
    loaded = yaml.safe_load((PROJECT_ROOT / compose.TEMPLATE).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


# --- the Compose specification ------------------------------------------------------------------------------------


def schema_errors(document: Any) -> list[str]:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_the_file_is_valid_against_the_compose_specification() -> None:
    assert schema_errors(compose_file()) == []


def test_the_schema_check_refuses_what_compose_would() -> None:
    """The vendored schema really constrains: a misspelt key, a wrong type and an unknown condition are refused."""
    broken = compose_file()
    broken["services"]["redis"]["imagee"] = broken["services"]["redis"].pop("image")
    broken["services"]["airflow-worker"]["stop_grace_period"] = 300
    broken["services"]["airflow-init"]["depends_on"]["airflow-db"]["condition"] = "service_ready"
    errors = "\n".join(schema_errors(broken))
    assert "imagee" in errors
    assert "services/airflow-worker/stop_grace_period" in errors
    assert "service_ready" in errors


# --- images -------------------------------------------------------------------------------------------------------


def images() -> dict[str, str]:
    return {name: str(s["image"]) for name, s in compose_file()["services"].items()}


def test_every_service_names_an_image_with_a_pinned_tag() -> None:
    for service, image in images().items():
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{service}: {image} has no tag"
        assert tag != "latest" and "$" not in image, f"{service}: {image} is not pinned"
        assert re.match(r"v?\d+\.\d+", tag), f"{service}: {image}'s tag names no version"


def test_the_images_are_the_releases_kho_is_locked_to() -> None:
    """kho's own images carry kho's version; Airflow's is the release uv.lock locks, on kho's Python; the warehouse
    runs the Patroni uv.lock locks; etcd is past 3.5.3's consistency fix (the embedded default's 3.5.1 is not)."""
    found = images()
    assert found["airflow-scheduler"] == f"kho-airflow:{project_version()}"
    assert found["pg-dc1"] == f"kho-warehouse:{project_version()}"
    airflow_dockerfile = (PROJECT_ROOT / "deploy/airflow/Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^FROM apache/airflow:(\S+)-python(\d+\.\d+)$", airflow_dockerfile, re.M)
    assert base, "deploy/airflow/Dockerfile is not built on apache/airflow:<version>-python<x.y>"
    assert Version(base[1]) == locked_version("apache-airflow-core")
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == base[2]
    warehouse_dockerfile = (PROJECT_ROOT / "deploy/warehouse/Dockerfile").read_text(encoding="utf-8")
    patroni_pin = re.search(r"'patroni\[([a-z0-9,]+)\]==([0-9.]+)'", warehouse_dockerfile)
    assert patroni_pin and "etcd3" in patroni_pin[1].split(",")
    assert Version(patroni_pin[2]) == locked_version("patroni")
    etcd = {image.rpartition(":")[2] for service, image in found.items() if service.startswith("etcd")}
    assert len(etcd) == 1 and Version(etcd.pop()) >= Version("3.5.3")


def test_the_warehouse_image_holds_what_the_patroni_template_needs() -> None:
    dockerfile = (PROJECT_ROOT / "deploy/warehouse/Dockerfile").read_text(encoding="utf-8")
    major = re.search(r"^FROM postgres:(\d+)\.\d+-\w+$", dockerfile, re.M)
    assert major, "deploy/warehouse/Dockerfile is not built on postgres:<major>.<minor>-<distribution>"
    assert f"postgresql-{major[1]}" in compose.IMAGE_PACKAGES
    for package in compose.IMAGE_PACKAGES:
        if package != f"postgresql-{major[1]}":  # the base image's own server
            assert package.split("[")[0] in dockerfile, f"the warehouse image does not install {package}"
    for member in MEMBERS:
        assert service_env(member)["PATRONI_POSTGRESQL_BIN_DIR"] == f"/usr/lib/postgresql/{major[1]}/bin"
    assert compose.PGBACKREST.startswith("/usr/bin/")  # Debian's package's path


# --- volumes, paths, build contexts -------------------------------------------------------------------------------


def test_every_named_volume_is_declared_and_every_declared_one_used() -> None:
    document = compose_file()
    used = {source for s in document["services"].values() for source, _ in mounts(s) if not is_host_path(source)}
    assert used == set(document["volumes"])


def test_every_host_path_mounted_or_built_exists_in_the_repository() -> None:
    services = compose_file()["services"]
    for name, service in services.items():
        for source, _ in mounts(service):
            if is_host_path(source):
                assert source.startswith("./"), f"{name}: {source} is outside the repository"
                assert (PROJECT_ROOT / source).exists(), f"{name}: {source} does not exist"
        build = service.get("build")
        if build:
            context = PROJECT_ROOT / build["context"]
            assert context.is_dir(), f"{name}: no build context {context}"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: no {dockerfile}"
            for line in dockerfile.read_text(encoding="utf-8").splitlines():
                if line.startswith("COPY "):
                    *sources, _ = [w for w in line.split()[1:] if not w.startswith("--")]
                    for source in sources:
                        assert (context / source).exists(), f"{dockerfile}: COPY {source}: no such path"


def test_a_service_built_from_the_repository_is_the_same_image_wherever_it_is_named() -> None:
    """Services sharing an image build it from the same context, so `--scale` and one-shot services run the same
    code as the rest."""
    builds: dict[str, set[str]] = {}
    for service in compose_file()["services"].values():
        if "build" in service:
            builds.setdefault(service["image"], set()).add(json.dumps(service["build"], sort_keys=True))
    assert builds and all(len(b) == 1 for b in builds.values()), builds
    built = set(builds)
    for name, image in images().items():
        assert image in built or not image.startswith("kho-"), f"{name}: {image} is kho's but nothing builds it"


# --- variables and secrets ----------------------------------------------------------------------------------------


def variables_used() -> set[str]:
    text = raw_text().replace("$$", "")
    assert not re.search(r"\$(?!\{)", text), "a variable without braces: write ${VAR}"
    return {m["name"] for m in VARIABLE.finditer(text)}


def test_every_variable_used_is_in_env_example_and_every_one_there_is_used() -> None:
    assert variables_used() == set(env_example())


def test_env_example_holds_no_secret_and_compose_refuses_to_start_without_one() -> None:
    example = env_example()
    secrets = {name for name in example if SECRET_NAME.search(name)}
    assert secrets >= {"KHO_PG_PASSWORD", "KHO_PG_ADMIN_PASSWORD", "KHO_PG_REPLICATION_PASSWORD",
                       "KHO_PATRONI_PASSWORD", "KHO_REGISTRY_CLIENT_SECRET", "AIRFLOW_FERNET_KEY"}
    assert {name: example[name] for name in secrets if example[name]} == {}
    required = {m["name"] for m in VARIABLE.finditer(raw_text()) if m["op"] == ":?"}
    optional = {"KHO_QUALITY_WEBHOOK_URL"}  # a notification target, not a credential
    assert secrets - optional <= required
    with pytest.raises(AssertionError, match="KHO_PG_PASSWORD unset"):
        service_env("airflow-scheduler", env_example())


def test_env_is_ignored_by_git_and_by_the_image_build() -> None:
    ignored = subprocess.run(["git", "check-ignore", "--quiet", ".env"], cwd=PROJECT_ROOT, check=False)
    assert ignored.returncode == 0, ".env is not git-ignored"
    assert ".env" in (PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8").split()


# --- commands -----------------------------------------------------------------------------------------------------


def kho_invocations() -> Iterator[tuple[str, list[str]]]:
    """Every kho command a service runs: as its entrypoint, or in a `bash -c` script."""
    for name, service in compose_file()["services"].items():
        words = argv(service)
        if words[:1] == ["kho"]:
            yield name, words[1:]
        if words[:2] == ["bash", "-c"]:
            for step in words[2].split("&&"):
                parts = shlex.split(step)
                if parts[:1] == ["kho"]:
                    yield name, parts[1:]


def test_every_kho_command_a_service_runs_is_one_kho_parses() -> None:
    invocations = list(kho_invocations())
    assert {name for name, _ in invocations} == {"airflow-init", "simulator"}
    parser = build_parser()
    for name, words in invocations:
        try:
            parser.parse_args(words)
        except SystemExit:  # argparse's usage error: a subcommand or option kho does not have
            pytest.fail(f"{name} runs `kho {shlex.join(words)}`, which kho's parser refuses")
    with pytest.raises(SystemExit):
        parser.parse_args(["warehouse", "bootstrap"])


def test_every_airflow_command_is_one_airflows_parser_has(tmp_path: Path) -> None:
    """The Airflow services' commands (and their health checks' `airflow jobs check`) against Airflow's own CLI,
    parsed in a child process: importing Airflow here would fix its settings for the rest of the session. `celery
    worker` is the celery provider's, which Airflow's image has and kho's lock does not, so it is named exactly."""
    services = compose_file()["services"]
    commands = [argv(services[s]) for s in ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                                            "airflow-triggerer")]
    for service in ("airflow-dag-processor", "airflow-triggerer"):
        check = shlex.split(services[service]["healthcheck"]["test"][1].replace("$${HOSTNAME}", "h"))
        assert check[0] == "airflow"
        commands.append(check[1:])
    assert argv(services["airflow-worker"]) == ["celery", "worker"]
    script = ("import json, sys\nfrom airflow.cli.cli_parser import get_parser\nparser = get_parser()\n"
              "for words in json.loads(sys.argv[1]):\n    parser.parse_args(words)\n")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    parsed = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], env=env, capture_output=True,
                            text=True, check=False)
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    refused = subprocess.run([sys.executable, "-c", script, json.dumps([["dag-processer"]])], env=env,
                             capture_output=True, text=True, check=False)
    assert refused.returncode != 0


def test_the_warehouse_services_run_patroni_psql_and_pgbackrest_on_the_files_they_mount() -> None:
    services = compose_file()["services"]
    dockerfile = (PROJECT_ROOT / "deploy/warehouse/Dockerfile").read_text(encoding="utf-8")
    for member in MEMBERS:
        program, config = argv(services[member])
        assert program == "/opt/patroni/bin/patroni" and "python3 -m venv /opt/patroni" in dockerfile
        assert dict((t, s) for s, t in mounts(services[member]))[config] == f"./{compose.TEMPLATE}"
    init = argv(services["warehouse-init"])
    script = next(w.split("=", 1)[1] for w in init if w.startswith("--file="))
    assert init[0] == "psql" and dict((t, s) for s, t in mounts(services["warehouse-init"]))[script] == \
        "./deploy/warehouse/bootstrap.sql"
    backup = argv(services["pgbackrest"])
    assert backup[:2] == ["sh", "/etc/pgbackrest/on-primary.sh"]
    assert dict((t, s) for s, t in mounts(services["pgbackrest"]))[backup[1]] == "./deploy/pgbackrest/on-primary.sh"
    assert backup[2:] == ["stanza-create"]


# --- agreement with kho's configuration and deploy/patroni/patroni.yml ---------------------------------------------


def kho_config(service: str) -> KhoConfig:
    return KhoConfig.from_env(service_env(service))


def test_each_member_sets_exactly_what_the_patroni_template_leaves_to_it() -> None:
    for service, member in MEMBERS.items():
        env = service_env(service)
        own = {k: v for k, v in env.items() if k not in compose.SECRET_ENV}
        assert own == {k: v.replace("dc1", member) for k, v in compose.MEMBER_ENV.items()}
        assert set(env) - set(own) == set(compose.SECRET_ENV)
        assert host_port(env["PATRONI_POSTGRESQL_CONNECT_ADDRESS"])[0] == service


def test_kho_reaches_the_members_patroni_runs_as_the_logins_it_bootstraps() -> None:
    """Airflow's kho settings (KHO_PG_*, KHO_PATRONI_*, KHO_ETCD_HOSTS), read by kho.config, name the members'
    addresses, REST ports, etcd and scope, and the administrator and replication logins of deploy/patroni/patroni.yml.
    """
    template = patroni_template()
    members = [service_env(s) for s in MEMBERS]
    for service in ("airflow-scheduler", "airflow-worker", "airflow-init", "airflow-api-server"):
        config = kho_config(service)
        wh, ha = config.warehouse, config.ha
        assert list(zip(wh.hosts, wh.ports, strict=True)) == [
            host_port(m["PATRONI_POSTGRESQL_CONNECT_ADDRESS"]) for m in members]
        assert [(h, p) for h, p in zip(wh.hosts, ha.rest_ports, strict=True)] == [
            host_port(m["PATRONI_RESTAPI_CONNECT_ADDRESS"]) for m in members]
        assert all(",".join(ha.etcd_hosts) == m["PATRONI_ETCD3_HOSTS"] for m in members)
        assert ha.scope == template["scope"]
        assert ha.synchronous == template["bootstrap"]["dcs"]["synchronous_mode"]
        authentication = template["postgresql"]["authentication"]
        assert wh.admin_user == authentication["superuser"]["username"] == authentication["rewind"]["username"]
        assert wh.replication_user == authentication["replication"]["username"]
        assert ha.rest_user == members[0]["PATRONI_RESTAPI_USERNAME"]
        assert wh.password() == operator_env()["KHO_PG_PASSWORD"]


def test_the_etcd_members_are_the_ones_patroni_and_kho_are_given() -> None:
    services = compose_file()["services"]
    etcd = {name: argv(s) for name, s in services.items() if name.startswith("etcd")}
    advertised = []
    for name, words in etcd.items():
        flags = dict(w.removeprefix("--").split("=", 1) for w in words[1:])
        assert words[0] == "/usr/local/bin/etcd" and flags["name"] == name
        assert flags["initial-cluster"] == ",".join(f"{n}=http://{n}:2380" for n in etcd)
        assert (flags["data-dir"] in dict((t, s) for s, t in mounts(services[name])))
        advertised.append(flags["advertise-client-urls"].removeprefix("http://"))
    assert len(etcd) == 3  # a majority survives one member lost
    assert ",".join(advertised) == compose.MEMBER_ENV["PATRONI_ETCD3_HOSTS"]


def test_the_network_is_the_one_pg_hba_admits() -> None:
    subnets = [c["subnet"] for c in compose_file()["networks"]["default"]["ipam"]["config"]]
    assert subnets == [compose.NETWORK_CIDR]
    assert all("networks" not in s for s in compose_file()["services"].values())  # all on the default network


def test_warehouse_init_bootstraps_the_login_and_database_kho_uses_as_kho_bootstraps_them() -> None:
    config = kho_config("airflow-init")
    wh = config.warehouse
    words = argv(compose_file()["services"]["warehouse-init"])
    psql_vars = dict(w.removeprefix("--set=").split("=", 1) for w in words if w.startswith("--set="))
    assert psql_vars["app_user"] == wh.user and psql_vars["database"] == wh.dbname
    conninfo = dict(pair.split("=", 1) for pair in words[-1].split())
    assert conninfo["host"].split(",") == list(wh.hosts)
    assert conninfo["port"].split(",") == [str(p) for p in wh.ports]
    assert conninfo["user"] == wh.admin_user and conninfo["target_session_attrs"] == "read-write"
    env = service_env("warehouse-init")
    assert env["PGPASSWORD"] == service_env("pg-dc1")["PATRONI_SUPERUSER_PASSWORD"]
    assert env["KHO_PG_PASSWORD"] == wh.password()
    bootstrap = (PROJECT_ROOT / "deploy/warehouse/bootstrap.sql").read_text(encoding="utf-8")
    assert logins.APP_ROLE_ATTRIBUTES in bootstrap
    assert all(f"'{role}'" in bootstrap for role in logins.APP_PREDEFINED_ROLES)


def test_wal_and_backups_go_through_the_pgbackrest_configuration_the_template_names() -> None:
    """Each member's archive_command reads compose.PGBACKREST_CONFIG, mounted from deploy/pgbackrest/; its stanza,
    member, socket and administrator are Patroni's; the repository is one volume the members and pgbackrest share."""
    services = compose_file()["services"]
    template = patroni_template()
    assert compose.PGBACKREST_CONFIG in template["postgresql"]["parameters"]["archive_command"]
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(PROJECT_ROOT / "deploy/pgbackrest/pgbackrest.conf", encoding="utf-8")
    stanza = conf[template["scope"]]
    member_env = service_env("pg-dc1")
    assert stanza["pg1-path"] == member_env["PATRONI_POSTGRESQL_DATA_DIR"]
    assert stanza["pg1-socket-path"] == compose.SOCKET_DIR == template["postgresql"]["parameters"][
        "unix_socket_directories"]
    assert stanza["pg1-user"] == template["postgresql"]["authentication"]["superuser"]["username"]
    repositories = set()
    for name in (*MEMBERS, "pgbackrest"):
        targets = dict((t, s) for s, t in mounts(services[name]))
        assert targets[compose.PGBACKREST_CONFIG] == "./deploy/pgbackrest/pgbackrest.conf"
        repositories.add(targets[conf["global"]["repo1-path"]])
    assert repositories == {"pgbackrest-repo"}
    script = (PROJECT_ROOT / "deploy/pgbackrest/on-primary.sh").read_text(encoding="utf-8")
    assert f"--stanza={template['scope']}" in script
    assert f"for member in {' '.join(MEMBERS.values())}; do" in script
    backup_mounts = dict((t, s) for s, t in mounts(services["pgbackrest"]))
    for service, member in MEMBERS.items():
        own = dict((t, s) for s, t in mounts(services[service]))
        assert backup_mounts[f"/srv/{member}/data"] == own[member_env["PATRONI_POSTGRESQL_DATA_DIR"]]
        assert backup_mounts[f"/srv/{member}/run"] == own[compose.SOCKET_DIR]


def test_the_simulator_is_an_optional_profile_at_the_address_kho_is_given() -> None:
    services = compose_file()["services"]
    simulator = services["simulator"]
    assert simulator["profiles"] == ["simulator"]
    assert [s for s in services.values() if "simulator" in s.get("depends_on", {})] == []
    assert all("profiles" not in s for name, s in services.items() if name != "simulator")
    config = kho_config("airflow-worker")
    words = argv(simulator)
    assert config.simulator_host == "simulator"
    assert config.simulator_port == int(words[words.index("--port") + 1])
    served = KhoConfig.from_env(service_env("simulator"))
    assert served.simulator_credentials() == config.registry_connection("population").credentials


def test_workers_scale_and_only_the_api_server_is_published_on_localhost() -> None:
    services = compose_file()["services"]
    assert all("container_name" not in s and "hostname" not in s for s in services.values())
    assert [name for name, s in services.items() if "ports" in s] == ["airflow-api-server"]
    [published] = services["airflow-api-server"]["ports"]
    assert interpolate(published, operator_env()) == "127.0.0.1:8080:8080"
    example = env_example()  # the URL people open names the port published (tasks use the internal API address)
    assert example["AIRFLOW_BASE_URL"] == f"http://localhost:{example['AIRFLOW_PORT']}"
    env = service_env("airflow-worker")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("@redis:6379/0")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@airflow-db:5432/airflow")
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    container_port = published.rsplit(":", 1)[1]  # tasks reach the API inside the network, whatever is published
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://airflow-api-server:{container_port}/execution/"


def test_every_dependency_is_a_service_of_the_file() -> None:
    services = compose_file()["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
