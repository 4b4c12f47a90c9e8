"""Airflow Asset URIs for warehouse tables, named once so producers and consumers cannot disagree.

The host part is the logical name of the warehouse, not a node: an Asset names data, and the data moves with
failover. Airflow's postgres provider requires `postgres://host/database/schema/table`.
"""

from __future__ import annotations

from kho.sources.contract import Entity

WAREHOUSE_HOST = "kho-warehouse"
DATABASE = "kho"


def table_uri(schema: str, table: str) -> str:
    return f"postgres://{WAREHOUSE_HOST}/{DATABASE}/{schema}/{table}"


def raw_uri(entity: Entity) -> str:
    """The Asset a sync DAG emits once the raw table passed its quality suite."""
    return table_uri("raw", entity.raw_table)
