"""Data quality with Great Expectations: suites as data in `expectations/`, run per table or per load batch.

Importing this package does not import GX (seconds of start-up); `run_suite` does, on first use.
"""

from kho.quality.runner import (
    ExpectationOutcome,
    QualityResult,
    raise_for_blocking,
    record_result,
    run_suite,
    validate,
    warehouse_url,
)
from kho.quality.suites import Severity, load_suite, raw_suite

__all__ = [
    "ExpectationOutcome", "QualityResult", "Severity", "load_suite", "raise_for_blocking",
    "raw_suite", "record_result", "run_suite", "validate", "warehouse_url",
]
