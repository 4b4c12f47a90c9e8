"""Agency access against a real published warehouse: every agency × every relation, on the primary and the standby.

One small world is synced and built (real dbt, GX and publication) into a database of its own; the access file is
the repository's four agencies plus a `research` agency reading the population marts without personal data (the
shipped masked agencies read aggregates only, which have nothing to mask). Then each agency logs in with the
password `kho access apply` generated and tries to read everything there is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kho.build.publish import built_marts
from kho.build.run import BuildPlan, build, publish_marts
from kho.cli import main
from kho.config import PROJECT_ROOT, KhoConfig
from kho.load.pipeline import SyncOptions, sync_api
from kho.simulator import World
from kho.simulator import calendar as cal
from kho.simulator.generate import WorldSpec
from kho.simulator.server import ServerOptions, serve_in_thread
from kho.sources import ENTITIES
from kho.sources.reference import province_codes_2025
from kho.warehouse import access
from kho.warehouse.access import roles
from kho.warehouse.access.objects import MASKED_PREFIX
from kho.warehouse.connection import connect, connect_admin
from kho.warehouse.migrations import migrate

pytestmark = pytest.mark.integration

SPEC = WorldSpec(seed=11, citizens=900, days=0, defect_rate=0.0)
AS_OF = dt.date.fromordinal(cal.day_ord(0))
RESEARCH = """
  - slug: research
    name: "Viện nghiên cứu; it's a $$test$$ -- of quoting"
    datasets: [mart_population, mart_audit.cross_registry_contradictions]
    provinces: ["79", "38"]
    pii: none
    connection_limit: 3
    statement_timeout: 30s
