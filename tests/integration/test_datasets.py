"""The shared datasets against the simulator's ground truth: real syncs, real dbt, real GX, real publication.

One world with every kind of cross-registry anomaly (and no row-level defect, so every record loads) is synced day
by day into a database of its own and built twice — a full build after day 0, an incremental one after the last
day — exactly as the nightly runs would. Then the published marts are compared with the ground truth (the audit
mart) and with an independent re-computation in plain Python (tests/support/marts_oracle.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kho.build.dbt import BuildError, target_dir
from kho.build.publish import built_marts
from kho.build.run import BuildPlan, build, build_dbt
from kho.config import KhoConfig
from kho.errors import QualityError
from kho.load.pipeline import SyncOptions, sync_api
from kho.simulator import World
from kho.simulator import calendar as cal
from kho.simulator.defects import ANOMALY_ENTITY, ANOMALY_KINDS
from kho.simulator.generate import WorldSpec
from kho.simulator.server import ServerOptions, serve_in_thread
from kho.sources import ENTITIES
from kho.warehouse.connection import connect, connect_admin, connect_standby
from kho.warehouse.migrations import migrate
from tests.support import audit_oracle, marts_oracle

pytestmark = pytest.mark.integration

SPEC = WorldSpec(seed=4, citizens=2500, days=3, defect_rate=0.1, defect_kinds=frozenset(ANOMALY_KINDS))
DAY0_AS_OF = dt.date.fromordinal(cal.day_ord(0))
AS_OF = dt.date.fromordinal(cal.day_ord(SPEC.days))
"""Each build describes the last day it has loaded."""
SYNC = SyncOptions(page_size=1000, lookback=dt.timedelta(days=1))
KEY_COLUMN = {
    "deceased_with_active_coverage": ("coverage_id",),
    "legal_rep_unknown": ("enterprise_code",),
    "birth_without_citizen": ("birth_registration_id",),
    "cccd_contradicts_birth_record": ("birth_registration_id",),
    "marriage_under_legal_age": ("marriage_registration_id",),
    "household_without_one_head": ("household_id",),
    "member_after_death": ("household_id", "cccd"),
}
"""Which audit-mart columns hold the key of the record the ground truth names, per kind."""
BOOKKEEPING = {"previous_cccd", "changed_seq", "discovered_seq", "discovered_by_run", "discovered_at"}


@dataclasses.dataclass
class Built:
    config: KhoConfig
    world: World
    served: dict[str, list[dict[str, Any]]]


def rows(config: KhoConfig, query: sql.Composable | str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def sync_day(config: KhoConfig) -> None:
    for entity in ENTITIES:
        sync_api(config, entity, SYNC)


@pytest.fixture(scope="module")
def built(kho_config: KhoConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """The anomaly world synced day by day; a full build after day 0, an incremental build after the last day."""
    name = f"t_datasets_{dt.datetime.now().strftime('%H%M%S%f')}"
    with connect_admin(kho_config.warehouse, dbname="postgres") as conn:  # the application may not create one
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                   sql.Identifier(kho_config.warehouse.user)))
    config = dataclasses.replace(kho_config, warehouse=dataclasses.replace(kho_config.warehouse, dbname=name),
                                 home=tmp_path_factory.mktemp("datasets-home"))
    with connect(config.warehouse, autocommit=True) as conn:  # as `kho warehouse up` does for the warehouse's
        migrate(conn)
    world = World.build(SPEC)
    options = ServerOptions(credentials=config.ensure_registry_credentials())
    with serve_in_thread(world, options=options) as simulator:
        served_config = dataclasses.replace(config, simulator_port=simulator.port)
        sync_day(served_config)
        build(config, BuildPlan("day-0", DAY0_AS_OF))
        for day in range(1, SPEC.days + 1):
            world.advance(day)
            sync_day(served_config)
        build(config, BuildPlan(f"day-{SPEC.days}", AS_OF))
    served = {e.qualified_name: world.snapshot(e) for e in ENTITIES}
    yield Built(config, world, served)
    with connect_admin(kho_config.warehouse, dbname="postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_world_carries_every_kind_of_cross_registry_anomaly(built: Built) -> None:
    kinds = {d.kind for d in built.world.ground_truth if d.kind in ANOMALY_KINDS}
    assert kinds == set(ANOMALY_KINDS)


def test_the_audit_mart_finds_every_injected_anomaly_and_nothing_else(built: Built) -> None:
    expected = {(d.kind, d.qualified_entity, d.key) for d in built.world.ground_truth if d.kind in ANOMALY_KINDS}
    found = set()
    for kind, registry_entity in ANOMALY_ENTITY.items():
        columns = sql.SQL(", ").join(map(sql.Identifier, KEY_COLUMN[kind]))
        for key in rows(built.config, sql.SQL(
                "SELECT {} FROM mart_audit.cross_registry_contradictions WHERE kind = %s").format(columns), (kind,)):
            found.add((kind, registry_entity, tuple(key)))
    true_positives = len(found & expected)
    precision = true_positives / len(found) if found else 1.0
    recall = true_positives / len(expected)
    print(f"\naudit mart vs ground truth: {len(found)} findings, {len(expected)} injected; "
          f"precision = {precision:.3f}, recall = {recall:.3f}")
    assert found - expected == set(), "findings no anomaly explains"
    assert expected - found == set(), "injected anomalies the audit mart missed"
    assert precision == recall == 1.0


def _published(config: KhoConfig, schema: str, table: str) -> list[dict[str, Any]]:
    with connect(config.warehouse, autocommit=True) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, table))).fetchall()


MARTS = {
    "golden_citizens": "mart_population", "households": "mart_population", "citizens_per_commune": "mart_population",
    "vital_events_by_commune_month": "mart_civil_status", "insurance_coverage_by_commune": "mart_health",
    "insurance_coverage_by_province": "mart_health", "enterprises": "mart_business",
    "active_enterprises_by_industry_province": "mart_business",
}


@pytest.fixture(scope="module")
def expected(built: Built) -> dict[str, list[dict[str, Any]]]:
    return marts_oracle.compute_all(built.served, AS_OF)


@pytest.mark.parametrize("mart", sorted(MARTS))
def test_a_published_mart_equals_its_independent_computation(built: Built, expected: dict[str, Any],
                                                             mart: str) -> None:
    published = marts_oracle.by_primary_key(mart, _published(built.config, MARTS[mart], mart))
    wanted = marts_oracle.by_primary_key(mart, expected[mart])
    assert published.keys() == wanted.keys(), (
        f"{mart}: rows only published {sorted(published.keys() - wanted.keys())[:5]}, "
        f"only expected {sorted(wanted.keys() - published.keys())[:5]}")
    differing = [(key, {c: (published[key][c], wanted[key][c]) for c in wanted[key]
                        if published[key][c] != wanted[key][c]})
                 for key in wanted if published[key] != wanted[key]]
    assert not differing, f"{mart}: {len(differing)} rows differ, e.g. {differing[:3]}"
    assert wanted, f"{mart} is empty: nothing was compared"


def test_coverage_vital_events_and_enterprise_counts_match_the_generated_records(
        built: Built, expected: dict[str, Any]) -> None:
    """The headline figures, printed: the national KPI, the vital events and active enterprises."""
    (living, insured), = rows(built.config, "SELECT sum(living_population), sum(insured) "
                                            "FROM mart_health.insurance_coverage_by_province")
    want_living = sum(r["living_population"] for r in expected["insurance_coverage_by_province"])
    want_insured = sum(r["insured"] for r in expected["insurance_coverage_by_province"])
    events = dict(rows(built.config, "SELECT event_type, sum(events)::bigint FROM "
                                     "mart_civil_status.vital_events_by_commune_month GROUP BY 1"))
    want_events: dict[str, int] = {}
    for r in expected["vital_events_by_commune_month"]:
        want_events[r["event_type"]] = want_events.get(r["event_type"], 0) + r["events"]
    (active,), = rows(built.config, "SELECT sum(active_enterprises) "
                                    "FROM mart_business.active_enterprises_by_industry_province")
    print(f"\ncoverage {insured}/{living}, events {events}, active enterprises {active}")
    assert (living, insured) == (want_living, want_insured)
    assert events == want_events
    assert active == sum(r["active_enterprises"] for r in expected["active_enterprises_by_industry_province"])


def test_every_link_between_registries_has_the_independently_computed_match_quality(
        built: Built, expected: dict[str, Any]) -> None:
    links = rows(built.config, "SELECT cccd, registry, entity, record_key, role, match_quality "
                               "FROM intermediate.int_citizen_identity WHERE cccd IS NOT NULL")
    columns = ("cccd", "registry", "entity", "record_key", "role", "match_quality")
    published = marts_oracle.by_primary_key("citizen_identity", (dict(zip(columns, r, strict=True)) for r in links))
    wanted = marts_oracle.by_primary_key("citizen_identity", expected["citizen_identity"])
    assert {k: v["match_quality"] for k, v in published.items()} == {
        k: v["match_quality"] for k, v in wanted.items()}


def test_every_finding_belongs_to_the_2025_province_its_records_place_it_in(built: Built) -> None:
    """Agencies' row-level security reads province_code_2025: each kind's rule (docs/datasets.md), recomputed."""
    wanted = {(kind, f"{registry}.{entity}", key): province
              for (kind, registry, entity, key), province in audit_oracle.finding_provinces(built.served).items()}
    found = {}
    for kind, registry_entity in ANOMALY_ENTITY.items():
        columns = sql.SQL(", ").join(map(sql.Identifier, KEY_COLUMN[kind]))
        for *key, province in rows(built.config, sql.SQL(
                "SELECT {}, province_code_2025 FROM mart_audit.cross_registry_contradictions WHERE kind = %s"
        ).format(columns), (kind,)):
            found[(kind, registry_entity, tuple(key))] = province
    differing = {k: (found.get(k), wanted.get(k)) for k in found.keys() | wanted.keys()
                 if found.get(k) != wanted.get(k)}
    assert not differing, (f"{len(differing)} findings placed differently (published, expected), "
                           f"e.g. {list(differing.items())[:3]}")
    assert wanted and None not in wanted.values(), "every finding of this world has a place"


def test_every_residence_period_lies_in_the_2025_province_of_its_commune_read_on_its_start(built: Built) -> None:
    periods = rows(built.config, "SELECT cccd, valid_from, permanent_commune_code, province_code_2025 "
                                 "FROM mart_population.residence_history")
    wrong = [p for p in periods if p[3] != marts_oracle.commune_units(
        p[2], marts_oracle.local_date(p[1]))["province_code_2025"]]
    assert periods and not wrong, f"{len(wrong)} periods in the wrong province, e.g. {wrong[:3]}"


def _published_columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[str, str | None]]:
    return [(str(name), comment) for name, comment in conn.execute(
        "SELECT attname, col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid = %s::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (f"{schema}.{table}",)).fetchall()]


def test_every_published_mart_and_column_carries_its_dbt_description_as_a_comment(built: Built) -> None:
    """Agencies' SQL tools show comments: each is the model's or column's description in dbt (persist_docs), the
    table's followed by the publication stamp."""
    manifest = json.loads((target_dir(built.config) / "manifest.json").read_text(encoding="utf-8"))
    models = {f"{n['schema'].removeprefix('build_')}.{n['name']}": n for n in manifest["nodes"].values()
              if n["resource_type"] == "model" and n["schema"].startswith("build_mart_")}
    with connect(built.config.warehouse, autocommit=True) as conn:
        marts = built_marts(conn)
        assert {m.name for m in marts} == set(models)
        for mart in marts:
            model = models[mart.name]
            (table_comment,), = conn.execute("SELECT obj_description(%s::regclass, 'pg_class')",
                                             (mart.name,)).fetchall()
            assert model["description"].strip() and table_comment.startswith(model["description"].strip()), mart.name
            columns = _published_columns(conn, mart.schema, mart.table)
            assert [c for c, _ in columns] == list(model["columns"]), f"{mart.name}: columns differ from the yml"
            for column, comment in columns:
                assert comment and comment == model["columns"][column]["description"], f"{mart.name}.{column}"


