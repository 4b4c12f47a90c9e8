"""The runner's parts that need no server: cheap import, failure messages, the warehouse URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from kho.config import WarehouseConfig
from kho.errors import QualityError
from kho.quality.runner import ExpectationOutcome, QualityResult, raise_for_blocking, warehouse_url


def _result(*outcomes: ExpectationOutcome, batches: tuple[int, int] | None = (42, 45)) -> QualityResult:
    first, last = batches if batches else (None, None)
    return QualityResult(
        validation_id=7, suite="raw.population__citizens", table="raw.population__citizens", run_id="manual",
        first_batch_id=first, last_batch_id=last, results=outcomes, rows=1000,
        data_docs_path=Path("/gx/data_docs/local_site/index.html"),
    )


def _outcome(index: int, type_: str, column: str, success: bool, unexpected: int, severity: str,
             rule: str | None = None) -> ExpectationOutcome:
    return ExpectationOutcome(index, type_, column, rule, severity, success, unexpected, 1000, {})  # type: ignore[arg-type]


NAME_TOO_LONG = _outcome(0, "expect_column_value_lengths_to_be_between", "full_name", False, 3, "blocking")
STALE_COMMUNE = _outcome(1, "expect_column_values_to_be_commune_code_valid_on_date", "permanent_commune_code", False,
                         1, "warning", "commune_code_valid_for_date")
CCCD_OK = _outcome(2, "expect_column_values_to_be_valid_cccd", "cccd", True, 0, "blocking", "cccd_matches_birth")


def test_importing_kho_quality_does_not_import_great_expectations() -> None:
    code = "import sys, kho.quality; print('great_expectations' in sys.modules or 'sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_raise_for_blocking_names_table_batch_range_and_failed_expectations_with_counts() -> None:
    with pytest.raises(QualityError) as err:
        raise_for_blocking(_result(NAME_TOO_LONG, STALE_COMMUNE, CCCD_OK))
    message = str(err.value)
    assert "raw.population__citizens (batches 42-45)" in message
    assert "expect_column_value_lengths_to_be_between(full_name): 3 of 1000 rows unexpected" in message
    assert "commune_code_valid_for_date" not in message  # a warning is recorded, not a reason to stop
    assert "1 warning(s) failed too" in message
    assert "WHERE _batch_id BETWEEN 42 AND 45" in message
    assert "index.html" in message and "\n" not in message


def test_raise_for_blocking_says_whole_table_without_a_batch_range() -> None:
    with pytest.raises(QualityError, match=r"\(the whole table\)"):
        raise_for_blocking(_result(NAME_TOO_LONG, batches=None))


def test_raise_for_blocking_lets_warnings_pass() -> None:
    raise_for_blocking(_result(STALE_COMMUNE, CCCD_OK))


def test_quality_result_lists_its_failures_and_its_state() -> None:
    assert _result(NAME_TOO_LONG, STALE_COMMUNE, CCCD_OK).failures == (NAME_TOO_LONG, STALE_COMMUNE)
    assert _result(NAME_TOO_LONG, STALE_COMMUNE).state == "failed"
    assert _result(STALE_COMMUNE, CCCD_OK).state == "warned"
    assert _result(CCCD_OK).state == "passed"
    assert _result(CCCD_OK, batches=(9, 9)).batch_range == "batch 9"


def test_the_summary_is_json_with_each_failure_and_its_count() -> None:
    summary = _result(NAME_TOO_LONG, STALE_COMMUNE, CCCD_OK).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["state"] == "failed" and (summary["failed"], summary["blocking_failed"]) == (2, 1)
    assert summary["failures"][1] == {"expectation": "expect_column_values_to_be_commune_code_valid_on_date",
                                      "column": "permanent_commune_code", "rule": "commune_code_valid_for_date",
                                      "severity": "warning", "unexpected_count": 1}


def test_warehouse_url_lists_every_node_for_the_primary_and_quotes_the_password() -> None:
    wh = WarehouseConfig(hosts=("10.0.0.1", "10.0.0.2"), ports=(5432, 5433), dbname="kho", user="kho",
                         password_file=Path("/nonexistent"), password_env="p@ss:w/rd")
    url = urlsplit(warehouse_url(wh))
    assert url.scheme == "postgresql+psycopg"
    assert url.password == "p%40ss%3Aw%2Frd"
    query = parse_qs(url.query)
    assert query["host"] == ["10.0.0.1:5432", "10.0.0.2:5433"]
    assert query["target_session_attrs"] == ["read-write"]
