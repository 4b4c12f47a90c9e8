"""The run report (the operations centre view): one HTML page of plots — loads per registry over time, quarantine
reasons, quality pass rates, health-insurance coverage by province and commune in old and new units, vital events
per month — drawn server-side into inline SVG, written after every nightly build under KHO_HOME/report/.

`kho.report.page.write_report` writes it; this package's top level imports nothing heavy (matplotlib loads only
when a report is drawn)."""

from __future__ import annotations

from pathlib import Path

from kho.config import KhoConfig


def default_dir(config: KhoConfig) -> Path:
    """Where the nightly report goes, and what `kho docs` serves at /report/."""
    return config.home / "report"


__all__ = ["default_dir"]