NAME_COLUMN = re.compile(r"(^|_)name(_pre_2025|_2025)?$")
"""A name column of a mart: a person's, a commune's, district's or province's, an enterprise's."""
ALPHABET = "AĂÂBCDĐEÊFGHIJKLMNOÔƠPQRSTUƯVWXYZ"
"""The Vietnamese alphabet (Ă, Â, Đ, Ê, Ô, Ơ, Ư letters of their own, after A, A, D, E, O, O, U), with F, J, W, Z
where ICU's vi rules leave them, in Latin order."""
TONES = frozenset("\u0300\u0301\u0303\u0309\u0323")


def vietnamese_letters(name: str) -> tuple[int, ...]:
    """The primary sort key of a name by the Vietnamese alphabet: its letters without tone marks (tones and case only
    break ties, at ICU's secondary and tertiary levels), a space before any letter."""
    key = []
    for char in unicodedata.normalize("NFC", name):
        letter = unicodedata.normalize("NFC", "".join(
            c for c in unicodedata.normalize("NFD", char) if c not in TONES)).upper()
        key.append(-1 if letter.isspace() else ALPHABET.index(letter))
    return tuple(key)


def test_every_name_column_of_every_published_mart_has_the_vietnamese_collation(built: Built) -> None:
    """The collation reaches the published tables (created LIKE the build tables), and only the name columns."""
    collated = rows(built.config, """
        SELECT n.nspname || '.' || c.relname || '.' || a.attname, a.attcollation = 'reference.vietnamese'::regcollation
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname LIKE 'mart\\_%%' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
          AND a.atttypid = 'text'::regtype""")
    wanted = {column: bool(NAME_COLUMN.search(column.rsplit(".", 1)[1])) for column, _ in collated}
    assert dict(collated) == wanted
    assert sum(wanted.values()) >= 20