"""


@dataclasses.dataclass
class Warehouse:
    config: KhoConfig
    file: Path
    declared: access.AccessFile

    def agency(self, slug: str) -> access.Agency:
        return roles.require_declared(self.declared.agencies, slug)


@pytest.fixture(scope="module")
def warehouse(kho_config: KhoConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    name = f"t_access_{dt.datetime.now().strftime('%H%M%S%f')}"
    with connect_admin(kho_config.warehouse, dbname="postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                   sql.Identifier(kho_config.warehouse.user)))
    home = tmp_path_factory.mktemp("access-home")
    config = dataclasses.replace(kho_config, warehouse=dataclasses.replace(kho_config.warehouse, dbname=name),
                                 home=home)
    with connect(config.warehouse, autocommit=True) as conn:  # as `kho warehouse up` does for the warehouse's
        migrate(conn)
    world = World.build(SPEC)
    with serve_in_thread(world, options=ServerOptions(credentials=config.ensure_registry_credentials())) as sim:
        served = dataclasses.replace(config, simulator_port=sim.port)
        for entity in ENTITIES:
            sync_api(served, entity, SyncOptions(page_size=1000))
    build(config, BuildPlan("access-day-0", AS_OF))
    file = home / "agencies.yml"
    file.write_text((PROJECT_ROOT / "access" / "agencies.yml").read_text(encoding="utf-8") + RESEARCH,
                    encoding="utf-8")
    declared = access.load(file, known_provinces=province_codes_2025())
    with connect_admin(config.warehouse) as conn:
        access.apply(conn, config, declared)
    yield Warehouse(config, file, declared)
    with connect_admin(config.warehouse) as conn:  # roles are cluster-wide: an empty declaration drops them
        access.apply(conn, config, access.AccessFile(agencies=()))
    with connect_admin(kho_config.warehouse, dbname="postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def as_agency(wh: Warehouse, slug: str, *, node: int = 0) -> psycopg.Connection[Any]:
    agency = wh.agency(slug)
    password = roles.read_password(wh.config, agency.slug)
    cfg = wh.config.warehouse
    return psycopg.connect(host=cfg.hosts[node], port=cfg.ports[node], dbname=cfg.dbname, user=agency.role,
                           password=password, autocommit=True, connect_timeout=5)


def owner_rows(wh: Warehouse, query: sql.Composable, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connect(wh.config.warehouse, autocommit=True) as conn:
        return conn.execute(query, params or None).fetchall()


def relations(wh: Warehouse) -> list[tuple[str, str]]:
    """Every table and view in every non-system schema of the warehouse database."""
    return [(r[0], r[1]) for r in owner_rows(wh, sql.SQL(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'v', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2"))]


def may_read(agency: access.Agency, schema: str, table: str) -> bool:
    if agency.pii == "full":
        return schema.startswith("mart_") and agency.reads_table(schema, table)
    if not schema.startswith(MASKED_PREFIX):
        return False
    return agency.reads_table("mart_" + schema[len(MASKED_PREFIX):], table)


def base_of(schema: str) -> str:
    return "mart_" + schema[len(MASKED_PREFIX):] if schema.startswith(MASKED_PREFIX) else schema


def has_column(wh: Warehouse, schema: str, table: str, column: str) -> bool:
    return bool(owner_rows(wh, sql.SQL(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND column_name = %s"), (schema, table, column)))


SLUGS = ("health", "tax", "statistics", "police", "research")


@pytest.mark.parametrize("node", [0, 1], ids=["primary", "standby"])
@pytest.mark.parametrize("slug", SLUGS)
def test_an_agency_reads_exactly_its_datasets_and_only_rows_of_its_provinces(warehouse: Warehouse, slug: str,
                                                                             node: int) -> None:
    agency = warehouse.agency(slug)
    everything = relations(warehouse)
    assert any(s.startswith("raw") for s, _ in everything) and any(s.startswith(MASKED_PREFIX) for s, _ in everything)
    allowed_seen = 0
    with as_agency(warehouse, slug, node=node) as conn:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        assert in_recovery == (node == 1,)
        for schema, table in everything:
            name = sql.Identifier(schema, table)
            if not may_read(agency, schema, table):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                    conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(name))
                continue
            allowed_seen += 1
            seen = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()
            base = sql.Identifier(base_of(schema), table)
            if has_column(warehouse, base_of(schema), table, "province_code_2025") and not agency.all_provinces:
                provinces = {r[0] for r in conn.execute(sql.SQL("SELECT DISTINCT province_code_2025 FROM {}"
                                                                ).format(name))}
                assert provinces <= set(agency.province_list), f"{schema}.{table}: rows outside the scope"
                expected = owner_rows(warehouse, sql.SQL("SELECT count(*) FROM {} WHERE province_code_2025 = ANY(%s)"
                                                         ).format(base), (list(agency.province_list),))
            elif agency.all_provinces:
                expected = owner_rows(warehouse, sql.SQL("SELECT count(*) FROM {}").format(base))
            else:  # a scoped agency sees no row that has no province
                expected = [(0,)]
            assert seen == expected[0], f"{slug} on {schema}.{table}"
    declared_tables = [t for t in everything if may_read(agency, *t)]
    assert allowed_seen == len(declared_tables) > 0


def test_a_scoped_agency_sees_some_rows_but_not_all(warehouse: Warehouse) -> None:
    """The world spans four provinces, so scoping is visible (not vacuous)."""
    with as_agency(warehouse, "police") as conn:
        seen = conn.execute("SELECT count(*) FROM mart_population.golden_citizens").fetchone()
    total = owner_rows(warehouse, sql.SQL("SELECT count(*) FROM mart_population.golden_citizens"))[0]
    assert seen is not None and 0 < seen[0] < total[0]


def test_personal_columns_are_masked_without_pii_access_and_clear_with_it(warehouse: Warehouse) -> None:
    with as_agency(warehouse, "research") as conn:
        masked = {r[0]: r[1:] for r in conn.execute(
            "SELECT household_id || ':' || relation_to_head || ':' || updated_at::text, cccd, full_name, "
            "date_of_birth FROM masked_population.golden_citizens WHERE household_id IS NOT NULL")}
    with as_agency(warehouse, "police") as conn:
        clear = {r[0]: r[1:] for r in conn.execute(
            "SELECT household_id || ':' || relation_to_head || ':' || updated_at::text, cccd, full_name, "
            "date_of_birth FROM mart_population.golden_citizens WHERE household_id IS NOT NULL")}
    assert masked and clear
    compared = 0
    for key, (cccd, full_name, born) in clear.items():
        if key not in masked:
            continue
        m_cccd, m_name, m_born = masked[key]
        assert m_cccd == cccd[:3] + "*" * (len(cccd) - 5) + cccd[-2:]
        assert m_name == " ".join(word[0] + "." for word in full_name.split())
        assert m_born == born.year and isinstance(m_born, int)
        compared += 1
    assert compared > 10


@pytest.mark.parametrize("attempt", [
    "SELECT cccd FROM mart_population.golden_citizens LIMIT 1",
    "SET ROLE kho",
    "SET ROLE kho_masking",
    "COPY (SELECT 1) TO PROGRAM 'cat'",
    "SELECT pg_read_file('postgresql.conf')",
    "CREATE TABLE public.stolen (cccd text)",
    "CREATE TABLE masked_population.stolen (cccd text)",
    "CREATE TEMPORARY TABLE stolen (cccd text)",
    "CREATE FUNCTION public.leak(text) RETURNS boolean LANGUAGE sql AS 'SELECT true'",
    "CREATE SCHEMA stolen",
    "SELECT * FROM kho_access.agencies",
    "SELECT * FROM raw.population__citizens LIMIT 1",
    "ALTER VIEW masked_population.golden_citizens SET (security_barrier = false)",
    "CREATE OR REPLACE VIEW masked_population.golden_citizens AS SELECT 1",
    "SELECT query_to_xml('SELECT cccd FROM mart_population.golden_citizens', true, false, '')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT pg_ls_dir('.')",
    "COPY mart_population.golden_citizens TO STDOUT",
    "SELECT dblink_connect('host=127.0.0.1')",
    "ALTER ROLE agency_research SET pgaudit.log = 'none'",
])
def test_masking_cannot_be_bypassed(warehouse: Warehouse, attempt: str) -> None:
    with as_agency(warehouse, "research") as conn:
        conn.execute("SET default_transaction_read_only = off")  # agencies may: privileges must stop them
        with pytest.raises(psycopg.Error) as failure:
            conn.execute(attempt)
    assert isinstance(failure.value, psycopg.errors.InsufficientPrivilege | psycopg.errors.UndefinedTable
                      | psycopg.errors.UndefinedFunction), failure.value


def test_statistics_of_the_base_tables_are_not_visible_to_a_masked_agency(warehouse: Warehouse) -> None:
    """pg_stats holds sample values (most common values, histograms): PostgreSQL shows a column's only to roles that
    may read that column."""
    with as_agency(warehouse, "research") as conn:
        shown = conn.execute("SELECT count(*) FROM pg_stats WHERE schemaname LIKE 'mart\\_%'").fetchone()
    assert shown == (0,)
    with connect_admin(warehouse.config.warehouse) as conn:  # pg_stats hides RLS tables from all but superusers
        assert conn.execute("SELECT count(*) FROM pg_stats WHERE schemaname = 'mart_population'").fetchone() != (0,), \
            "publishing a new mart analyses it: its statistics exist"


def test_an_agency_cannot_pass_its_reads_on(warehouse: Warehouse) -> None:
    with as_agency(warehouse, "research") as conn:
        conn.execute("SET default_transaction_read_only = off")
        conn.execute("GRANT SELECT ON masked_population.golden_citizens TO agency_health")  # a warning, no grant
    granted = owner_rows(warehouse, sql.SQL("SELECT has_table_privilege('agency_health', "
                                            "'masked_population.golden_citizens', 'SELECT')"))
    assert granted == [(False,)]


def test_turning_row_security_off_does_not_reveal_rows(warehouse: Warehouse) -> None:
    with as_agency(warehouse, "police") as conn:
        conn.execute("SET row_security = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("SELECT count(*) FROM mart_population.golden_citizens")


def test_agency_roles_hold_nothing_but_login(warehouse: Warehouse) -> None:
    for agency in warehouse.declared.agencies:
        row = owner_rows(warehouse, sql.SQL(
            "SELECT rolcanlogin, rolinherit, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
            "rolconnlimit, (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) "
            "FROM pg_roles r WHERE rolname = %s"), (agency.role,))
        assert row == [(True, False, False, False, False, False, False, agency.connection_limit, 0)]


def test_hostile_text_in_the_file_is_quoted_not_executed(warehouse: Warehouse) -> None:
    comment = owner_rows(warehouse, sql.SQL("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles "
                                            "WHERE rolname = 'agency_research'"))
    assert comment == [("kho agency: Viện nghiên cứu; it's a $$test$$ -- of quoting",)]


@pytest.fixture
def cli(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    """The CLI reads its settings from the environment: point it at this module's warehouse."""
    for key, value in warehouse.config.child_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KHO_PG_ADMIN_PASSWORD", warehouse.config.warehouse.admin_password())
    return warehouse


