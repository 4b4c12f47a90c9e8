"""Run dbt in-process (dbtRunner) against the warehouse, the way Cosmos does inside Airflow.

dbt reads its connection from the environment (dbt_project/profiles.yml uses env_var), so a run sets the variables
for the duration of the call and restores them after. Its target and log folders live under KHO_HOME, never in the
repository.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kho.config import PROJECT_ROOT, KhoConfig
from kho.errors import KhoError

DBT_PROJECT = PROJECT_ROOT / "dbt_project"
PROFILE = "kho"
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})


class BuildError(KhoError):
    """dbt could not build or a blocking dbt test failed: nothing was published."""


@dataclass(frozen=True)
class NodeOutcome:
    """One dbt node's result: a model, seed or snapshot built, a test passed or failed."""

    unique_id: str
    resource_type: str
    name: str
    status: str
    message: str

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass(frozen=True)
class DbtOutcome:
    command: tuple[str, ...]
    success: bool
    nodes: tuple[NodeOutcome, ...]

    @property
    def failures(self) -> tuple[NodeOutcome, ...]:
        return tuple(n for n in self.nodes if n.failed)

    def raise_for_failure(self) -> None:
        """Fail naming every failing model and test, and what dbt said about each."""
        if self.success:
            return
        failed = self.failures
        listed = "; ".join(f"{n.resource_type} {n.name} ({n.status}){': ' + n.message if n.message else ''}"
                           for n in failed) or "see the dbt log"
        raise BuildError(f"dbt {' '.join(self.command[:1])} failed ({len(failed)} failing): {listed}")


def target_dir(config: KhoConfig) -> Path:
    """dbt's target folder (manifest, compiled SQL, docs) under KHO_HOME."""
    return config.home / "dbt" / "target"


def dbt_environment(config: KhoConfig, host: str, port: int) -> dict[str, str]:
    """What profiles.yml reads: the node to write to and the warehouse login (the password from its file)."""
    wh = config.warehouse
    return {
        "KHO_DBT_HOST": host,
        "KHO_DBT_PORT": str(port),
        "KHO_PG_USER": wh.user,
        "KHO_PG_PASSWORD": wh.password(),
        "KHO_PG_DATABASE": wh.dbname,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }


def dbt_vars(as_of: str | None, run_id: str | None) -> dict[str, str]:
    """The project's variables (dbt_project.yml): the as-of date and the run that builds."""
    values = {}
    if as_of:
        values["as_of"] = as_of
    if run_id:
        values["kho_run_id"] = run_id
    return values


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_dbt(config: KhoConfig, command: Sequence[str], *, host: str, port: int,
            variables: Mapping[str, str] | None = None, target: Path | None = None) -> DbtOutcome:
    """`dbt <command>` against the node at host:port; returns every node's outcome (never raises for a failing
    test: call `raise_for_failure`). `target` replaces dbt's target folder (KHO_HOME/dbt/target)."""
    from dbt.cli.main import dbtRunner

    target = target or target_dir(config)
    args = [
        *command,
        "--project-dir", str(DBT_PROJECT),
        "--profiles-dir", str(DBT_PROJECT),
        "--target-path", str(target),
        "--log-path", str(target_dir(config).parent / "logs"),
    ]
    if variables:
        args += ["--vars", json.dumps(dict(variables))]
    with _environment(dbt_environment(config, host, port)):
        result = dbtRunner().invoke(args)
    return DbtOutcome(tuple(command), bool(result.success), _nodes(result.result))


def _nodes(result: Any) -> tuple[NodeOutcome, ...]:
    outcomes = []
    for item in getattr(result, "results", None) or ():
        node = getattr(item, "node", None)
        if node is None:
            continue
        outcomes.append(NodeOutcome(
            unique_id=str(node.unique_id),
            resource_type=str(node.resource_type),
            name=str(node.name),
            status=str(getattr(item.status, "value", item.status)),
            message=str(item.message or ""),
        ))
    return tuple(outcomes)