def test_a_published_mart_sorts_vietnamese_names_in_vietnamese_order(built: Built) -> None:
    """ICU's vi rules (CLDR): Đ is a letter of its own between D and E, so "Đặng" sorts after every "Dương" and
    before any E; in byte order (the --no-locale database's "C") it came after "Vũ". Tones and case only break ties."""
    (provider, locale), = rows(built.config, "SELECT collprovider, collcollate FROM pg_collation "
                                             "WHERE oid = 'reference.vietnamese'::regcollation")
    if provider == "c" and locale == "C":
        pytest.skip("this PostgreSQL has neither ICU nor a vi_VN locale: reference.vietnamese is the documented "
                    "fallback to byte order (docs/datasets.md)")
    names = [r[0] for r in rows(built.config, "SELECT full_name FROM mart_population.golden_citizens "
                                              "ORDER BY full_name")]
    keys = [vietnamese_letters(n) for n in names]
    assert keys == sorted(keys), "names out of Vietnamese alphabetical order"
    last_duong = max(i for i, n in enumerate(names) if n.startswith("Dương "))
    first_dang = min(i for i, n in enumerate(names) if n.startswith("Đặng "))
    assert last_duong < first_dang and all(not n.startswith("E") for n in names[last_duong:first_dang])
    in_bytes = [r[0] for r in rows(built.config, "SELECT full_name FROM mart_population.golden_citizens "
                                                 "ORDER BY full_name COLLATE \"C\"")]
    assert in_bytes.index(names[first_dang]) > max(i for i, n in enumerate(in_bytes) if n.startswith("Vũ "))