def test_applying_twice_changes_nothing(cli: Warehouse) -> None:
    with connect_admin(cli.config.warehouse) as conn:
        again = access.apply(conn, cli.config, cli.declared)
    assert again.lines() == []
    assert main(["access", "--file", str(cli.file), "apply"]) == 0
    assert main(["access", "--file", str(cli.file), "check"]) == 0


@pytest.mark.parametrize("drift,revert", [
    ("GRANT SELECT ON raw.population__citizens TO agency_health",
     "REVOKE SELECT ON raw.population__citizens FROM agency_health"),
    ("GRANT USAGE ON SCHEMA intermediate TO agency_tax", "REVOKE USAGE ON SCHEMA intermediate FROM agency_tax"),
    ("GRANT SELECT (cccd) ON mart_population.golden_citizens TO agency_research",
     "REVOKE SELECT (cccd) ON mart_population.golden_citizens FROM agency_research"),
    ("GRANT SELECT ON mart_business.enterprises TO PUBLIC", "REVOKE SELECT ON mart_business.enterprises FROM PUBLIC"),
    ("ALTER TABLE mart_health.insurance_coverage_by_commune DISABLE ROW LEVEL SECURITY", None),
    ("DROP POLICY kho_agency_scope ON mart_population.households", None),
    ("CREATE POLICY everything ON mart_population.households FOR SELECT USING (true)", None),
    ("GRANT kho_masking TO agency_research", "REVOKE kho_masking FROM agency_research"),
    ("ALTER ROLE agency_police SET statement_timeout = 0", None),
    ("ALTER VIEW masked_population.golden_citizens RESET (security_barrier)", None),
    ("ALTER VIEW masked_population.households OWNER TO kho", None),
])
def test_a_change_made_by_hand_is_drift_and_apply_removes_it(cli: Warehouse, drift: str,
                                                              revert: str | None) -> None:
    warehouse = cli
    with connect_admin(warehouse.config.warehouse) as conn:
        conn.execute(drift)  # type: ignore[call-overload]
    try:
        with connect_admin(warehouse.config.warehouse) as conn:
            report = access.check(conn, warehouse.config, warehouse.declared)
        assert report.changes, f"check did not notice: {drift}"
        assert main(["access", "--file", str(warehouse.file), "check"]) == 1
        with connect_admin(warehouse.config.warehouse) as conn:
            access.apply(conn, warehouse.config, warehouse.declared)
            assert access.check(conn, warehouse.config, warehouse.declared).lines() == []
    finally:  # whatever failed, the next test starts from the declared state
        with connect_admin(warehouse.config.warehouse) as conn:
            if revert:
                conn.execute(revert)  # type: ignore[call-overload]
            access.apply(conn, warehouse.config, warehouse.declared)


