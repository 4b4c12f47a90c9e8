"""The runner's parts that need no server: cheap import, failure messages, the warehouse URL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from kho.config import WarehouseConfig
from kho.errors import QualityError
from kho.quality.runner import ExpectationOutcome, QualityResult, raise_for_blocking, warehouse_url


def _result(*outcomes: ExpectationOutcome, batch_id: int | None = 42) -> QualityResult:
    failed = [o for o in outcomes if not o.success]
    return QualityResult(
        suite="raw.population__citizens", table="raw.population__citizens", batch_id=batch_id,
        success=not failed, evaluated=len(outcomes), failed=len(failed),
        blocking_failed=sum(o.severity == "blocking" for o in failed), results=outcomes,
        data_docs_path=Path("/gx/uncommitted/data_docs/local_site/index.html"),
    )


NOT_NULL_NAME = ExpectationOutcome("expect_column_values_to_not_be_null", "full_name", False, 3, "blocking")
UNKNOWN_COMMUNE = ExpectationOutcome("expect_column_values_to_be_in_set", "permanent_commune_code", False, 1, "warning")
UNIQUE_KEY = ExpectationOutcome("expect_column_values_to_be_unique", "cccd", True, 0, "blocking")


def test_importing_kho_quality_does_not_import_great_expectations() -> None:
    code = "import sys, kho.quality; print('great_expectations' in sys.modules or 'sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_raise_for_blocking_names_table_batch_and_failed_expectations() -> None:
    with pytest.raises(QualityError) as err:
        raise_for_blocking(_result(NOT_NULL_NAME, UNKNOWN_COMMUNE, UNIQUE_KEY))
    message = str(err.value)
    assert "raw.population__citizens (batch 42)" in message
    assert "expect_column_values_to_not_be_null(full_name): 3 unexpected" in message
    assert "permanent_commune_code" not in message  # a warning is recorded, not a reason to stop
    assert "index.html" in message


def test_raise_for_blocking_says_whole_table_without_a_batch() -> None:
    with pytest.raises(QualityError, match=r"\(the whole table\)"):
        raise_for_blocking(_result(NOT_NULL_NAME, batch_id=None))


def test_raise_for_blocking_lets_warnings_pass() -> None:
    raise_for_blocking(_result(UNKNOWN_COMMUNE, UNIQUE_KEY))


def test_quality_result_lists_its_failures() -> None:
    assert _result(NOT_NULL_NAME, UNKNOWN_COMMUNE, UNIQUE_KEY).failures == (NOT_NULL_NAME, UNKNOWN_COMMUNE)


def test_warehouse_url_lists_every_node_for_the_primary_and_quotes_the_password() -> None:
    wh = WarehouseConfig(hosts=("10.0.0.1", "10.0.0.2"), ports=(5432, 5433), dbname="kho", user="kho",
                         password_file=Path("/nonexistent"), password_env="p@ss:w/rd")
    url = urlsplit(warehouse_url(wh))
    assert url.scheme == "postgresql+psycopg"
    assert url.password == "p%40ss%3Aw%2Frd"
    query = parse_qs(url.query)
    assert query["host"] == ["10.0.0.1:5432", "10.0.0.2:5433"]
    assert query["target_session_attrs"] == ["read-write"]