def test_once_the_build_returns_the_standby_holds_the_stamped_publication(built: Built) -> None:
    """No wait here: publishing completes only after the standby replayed it, so it is there already."""
    query = "SELECT run_id, as_of, published_at FROM kho.publications ORDER BY publication_id DESC LIMIT 1"
    with connect_standby(built.config.warehouse) as standby:
        assert standby.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        on_standby = standby.execute(query).fetchall()
        golden = standby.execute("SELECT count(*) FROM mart_population.golden_citizens").fetchone()
    assert on_standby == rows(built.config, query)
    assert on_standby[0][:2] == (f"day-{SPEC.days}", AS_OF)
    assert golden == (len({r["cccd"] for r in built.served["population.citizens"]}),)
    comment = rows(built.config, "SELECT obj_description('mart_population.golden_citizens'::regclass, 'pg_class')")
    assert f"by run day-{SPEC.days}, as of {AS_OF.isoformat()}" in comment[0][0]


def test_the_dbt_unit_tests_pass(built: Built) -> None:
    """The nightly build leaves them out (they test logic on fixed inputs, not the data): CI runs them here."""
    from kho.build.dbt import run_dbt
    from kho.warehouse.connection import primary_address

    host, port = primary_address(built.config.warehouse)
    outcome = run_dbt(built.config, ["test", "--select", "test_type:unit"], host=host, port=port)
    outcome.raise_for_failure()
    unit_tests = [n for n in outcome.nodes if n.resource_type == "unit_test"]
    assert len(unit_tests) >= 11 and all(n.status == "pass" for n in unit_tests)


