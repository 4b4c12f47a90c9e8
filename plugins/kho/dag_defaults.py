"""What every kho DAG shares, said once: owner, retry policies, tags, start date and timezone.

The DAG files in dags/ take these instead of repeating them; a DAG-level setting (`catchup`, `schedule`,
`dagrun_timeout`) stays on the DAG, where Airflow reads it, never in `default_args`, where it would do nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import pendulum

from kho.sources.registry import OWNER, TIMEZONE

START = (2025, 7, 1)
"""The first day kho's DAGs are scheduled from (in each DAG's timezone); `catchup=False` keeps it in the past."""
TAG = "kho"
"""Every kho DAG is tagged `kho` first, then with what it does."""


@dataclass(frozen=True)
class Retries:
    """How a DAG's tasks are retried: how often, after how long, and by what the wait is multiplied each time (up
    to `max_delay`). Airflow 3 takes the backoff as a multiplier: `True` counts as 1, a constant delay."""

    retries: int
    delay: dt.timedelta
    backoff: float = 0.0
    max_delay: dt.timedelta | None = None

    def default_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"retries": self.retries, "retry_delay": self.delay,
                                "retry_exponential_backoff": self.backoff}
        if self.max_delay is not None:
            args["max_retry_delay"] = self.max_delay
        return args


REGISTRY_RETRIES = Retries(3, dt.timedelta(minutes=2), backoff=2.0, max_delay=dt.timedelta(minutes=20))
"""A registry API down for a while, a batch's validation hitting a failover: several retries, at least 2, 4, then 8
minutes apart (Airflow adds up to as much again)."""
BUILD_RETRIES = Retries(1, dt.timedelta(minutes=2))
"""A dbt model or GX suite that failed on the data fails again: one retry, for a lost connection."""


QUIET_LOGGERS = ("cosmos", "dbt", "great_expectations", "openlineage", "airflow.providers.openlineage",
                 "sqlalchemy", "alembic")
"""Libraries whose INFO lines would bury kho's stage lines in a task's log: they log at WARNING and above there."""


def quiet_libraries(context: Any = None) -> None:
    """Each task's first step (`on_execute_callback`): Airflow's `[logging] namespace_levels` filters only its
    structlog loggers, so the stdlib loggers of dbt, Cosmos, GX and OpenLineage are set to WARNING here."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def default_args(retries: Retries, owner: str = OWNER) -> dict[str, Any]:
    """`default_args` of a kho DAG: who answers when a task fails, how it is retried, and that its log is kho's
    stage lines (`quiet_libraries`)."""
    return {"owner": owner, **retries.default_args(), "on_execute_callback": quiet_libraries}


def start_date(timezone: str = TIMEZONE) -> pendulum.DateTime:
    return pendulum.datetime(*START, tz=timezone)


def tags(*what: str) -> list[str]:
    return [TAG, *what]
