"""Data quality with Great Expectations: a GX project declared once under `expectations/` (suites, assets,
validation definitions, checkpoints), run per raw run and per mart, its results recorded in kho.quality_results,
kho.quality_flags and kho.quality_validations.

Importing this package does not import GX (seconds of start-up); a validation does, on first use.
"""

from kho.quality.runner import (
    ExpectationOutcome,
    QualityResult,
    raise_for_blocking,
    validate_mart,
    validate_raw,
    warehouse_url,
)
from kho.quality.suites import Severity, load_suite, raw_suite

__all__ = [
    "ExpectationOutcome", "QualityResult", "Severity", "load_suite", "raise_for_blocking", "raw_suite",
    "validate_mart", "validate_raw", "warehouse_url",
]