def test_a_registry_silent_past_its_freshness_threshold_is_reported(built: Built) -> None:
    from kho.build.run import stale_sources

    assert stale_sources(built.config) == []
    with connect(built.config.warehouse) as conn, conn.transaction():
        conn.execute("UPDATE raw.business__branches SET _loaded_at = _loaded_at - interval '8 days'")
    try:
        assert stale_sources(built.config) == ["business__branches: error"]
    finally:
        with connect(built.config.warehouse) as conn, conn.transaction():
            conn.execute("UPDATE raw.business__branches SET _loaded_at = _loaded_at + interval '8 days'")


def test_the_build_keeps_dbt_docs_with_the_marts_and_their_agencies_under_kho_home(built: Built) -> None:
    from kho.build.run import docs_dir

    page = docs_dir(built.config) / "static_index.html"
    text = page.read_text(encoding="utf-8")
    for name in ("golden_citizens", "cross_registry_contradictions", "health_department", "police_department"):
        assert name in text, f"{page} does not mention {name}"


def _content_hashes(config: KhoConfig, relations: list[tuple[str, str]]) -> dict[str, str]:
    """md5 over each relation's rows in a stable order, bookkeeping columns left out."""
    hashes = {}
    with connect(config.warehouse, autocommit=True) as conn:
        for schema, table in relations:
            columns = [r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum", (f"{schema}.{table}",)).fetchall()
                if r[0] not in BOOKKEEPING]
            row = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
            digest = conn.execute(sql.SQL("SELECT md5(coalesce(string_agg({row}, E'\\n' ORDER BY {row}), '')) "
                                          "FROM {table}").format(row=row, table=sql.Identifier(schema, table)))
            hashes[f"{schema}.{table}"] = str(digest.fetchone()[0])  # type: ignore[index]
    return hashes


def _incremental_relations(config: KhoConfig) -> list[tuple[str, str]]:
    with connect(config.warehouse, autocommit=True) as conn:
        marts = [(m.build_schema, m.table) for m in built_marts(conn)]
    return [*marts, ("intermediate", "int_citizen_identity")]


def test_a_full_refresh_rebuilds_the_incremental_models_to_the_same_result(built: Built) -> None:
    relations = _incremental_relations(built.config)
    incremental = _content_hashes(built.config, relations)
    build_dbt(built.config, BuildPlan(f"day-{SPEC.days}-full", AS_OF, full_refresh=True))
    assert _content_hashes(built.config, relations) == incremental


def _correct(conn: psycopg.Connection[Any], entity: str, key: tuple[str, str], changes: dict[str, Any]) -> None:
    """A registry's correction of one record, committed as a load batch would commit it (a ledger row, the row's
    _batch_id moved to it), so the next build discovers it in its window."""
    registry, name = entity.split(".")
    (batch,) = conn.execute("SELECT nextval('kho.batch_id_seq')").fetchone()  # type: ignore[misc]
    conn.execute("INSERT INTO kho.load_ledger (batch_id, registry, entity, source, started_at, rows_read, rows_new, "
                  "rows_changed, rows_unchanged, rows_rejected) VALUES (%s, %s, %s, 'api', now(), 1, 0, 1, 0, 0)",
                  (batch, registry, name))
    assignments = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Literal(v))
                                     for c, v in {**changes, "_batch_id": batch}.items())
    updated = conn.execute(sql.SQL("UPDATE {} SET {} WHERE {} = %s").format(
        sql.Identifier("raw", f"{registry}__{name}"), assignments, sql.Identifier(key[0])), (key[1],)).rowcount
    assert updated == 1


