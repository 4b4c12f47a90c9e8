"""The table checksums the standby comparison relies on: they see one changed value and nothing but content.

The e2e test compares primary and standby with these checksums; were they blind to a changed value, a NULL, or a
row the standby has not replayed, that comparison would pass whatever the standby held.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kho.config import KhoConfig
from kho.warehouse import patroni
from kho.warehouse.connection import connect, connect_admin, wait_for_standby
from tests.support.checksums import (
    TableChecksum,
    differences,
    primary_and_standby_checksums,
    standby_index,
    table_checksums,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def two_tables(empty_db_config: KhoConfig) -> Iterator[KhoConfig]:
    """A database with two small tables of assorted types, one without a primary key."""
    with connect(empty_db_config.warehouse, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE TABLE raw.people (id int PRIMARY KEY, name text, born date, seen timestamptz, "
                     "score double precision, tags text[])")
        conn.execute("INSERT INTO raw.people SELECT i, 'Người ' || i, date '1990-01-01' + i, "
                     "timestamptz '2025-07-01 09:00+07' + i * interval '1 minute', i / 3.0, ARRAY['a', i::text] "
                     "FROM generate_series(1, 200) AS i")
        conn.execute("CREATE TABLE raw.events (kind text, at int)")
        conn.execute("INSERT INTO raw.events SELECT 'k' || (i % 7), i FROM generate_series(1, 50) AS i")
    yield empty_db_config


def checksums(config: KhoConfig) -> dict[str, TableChecksum]:
    with connect_admin(config.warehouse) as conn:
        return table_checksums(conn, ["raw"])


def change(config: KhoConfig, statement: str) -> None:
    with connect(config.warehouse, autocommit=True) as conn:
        conn.execute(statement)


@pytest.mark.parametrize("statement", [
    "UPDATE raw.people SET name = 'Người 100 ' WHERE id = 100",
    "UPDATE raw.people SET score = score + 1e-12 WHERE id = 7",
    "UPDATE raw.people SET seen = seen + interval '1 microsecond' WHERE id = 199",
    "UPDATE raw.people SET tags = ARRAY['a', NULL] WHERE id = 3",
    "UPDATE raw.people SET born = NULL WHERE id = 1",
], ids=["text", "float", "timestamp", "array-element", "null"])
def test_one_changed_value_changes_that_tables_checksum_and_no_other(two_tables: KhoConfig, statement: str) -> None:
    before = checksums(two_tables)
    change(two_tables, statement)
    after = checksums(two_tables)
    assert set(differences(before, after)) == {"raw.people"}
    assert before["raw.people"].rows == after["raw.people"].rows


def test_an_empty_string_and_a_null_checksum_differently(two_tables: KhoConfig) -> None:
    change(two_tables, "UPDATE raw.events SET kind = NULL WHERE at = 1")
    with_null = checksums(two_tables)
    change(two_tables, "UPDATE raw.events SET kind = '' WHERE at = 1")
    assert set(differences(with_null, checksums(two_tables))) == {"raw.events"}


def test_the_checksum_depends_on_content_not_on_physical_order(two_tables: KhoConfig) -> None:
    before = checksums(two_tables)
    # Both updates move their row to the end of the heap; the second restores the value.
    change(two_tables, "UPDATE raw.people SET name = name || '!' WHERE id <= 20")
    change(two_tables, "UPDATE raw.people SET name = rtrim(name, '!') WHERE id <= 20")
    change(two_tables, "DELETE FROM raw.events WHERE at = 5")
    change(two_tables, "INSERT INTO raw.events VALUES ('k5', 5)")
    assert differences(before, checksums(two_tables)) == {}


def test_a_row_the_standby_has_not_replayed_shows_as_a_difference_until_it_has(two_tables: KhoConfig) -> None:
    wh = two_tables.warehouse
    wait_for_standby(wh)
    primary, standby = primary_and_standby_checksums(wh, ["raw"])
    assert set(primary) == {"raw.people", "raw.events"} and differences(primary, standby) == {}
    # Patroni resumes a paused replay on its next cycle unless the cluster is in maintenance mode.
    patroni.patronictl(two_tables, ["pause", two_tables.ha.scope, "--wait"])
    try:
        with connect_admin(wh, node_index=standby_index(wh)) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            try:
                # The warehouse's commits wait until the synchronous standby has applied them (remote_apply);
                # this one, like a write made while the standby is away, returns once durable on the primary.
                change(two_tables, "SET synchronous_commit = local; UPDATE raw.events SET at = 51 WHERE at = 50")
                primary, standby = primary_and_standby_checksums(wh, ["raw"])
                assert list(differences(primary, standby)) == ["raw.events"]
                assert primary["raw.events"].rows == standby["raw.events"].rows, "same count, different content"
            finally:
                conn.execute("SELECT pg_wal_replay_resume()")
    finally:
        patroni.patronictl(two_tables, ["resume", two_tables.ha.scope, "--wait"])
    wait_for_standby(wh)
    assert differences(*primary_and_standby_checksums(wh, ["raw"])) == {}
