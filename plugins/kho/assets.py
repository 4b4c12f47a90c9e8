"""The Airflow Assets of kho's warehouse tables, defined once so producers and consumers cannot disagree.

An Asset is named like the table (`raw.population__citizens`, the raw GX suite's name too) and its URI names the
warehouse logically, not a node: an Asset names data, and the data moves with failover. Airflow's postgres
provider requires `postgres://host/database/schema/table`.

Importing this module does not import Airflow (kho's Airflow settings must be exported first, see
`kho.airflow_env`): the Asset objects are made on first use, once per process.
"""

from __future__ import annotations

import functools
import operator
from typing import TYPE_CHECKING

from kho.sources.contract import Entity

if TYPE_CHECKING:
    from airflow.sdk import Asset
    from airflow.sdk.definitions.asset import BaseAsset

WAREHOUSE_HOST = "kho-warehouse"
DATABASE = "kho"
RAW_GROUP = "kho-raw"
"""Where the raw tables' Assets sit in the UI's asset list."""
MART_GROUP = "kho-marts"


def table_uri(schema: str, table: str) -> str:
    return f"postgres://{WAREHOUSE_HOST}/{DATABASE}/{schema}/{table}"


def raw_uri(entity: Entity) -> str:
    return table_uri("raw", entity.raw_table)


def raw_asset(entity: Entity) -> Asset:
    """The Asset a sync DAG emits once every batch it loaded into the entity's raw table passed the raw suite."""
    return _asset(f"raw.{entity.raw_table}", raw_uri(entity), RAW_GROUP)


def published_marts() -> Asset:
    """The Asset build_warehouse's `publish` emits once a publication is committed and the standby has replayed
    it: named after `kho.publications`, where each publication is recorded. What runs after publishing (the nightly
    backup) waits for it."""
    return _asset("kho.publications", table_uri("kho", "publications"), MART_GROUP)


@functools.cache
def _asset(name: str, uri: str, group: str) -> Asset:
    from airflow.sdk import Asset

    return Asset(name=name, uri=uri, group=group)


def every_raw_table(entities: tuple[Entity, ...]) -> BaseAsset:
    """All the entities' raw Assets (`&`): what a consumer waits for when it needs every registry refreshed."""
    return functools.reduce(operator.and_, (raw_asset(entity) for entity in entities))