def test_corrections_reach_the_published_marts_incrementally_as_a_full_refresh_would(built: Built) -> None:
    """A finding that a correction resolves disappears; a legal representative who changes moves 'business' from
    one golden citizen to the other: the nightly incremental build publishes what a full rebuild would."""
    config = built.config
    (coverage_id, died), = rows(config, "SELECT coverage_id, event_date FROM mart_audit.cross_registry_contradictions "
                                        "WHERE kind = 'deceased_with_active_coverage' ORDER BY coverage_id LIMIT 1")
    (enterprise, old_rep), = rows(config, """
        SELECT e.enterprise_code, e.legal_rep_cccd FROM mart_business.enterprises e
        WHERE e.legal_rep_known AND 1 = (SELECT count(*) FROM raw.business__enterprises o
                                         WHERE o.legal_rep_cccd = e.legal_rep_cccd)
        ORDER BY 1 LIMIT 1""")
    (new_rep,), = rows(config, "SELECT cccd FROM mart_population.golden_citizens WHERE is_alive AND NOT "
                               "('business' = ANY (known_to_registries)) ORDER BY cccd LIMIT 1")
    with connect(config.warehouse) as conn, conn.transaction():
        _correct(conn, "insurance.coverage_periods", ("coverage_id", coverage_id),
                 {"status": "ended", "valid_to": died})
        _correct(conn, "business.enterprises", ("enterprise_code", enterprise), {"legal_rep_cccd": new_rep})
    build(config, BuildPlan("corrections", AS_OF))

    assert rows(config, "SELECT count(*) FROM mart_audit.cross_registry_contradictions WHERE coverage_id = %s",
                (coverage_id,)) == [(0,)]
    known = dict(rows(config, "SELECT cccd, known_to_registries FROM mart_population.golden_citizens "
                              "WHERE cccd IN (%s, %s)", (old_rep, new_rep)))
    assert "business" not in known[old_rep] and "business" in known[new_rep]
    published = _published_hashes(config)
    build_dbt(config, BuildPlan("corrections-full", AS_OF, full_refresh=True))
    with connect(config.warehouse, autocommit=True) as conn:
        marts = [(m.build_schema, m.table) for m in built_marts(conn)]
    rebuilt = _content_hashes(config, marts)
    assert {name.removeprefix("build_"): digest for name, digest in rebuilt.items()} == published


def _published_hashes(config: KhoConfig) -> dict[str, str]:
    with connect(config.warehouse, autocommit=True) as conn:
        marts = [(m.schema, m.table) for m in built_marts(conn)]
    return _content_hashes(config, marts)


def _publications(config: KhoConfig) -> int:
    return int(rows(config, "SELECT count(*) FROM kho.publications")[0][0])


def test_a_failing_dbt_test_leaves_the_published_marts_byte_for_byte_unchanged(built: Built) -> None:
    before, count = _published_hashes(built.config), _publications(built.config)
    cccd = "001990000001"
    with connect(built.config.warehouse) as conn, conn.transaction():
        # A value no registry may send (the loader would refuse it) written behind the loader's back.
        conn.execute("INSERT INTO raw.population__citizens (cccd, full_name, date_of_birth, sex, ethnicity, "
                     "birth_province_code, hometown_province_code, permanent_commune_code, status, updated_at, "
                     "_batch_id, _first_batch_id) SELECT %s, 'Lỗi Thử', date '1999-01-01', 'X', 'Kinh', '01', '01', "
                     "permanent_commune_code, 'alive', now(), max(_batch_id), max(_batch_id) "
                     "FROM raw.population__citizens GROUP BY permanent_commune_code LIMIT 1", (cccd,))
    try:
        with pytest.raises(BuildError, match="accepted_values_golden_citizens_sex"):
            build(built.config, BuildPlan("broken-by-a-dbt-test", AS_OF, full_refresh=True))
        assert _published_hashes(built.config) == before
        assert _publications(built.config) == count
    finally:
        with connect(built.config.warehouse) as conn, conn.transaction():
            conn.execute("DELETE FROM raw.population__citizens WHERE cccd = %s", (cccd,))


def test_an_incremental_build_tests_the_rows_it_rebuilt(built: Built) -> None:
    """The nightly build's tests check only what it recomputed, so a bad record in the night's batch must still
    fail it (and publish nothing)."""
    before, count = _published_hashes(built.config), _publications(built.config)
    cccd = "001990000002"
    with connect(built.config.warehouse) as conn, conn.transaction():
        (batch,) = conn.execute("SELECT nextval('kho.batch_id_seq')").fetchone()  # type: ignore[misc]
        conn.execute("INSERT INTO kho.load_ledger (batch_id, registry, entity, source, started_at, rows_read, "
                     "rows_new, rows_changed, rows_unchanged, rows_rejected) "
                     "VALUES (%s, 'population', 'citizens', 'api', now(), 1, 1, 0, 0, 0)", (batch,))
        conn.execute("INSERT INTO raw.population__citizens (cccd, full_name, date_of_birth, sex, ethnicity, "
                     "birth_province_code, hometown_province_code, permanent_commune_code, status, updated_at, "
                     "_batch_id, _first_batch_id) SELECT %s, 'Lỗi Đêm', date '1999-01-01', 'X', 'Kinh', '01', '01', "
                     "permanent_commune_code, 'alive', now(), %s, %s FROM raw.population__citizens LIMIT 1",
                     (cccd, batch, batch))
    try:
        with pytest.raises(BuildError, match="accepted_values_golden_citizens_sex"):
            build(built.config, BuildPlan("broken-tonight", AS_OF))
        assert _published_hashes(built.config) == before
        assert _publications(built.config) == count
    finally:
        with connect(built.config.warehouse) as conn, conn.transaction():
            # The residence snapshot keeps history (no rebuild forgets it): take the test's citizen out of it too.
            conn.execute("DELETE FROM snapshots.citizen_residence_snapshot WHERE cccd = %s", (cccd,))
            conn.execute("DELETE FROM raw.population__citizens WHERE cccd = %s", (cccd,))


