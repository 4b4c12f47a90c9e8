"""One build of the shared datasets, step by step: dbt build → audit (GX) → publish → docs.

`build_warehouse` runs these steps as Airflow tasks (dbt through Cosmos, one task per model); `kho build` runs the
same steps in one process. Either way a step that fails stops the build before anything is published.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kho.build.dbt import DBT_PROJECT, BuildError, DbtOutcome, build_environment, run_dbt, target_dir
from kho.build.publish import Mart, Publication, built_marts, personal_columns, publish
from kho.config import KhoConfig
from kho.errors import ConfigError, QualityError
from kho.quality.project import mart_suites
from kho.quality.suites import suite_path
from kho.warehouse.connection import connect, primary_address, wait_for_standby

LOCAL_TZ = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass(frozen=True)
class BuildPlan:
    """What one build is asked for: the as-of date the marts describe, the run, and whether to rebuild all."""

    run_id: str
    as_of: dt.date
    full_refresh: bool = False

    @property
    def environment(self) -> dict[str, str]:
        return build_environment(self.as_of.isoformat(), self.run_id)


def local_today(at: dt.datetime | None = None) -> dt.date:
    """The date in Asia/Ho_Chi_Minh (the province's day) at `at`, now by default."""
    return (at or dt.datetime.now(dt.UTC)).astimezone(LOCAL_TZ).date()


def parse_as_of(text: str | None, *, default: dt.date) -> dt.date:
    if not text:
        return default
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError as exc:
        raise ConfigError(f"as_of={text!r} is not a date: give it as YYYY-MM-DD") from exc


NIGHTLY_EXCLUDES = ("--exclude-resource-type", "unit_test")
"""Unit tests check the models' logic on fixed inputs: they run in CI (tests/integration/test_datasets.py), not
every night on unchanged code, as dbt recommends."""


def build_dbt(config: KhoConfig, plan: BuildPlan) -> DbtOutcome:
    """`dbt build` of the whole project into the build schemas; raises naming every failing model and test."""
    host, port = primary_address(config.warehouse)
    command = ["build", *NIGHTLY_EXCLUDES, *(["--full-refresh"] if plan.full_refresh else [])]
    outcome = run_dbt(config, command, host=host, port=port, environment=plan.environment)
    outcome.raise_for_failure()
    return outcome


def mart_suite(config: KhoConfig, mart: Mart) -> Path:
    return suite_path(config.expectations_dir, mart.name)


def marts_to_publish(config: KhoConfig) -> list[Mart]:
    """The marts dbt built; each must have its GX suite, and every mart suite a built mart."""
    with connect(config.warehouse, autocommit=True) as conn:
        marts = built_marts(conn)
    missing = [m.name for m in marts if not mart_suite(config, m).exists()]
    if missing:
        raise ConfigError(f"marts without a GX suite cannot be published: {', '.join(missing)}; add "
                          "expectations/suites/<mart schema>/<table>.json for each (the published dataset's promises) "
                          "and run `kho generate`")
    built = {m.name for m in marts}
    orphans = sorted(name for name in mart_suites(config.expectations_dir) if name not in built)
    if orphans:
        raise ConfigError(f"GX suites for marts dbt did not build: {', '.join(orphans)}; run the dbt build first, or "
                          "remove the suites of marts that no longer exist")
    return marts


def audit_marts(config: KhoConfig, marts: Sequence[Mart], run_id: str | None = None) -> list[dict[str, Any]]:
    """Every mart's GX checkpoint on its build table; a blocking failure fails after all suites ran, naming each,
    and nothing is published; a warning is recorded, reported and published."""
    from kho.quality import validate_mart

    summaries, failures = [], []
    for mart in marts:
        try:
            summaries.append(validate_mart(config, mart.name, mart.build_schema, mart.table, run_id=run_id).summary())
        except QualityError as exc:
            failures.append(str(exc))
    if failures:
        raise QualityError("nothing was published: " + " | ".join(failures))
    return summaries


def publish_marts(config: KhoConfig, plan: BuildPlan, marts: Sequence[Mart]) -> Publication:
    """Publish in one transaction once the standby holds the build, and return once it holds the publication."""
    markings = personal_columns(DBT_PROJECT / "models" / "marts")
    wait_for_standby(config.warehouse)
    with connect(config.warehouse) as conn:
        publication = publish(conn, marts, run_id=plan.run_id, as_of=plan.as_of, personal_columns=markings)
    wait_for_standby(config.warehouse)
    return publication


def docs_dir(config: KhoConfig) -> Path:
    return config.home / "dbt" / "docs"


def generate_docs(config: KhoConfig, plan: BuildPlan) -> Path:
    """`dbt docs generate --static`: one self-contained page under KHO_HOME/dbt/docs for the UI and for offline use."""
    host, port = primary_address(config.warehouse)
    folder = docs_dir(config)
    outcome = run_dbt(config, ["docs", "generate", "--static"], host=host, port=port, environment=plan.environment,
                      target=folder)
    outcome.raise_for_failure()
    page = folder / "static_index.html"
    if not page.is_file():
        raise BuildError(f"dbt docs generate --static wrote no {page}")
    return page


def stale_sources(config: KhoConfig) -> list[str]:
    """`dbt source freshness` over the raw tables: the ones past their warn or error threshold, with dbt's verdict
    (the sources files declare them from the nightly schedule)."""
    host, port = primary_address(config.warehouse)
    outcome = run_dbt(config, ["source", "freshness"], host=host, port=port)
    if outcome.error:
        raise BuildError(f"dbt source freshness could not run: {outcome.error}")
    return [f"{n.name}: {n.status}" for n in outcome.nodes if n.status not in ("pass", "success")]


@dataclass(frozen=True)
class BuildReport:
    dbt: DbtOutcome
    quality: list[dict[str, Any]]
    publication: Publication
    docs: Path


def build(config: KhoConfig, plan: BuildPlan) -> BuildReport:
    """The whole build in this process (what `kho build` runs)."""
    outcome = build_dbt(config, plan)
    marts = marts_to_publish(config)
    quality = audit_marts(config, marts, plan.run_id)
    publication = publish_marts(config, plan, marts)
    docs = generate_docs(config, plan)
    return BuildReport(outcome, quality, publication, docs)


__all__ = ["BuildPlan", "BuildReport", "audit_marts", "build", "build_dbt", "docs_dir", "generate_docs",
           "local_today", "marts_to_publish", "parse_as_of", "publish_marts", "stale_sources", "target_dir"]
