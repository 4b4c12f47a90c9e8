"""The run report's page from given numbers (no warehouse): each plot drawn as inline SVG with its data marked, a
plot without rows saying so, Vietnamese names drawn, and the file replaced whole."""

from __future__ import annotations

import csv
import datetime as dt
import re
import warnings
from pathlib import Path

import pytest

import kho.sources
from kho.report.data import PlotData, ReportData
from kho.report.page import SECTIONS, page, write_atomically
from kho.report.plots import PLOTS, render

DAY = dt.date(2026, 11, 30)
ROWS = {
    "ledger": [(DAY, "population", 100, 90, 5, 5), (DAY + dt.timedelta(days=1), "insurance", 30, 30, 0, 0)],
    "quarantine": [("malformed", "population.citizens", 5), ("unknown_reference", "insurance.participants", 2)],
    "quality_days": [(DAY, "raw", 10, 2, 0), (DAY, "mart", 8, 1, 1)],
    "quality_suites": [("raw.population__citizens", 20, 22), ("mart_health.insurance_coverage_by_province", 5, 5)],
    "coverage_new": [("01", "Thành phố Hà Nội", 1000, 870), ("79", "Thành phố Hồ Chí Minh", 500, 400)],
    "coverage_old": [("01", "Thành phố Hà Nội", 1000, 870), ("02", "Tỉnh Hà Giang", 10, 9)],
    "coverage_communes": [("pre_2025", 8, 10), ("2025", 9, 4)],
    "vital_events": [(dt.date(2026, 9, 1), "birth", 4), (dt.date(2026, 11, 1), "death", 2)],
}
"""A row or two per plot: enough to draw every series kind."""


def data(rows: dict[str, list[tuple[object, ...]]]) -> ReportData:
    return ReportData((7, DAY, dt.datetime(2026, 12, 1, 2, tzinfo=dt.UTC)),
                      {key: PlotData(key, f"kho.{key}", ("a",), list(rows.get(key, []))) for key in PLOTS})


def test_every_plot_the_page_lays_out_has_a_drawing_and_a_caption() -> None:
    assert sorted(k for _, keys in SECTIONS for k in keys) == sorted(PLOTS) == sorted(ROWS)
    for plot in PLOTS.values():
        assert plot.title and plot.caption.endswith(".")
        assert re.search(r"\b(kho|mart_[a-z_]+)\.[a-z_0-9]+", plot.caption), "the caption names its table"


@pytest.mark.parametrize("key", sorted(ROWS))
def test_a_plot_with_rows_is_inline_svg_with_its_data_marked(key: str) -> None:
    svg = render(key, PlotData(key, "kho.x", ("a",), ROWS[key]))
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg
    assert re.search(r'viewBox="0 0 [\d.]+ [\d.]+"', svg)
    assert f'id="kho-data-{key}' in svg


def test_a_page_with_data_draws_every_plot_and_lists_its_numbers() -> None:
    text, drawn, empty = page(data(ROWS), dt.datetime(2026, 12, 1, 3, tzinfo=dt.UTC))
    assert sorted(drawn) == sorted(PLOTS) and empty == []
    assert text.count("<svg") == len(PLOTS) and "No data yet" not in text
    assert "Made 2026-12-01 10:00:00 (Asia/Ho_Chi_Minh)" in text
    assert "Newest publication: #7, as of 2026-11-30" in text
    assert '<td class="n">1,000</td>' in text and "<td>Thành phố Hồ Chí Minh</td>" in text


def test_a_page_without_data_says_so_in_every_plot() -> None:
    plots = data({}).plots
    plots["coverage_new"] = PlotData("coverage_new", "mart_health.x", ("a",), missing="mart_health.x does not exist")
    text, drawn, empty = page(ReportData(None, plots), dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    assert drawn == [] and sorted(empty) == sorted(PLOTS)
    assert "<svg" not in text
    assert text.count("No data yet: ") == len(PLOTS)
    assert "No data yet: mart_health.x does not exist." in text
    assert "No data yet: kho.ledger has no rows yet." in text
    assert "Nothing has been published yet." in text


def test_every_province_name_old_and_new_is_drawn_in_glyphs_the_font_has() -> None:
    """Glyphs as paths in DejaVu Sans (no <text>, so no font needed in the browser); matplotlib warns of a glyph its
    font lacks, and here that warning fails the test."""
    reference = Path(kho.sources.__file__).parent / "reference"
    names = [(row["province_code"], row["province_name"]) for file in ("provinces.csv", "provinces_2025.csv")
             for row in csv.DictReader((reference / file).open(encoding="utf-8"))]
    assert len(names) == 63 + 34
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        svg = render("coverage_new", PlotData("coverage_new", "kho.x", ("a",), [(c, n, 10, 9) for c, n in names]))
    assert "<text" not in svg
    assert svg.count('id="kho-data-coverage_new') == len(names)


def test_the_page_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "report" / "index.html"
    write_atomically(target, "old")
    write_atomically(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    assert [p.name for p in target.parent.iterdir()] == ["index.html"]
