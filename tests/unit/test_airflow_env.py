"""Airflow's environment from kho's settings: every address from the one port setting, concurrency from the CPUs,
task logs at INFO with the libraries' chatter at WARNING."""

from __future__ import annotations

from pathlib import Path

import pytest

from kho.airflow_env import TASK_LOG_ENVIRONMENT, Sizing, airflow_environment, api_base_url, usable_cpus
from kho.config import KhoConfig
from kho.errors import ConfigError


def config(tmp_path: Path, **settings: str) -> KhoConfig:
    return KhoConfig.from_env({"KHO_HOME": str(tmp_path), **settings})


def test_port_base_url_and_execution_api_url_all_follow_kho_airflow_port(tmp_path: Path) -> None:
    env = airflow_environment(config(tmp_path, KHO_AIRFLOW_PORT="18181"), Sizing.for_cpus(2))
    assert env["AIRFLOW__API__PORT"] == "18181"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18181"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18181/execution/"


def test_the_api_server_listens_on_localhost_only_and_defaults_to_port_8080(tmp_path: Path) -> None:
    settings = config(tmp_path)
    env = airflow_environment(settings, Sizing.for_cpus(2))
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert api_base_url(settings) == env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8080"


def test_the_port_setting_is_passed_on_to_children(tmp_path: Path) -> None:
    assert config(tmp_path, KHO_AIRFLOW_PORT="18182").child_env()["KHO_AIRFLOW_PORT"] == "18182"


@pytest.mark.parametrize("raw", ["80", "eighty", "70000"])
def test_a_port_that_is_no_unprivileged_port_is_refused_naming_the_setting(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="KHO_AIRFLOW_PORT"):
        config(tmp_path, KHO_AIRFLOW_PORT=raw)


@pytest.mark.parametrize(("cpus", "parallelism", "api_workers"), [(1, 2, 1), (2, 4, 1), (8, 16, 4), (64, 128, 4)])
def test_concurrency_is_sized_to_the_cpus(cpus: int, parallelism: int, api_workers: int) -> None:
    sizing = Sizing.for_cpus(cpus)
    assert (sizing.parallelism, sizing.api_workers) == (parallelism, api_workers)
    assert 1 <= sizing.parsing_processes <= api_workers


def test_the_environment_carries_the_sizing_it_is_given(tmp_path: Path) -> None:
    env = airflow_environment(config(tmp_path), Sizing.for_cpus(2))
    assert (env["AIRFLOW__CORE__PARALLELISM"], env["AIRFLOW__API__WORKERS"],
            env["AIRFLOW__CORE__EXECUTOR"]) == ("4", "1", "LocalExecutor")


def test_usable_cpus_counts_this_process_s_share() -> None:
    assert 1 <= usable_cpus() <= 4096


def test_tasks_log_at_info_and_libraries_at_warning(tmp_path: Path) -> None:
    env = airflow_environment(config(tmp_path), Sizing.for_cpus(2))
    assert env["AIRFLOW__LOGGING__LOGGING_LEVEL"] == "INFO"
    levels = dict(pair.split("=") for pair in env["AIRFLOW__LOGGING__NAMESPACE_LEVELS"].split())
    assert {levels[name] for name in ("cosmos", "dbt", "openlineage", "great_expectations")} == {"WARNING"}
    assert (TASK_LOG_ENVIRONMENT["DBT_LOG_LEVEL"], TASK_LOG_ENVIRONMENT["DBT_LOG_LEVEL_FILE"]) == ("warn", "info")