def test_a_republished_mart_keeps_its_grants_policies_and_masked_view(warehouse: Warehouse) -> None:
    with connect(warehouse.config.warehouse, autocommit=True) as conn:
        conn.execute("DROP VIEW masked_population.households")
        conn.execute("DROP TABLE mart_population.households")  # the next publication recreates it
        marts = built_marts(conn)
    publish_marts(warehouse.config, BuildPlan("access-republish", AS_OF), marts)
    with connect_admin(warehouse.config.warehouse) as conn:
        assert access.check(conn, warehouse.config, warehouse.declared).lines() == []
    with as_agency(warehouse, "research") as conn:
        masked = conn.execute("SELECT head_cccd FROM masked_population.households WHERE head_cccd IS NOT NULL "
                              "LIMIT 1").fetchone()
    assert masked is not None and "*" in masked[0]


def test_credentials_lead_to_the_standby(cli: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    warehouse = cli
    assert main(["access", "--file", str(warehouse.file), "credentials", "health"]) == 0
    uri = capsys.readouterr().out.strip()
    parsed = urllib.parse.urlsplit(uri)
    assert parsed.scheme == "postgresql" and parsed.username == "agency_health"
    assert "target_session_attrs=prefer-standby" in parsed.query
    assert str(roles.secret_file(warehouse.config, "health")) not in uri
    assert not str(roles.secret_file(warehouse.config, "health")).startswith(str(PROJECT_ROOT))
    with psycopg.connect(uri) as conn:
        assert conn.execute("SELECT pg_is_in_recovery(), current_user").fetchone() == (True, "agency_health")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5min",)


def test_every_statement_of_an_agency_appears_in_the_audit_on_both_nodes(
        cli: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    from kho.warehouse import audit

    probe = f"audit-probe-{uuid.uuid4().hex}"
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    for node in (0, 1):
        with as_agency(cli, "police", node=node) as conn:
            conn.execute(sql.SQL("SELECT count(*) AS {} FROM mart_population.golden_citizens").format(
                sql.Identifier(probe)))
    wh = cli.config.warehouse
    nodes = {f"{wh.hosts[i]}:{wh.ports[i]}" for i in (0, 1)}
    deadline = time.monotonic() + 30  # the log collector writes asynchronously: poll, bounded
    while True:
        found = [r for r in audit.read(cli.config, roles=["agency_police"], since=started) if probe in r.statement]
        if {r.node for r in found} == nodes or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {r.node for r in found} == nodes
    assert all(r.role == "agency_police" and r.logged_at >= started for r in found)
    assert main(["access", "--file", str(cli.file), "audit", "--agency", "police", "--since", "10min"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if probe in line]
    assert len(printed) >= 2 and all("agency_police" in line for line in printed)


def test_a_dataset_not_published_yet_can_be_declared_and_removing_an_agency_drops_its_login(
        warehouse: Warehouse) -> None:
    future = access.parse(warehouse.file.read_text(encoding="utf-8") + """
  - slug: future
    name: An agency waiting for a domain that is not published yet
    datasets: [mart_future, mart_health.not_yet_published]
    provinces: ["79"]
    pii: none
""", source="test", known_provinces=province_codes_2025())
    try:
        with connect_admin(warehouse.config.warehouse) as conn:
            access.apply(conn, warehouse.config, future)
            assert access.check(conn, warehouse.config, future).lines() == []
        with as_agency(dataclasses.replace(warehouse, declared=future), "future") as conn:
            assert conn.execute("SELECT count(*) FROM information_schema.tables "
                                "WHERE table_schema LIKE 'mart%' OR table_schema LIKE 'masked%'").fetchone() == (0,)
    finally:
        with connect_admin(warehouse.config.warehouse) as conn:
            report = access.apply(conn, warehouse.config, warehouse.declared)
    assert any(line.startswith("- role agency_future") for line in report.lines())
    assert owner_rows(warehouse, sql.SQL("SELECT count(*) FROM pg_roles WHERE rolname = 'agency_future'")) == [(0,)]