def test_a_failing_blocking_gx_expectation_leaves_the_published_marts_unchanged(built: Built) -> None:
    before, count = _published_hashes(built.config), _publications(built.config)
    with connect(built.config.warehouse) as conn, conn.transaction():
        # A death registered before the person was born: each registry's record is valid alone, dbt's tests pass,
        # and the golden record's GX suite ("nobody dies before being born") must stop the publication.
        (cccd, born), = conn.execute("SELECT cccd, date_of_birth FROM raw.population__citizens "
                                     "WHERE status = 'alive' ORDER BY cccd LIMIT 1").fetchall()
        conn.execute("INSERT INTO raw.civil_status__deaths (registration_id, cccd, date_of_death, place_commune_code, "
                     "registered_on, updated_at, _batch_id, _first_batch_id) SELECT 'KT999999999999', %s, %s, "
                     "place_commune_code, %s, now(), max(_batch_id), max(_batch_id) FROM raw.civil_status__deaths "
                     "GROUP BY place_commune_code LIMIT 1", (cccd, born - dt.timedelta(days=1), born))
    try:
        with pytest.raises(QualityError, match="golden_citizens"):
            build(built.config, BuildPlan("broken-by-gx", AS_OF, full_refresh=True))
        assert _published_hashes(built.config) == before
        assert _publications(built.config) == count
    finally:
        with connect(built.config.warehouse) as conn, conn.transaction():
            conn.execute("DELETE FROM raw.civil_status__deaths WHERE registration_id = 'KT999999999999'")


SHEETS_PARSED = "() => [...document.styleSheets].reduce((n, s) => n + s.cssRules.length, 0) > 100"
"""dbt's docs inline their CSS: styled once the page's sheets hold its rules. The page has two bugs of its own,
both on localhost: `<img src="{{ getIcon(...) }}">` requested before Angular fills it in, and a favicon address its
bundler left unresolved (`${require(...)}`): tolerated below by their exact shape, anything else fails."""


def test_kho_docs_serves_the_dbt_docs_and_the_marts_validation_pages_with_the_network_off(built: Built) -> None:
    """The pages an operator opens from `kho docs`: dbt's (its app draws the marts) and a mart's real validation
    result (GX's page styled by the shipped bootstrap); nothing requested from outside localhost."""
    from kho.docs import serving
    from tests.support.browser import chromium
    from tests.support.offline_page import look, shows

    site = built.config.gx_home / "data_docs" / "local_site"
    results = sorted(site.glob("validations/mart_population/golden_citizens/**/*.html"))
    assert results, f"no validation result page of the golden record under {site}"
    with serving(built.config) as url, chromium() as browser:
        dbt = look(browser, f"{url}dbt/", ready=shows("golden_citizens"), styled=SHEETS_PARSED)
        own_bugs = [f for f in dbt.failed if re.search(r"/dbt/(%7B%7B%20getIcon\(|\$%7Brequire\()", f)]
        assert (dbt.blocked, [f for f in dbt.failed if f not in own_bugs], dbt.styled) == ([], [], True)
        fetched = [u.split("?", 1)[0] for u in dbt.loaded]  # dbt's app asks for manifest.json?cb=<time>
        assert f"{url}dbt/manifest.json" in fetched and f"{url}dbt/catalog.json" in fetched
        page = f"{url}quality/{results[-1].relative_to(site).as_posix()}"
        gx = look(browser, page, ready=shows("golden_citizens"), scripts=("jQuery", "bootstrap"))
        assert (gx.blocked, gx.failed, gx.styled, gx.scripts) == ([], [], True, {"jQuery": True, "bootstrap": True})
