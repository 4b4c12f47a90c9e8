"""The report's plots, drawn server-side by matplotlib into SVG (no display, no pyplot state, no JavaScript): each
function takes one `PlotData` with rows and returns a Figure with its title and axis labels.

Text is drawn as paths in DejaVu Sans (matplotlib's own font, which covers Vietnamese), so province names render the
same in any browser, with no font and no network.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from matplotlib import rc_context
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.dates import DateFormatter, DayLocator, MonthLocator, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from matplotlib.typing import RcKeyType

from kho.report.data import COVERAGE_BINS, PlotData

STYLE: dict[RcKeyType, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "svg.fonttype": "path",  # glyphs as paths: the page needs no font
    "svg.hashsalt": "kho",  # the same data gives the same SVG
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
WIDTH = 9.0
"""Inches; the page scales every figure to its column."""


@dataclass(frozen=True)
class Plot:
    """How one plot is drawn and described: its title, the caption sentence, and the drawing."""

    title: str
    caption: str
    draw: Callable[[PlotData], Figure]


@contextmanager
def _style() -> Iterator[None]:
    with rc_context(STYLE):
        yield


def to_svg(figure: Figure) -> str:
    """The figure as an `<svg>` element to inline in HTML (the XML prolog and DOCTYPE removed)."""
    buffer = io.StringIO()
    with _style():
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _tag(key: str, artists: Iterable[Artist]) -> None:
    """Mark what draws the data (not axes, ticks or grid), as `<g id="kho-data-…">` in the SVG, so a reader (or a
    test) can tell a plot that drew its data from an empty frame."""
    for i, artist in enumerate(artists):
        artist.set_gid(f"kho-data-{key}-{i}")


def _series(rows: list[tuple[Any, ...]], key: int, x: int, y: int) -> dict[str, tuple[list[Any], list[float]]]:
    grouped: dict[str, tuple[list[Any], list[float]]] = defaultdict(lambda: ([], []))
    for row in rows:
        xs, ys = grouped[str(row[key])]
        xs.append(row[x])
        ys.append(float(row[y]))
    return dict(sorted(grouped.items()))


def _dates(ax: Axes, values: list[Any], *, monthly: bool = False) -> None:
    """Ticks on whole days (or months), at most about ten of them, whatever the span."""
    if values:
        first, last = min(values), max(values)
        pad = max(dt.timedelta(days=16 if monthly else 1), (last - first) / 30)
        ax.set_xlim(first - pad, last + pad)  # one day alone would otherwise span four years
        if monthly:
            span = (last.year - first.year) * 12 + last.month - first.month
            ax.xaxis.set_major_locator(MonthLocator(interval=max(1, span // 10 + 1)))
            ax.xaxis.set_major_formatter(DateFormatter("%Y-%m"))
        else:
            ax.xaxis.set_major_locator(DayLocator(interval=max(1, (last - first).days // 10 + 1)))
            ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")


def draw_ledger(data: PlotData) -> Figure:
    with _style():
        fig = Figure(figsize=(WIDTH, 5.2), layout="constrained")
        axes = fig.subplots(2, 2, sharex=True)
        for ax, (column, label) in zip(axes.flat, ((2, "read"), (3, "new"), (4, "changed"), (5, "rejected")),
                                       strict=True):
            for registry, (days, values) in _series(data.rows, 1, 0, column).items():
                _tag(f"{data.key}-{label}-{registry}", ax.plot(days, values, marker="o", label=registry))
            ax.set_title(f"records {label}")
            ax.set_ylabel("records per day")
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            _dates(ax, [r[0] for r in data.rows])
        for ax in axes[1]:
            ax.set_xlabel("day (Asia/Ho_Chi_Minh)")
        axes[0][0].legend(title="registry", fontsize=8)
        fig.suptitle("Records per registry per day")
    return fig


def draw_quarantine(data: PlotData) -> Figure:
    reasons = sorted({str(r[0]) for r in data.rows})
    entities = sorted({str(r[1]) for r in data.rows})
    counts = {(str(r[0]), str(r[1])): int(r[2]) for r in data.rows}
    with _style():
        fig = Figure(figsize=(WIDTH, 1.2 + 0.35 * len(reasons)), layout="constrained")
        ax = fig.subplots()
        left = [0] * len(reasons)
        for entity in entities:
            widths = [counts.get((reason, entity), 0) for reason in reasons]
            _tag(f"{data.key}-{entity}", ax.barh(reasons, widths, left=left, label=entity))
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.invert_yaxis()
        ax.set_xlabel("records quarantined")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("reason code")
        ax.legend(title="entity", fontsize=8, loc="lower right")
        ax.set_title("Quarantined records by reason and entity")
    return fig


def draw_quality_days(data: PlotData) -> Figure:
    """A bar per layer and day, side by side (two layers at 100 % as points would hide one another)."""
    with _style():
        fig = Figure(figsize=(WIDTH, 3.4), layout="constrained")
        ax = fig.subplots()
        ax.xaxis_date()
        for i, layer in enumerate(("raw", "mart")):
            rows = [r for r in data.rows if r[1] == layer]
            days = [date2num(r[0]) - 0.2 + 0.4 * i for r in rows]
            rates = [100.0 * r[2] / (r[2] + r[3] + r[4]) for r in rows]
            _tag(f"{data.key}-{layer}", ax.bar(days, rates, width=0.38, label=f"{layer} suites"))
        ax.set_ylim(0, 105)
        ax.yaxis.set_major_formatter(PercentFormatter())
        ax.set_xlabel("day (Asia/Ho_Chi_Minh)")
        ax.set_ylabel("validations passed")
        ax.legend(fontsize=8, loc="lower right")
        _dates(ax, [r[0] for r in data.rows])
        ax.set_title("Validations that passed every expectation, per day and layer")
    return fig


def draw_quality_suites(data: PlotData) -> Figure:
    suites = [str(r[0]) for r in data.rows]
    rates = [100.0 * int(r[1]) / int(r[2]) if int(r[2]) else 0.0 for r in data.rows]
    with _style():
        fig = Figure(figsize=(WIDTH, 1.2 + 0.28 * len(suites)), layout="constrained")
        ax = fig.subplots()
        _tag(data.key, ax.barh(suites, rates, color=["#2a9d5b" if rate == 100 else "#d08c16" for rate in rates]))
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.xaxis.set_major_formatter(PercentFormatter())
        ax.set_xlabel("expectations passed")
        ax.set_ylabel("suite")
        ax.set_title("Expectations passed per suite")
    return fig


def _coverage(data: PlotData, title: str) -> Figure:
    names = [f"{r[1]} ({r[0]})" for r in data.rows]
    rates = [100.0 * int(r[3]) / int(r[2]) for r in data.rows]
    with _style():
        fig = Figure(figsize=(WIDTH, 1.2 + 0.26 * len(names)), layout="constrained")
        ax = fig.subplots()
        _tag(data.key, ax.barh(names, rates, color="#3b6fb6"))
        for y, (rate, row) in enumerate(zip(rates, data.rows, strict=True)):
            ax.annotate(f"{rate:.1f} % of {int(row[2]):,}", (rate, y), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 115)
        ax.xaxis.set_major_formatter(PercentFormatter())
        ax.set_xlabel("living population with active health cover")
        ax.set_ylabel("province")
        ax.set_title(title)
    return fig


def draw_coverage_new(data: PlotData) -> Figure:
    return _coverage(data, "Health-insurance coverage by province, 2025 units (34 provinces)")


def draw_coverage_old(data: PlotData) -> Figure:
    return _coverage(data, "Health-insurance coverage by province, pre-2025 units (63 provinces)")


ERA_LABELS = {"pre_2025": "pre-2025 communes", "2025": "2025 communes"}


def draw_coverage_communes(data: PlotData) -> Figure:
    width = 100 / COVERAGE_BINS
    with _style():
        fig = Figure(figsize=(WIDTH, 3.4), layout="constrained")
        ax = fig.subplots()
        for i, units in enumerate(("pre_2025", "2025")):
            counts = {int(r[1]): int(r[2]) for r in data.rows if r[0] == units}
            xs = [b * width + width * (0.25 + 0.5 * i) for b in range(COVERAGE_BINS)]
            _tag(f"{data.key}-{units}", ax.bar(xs, [counts.get(b, 0) for b in range(COVERAGE_BINS)], width=width * 0.45,
                                              label=ERA_LABELS[units]))
        ax.set_xlim(0, 100)
        ax.set_xticks([b * width for b in range(COVERAGE_BINS + 1)])
        ax.xaxis.set_major_formatter(PercentFormatter())
        ax.set_xlabel("share of the commune's living population with active health cover")
        ax.set_ylabel("communes")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        ax.set_title("Communes by health-insurance coverage, old and new units")
    return fig


def _months(first: dt.date, last: dt.date) -> list[dt.date]:
    months, month = [], first
    while month <= last:
        months.append(month)
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return months


def draw_vital_events(data: PlotData) -> Figure:
    every: list[Any] = _months(min(r[0] for r in data.rows), max(r[0] for r in data.rows))  # dates, to matplotlib
    with _style():
        fig = Figure(figsize=(WIDTH, 3.4), layout="constrained")
        ax = fig.subplots()
        for event, (months, counts) in _series(data.rows, 1, 0, 2).items():
            found = dict(zip(months, counts, strict=True))  # a month without a row had no event: drawn as 0
            _tag(f"{data.key}-{event}", ax.plot(every, [found.get(m, 0) for m in every], marker=".",
                                               label=f"{event}s"))
        ax.set_ylim(bottom=0)
        ax.set_xlabel("month")
        ax.set_ylabel("events registered")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        _dates(ax, [r[0] for r in data.rows], monthly=True)
        ax.set_title("Births, deaths and marriages per month")
    return fig


PLOTS: dict[str, Plot] = {
    "ledger": Plot("Records per registry over time",
                   "Rows read, new, changed and rejected per registry and day over the last {days} days with loads, "
                   "summed over every batch of kho.load_ledger.", draw_ledger),
    "quarantine": Plot("Quarantine reasons",
                       "Every record in kho.quarantine, by the reason it was refused and the registry entity it came "
                       "from.", draw_quarantine),
    "quality_days": Plot("Quality pass rate per layer",
                         "The share of Great Expectations validations of raw tables and of marts that passed every "
                         "expectation (neither warned nor failed), per day, from kho.quality_validations.",
                         draw_quality_days),
    "quality_suites": Plot("Quality pass rate per suite",
                           "The share of expectations that passed per suite over the last {days} days of "
                           "validations, from kho.quality_results.", draw_quality_suites),
    "coverage_new": Plot("Insurance coverage by province (2025 units)",
                         "Living people with active health cover as a share of the living population, per province "
                         "after the 2025 reform, at the newest as-of date of "
                         "mart_health.insurance_coverage_by_province.", draw_coverage_new),
    "coverage_old": Plot("Insurance coverage by province (pre-2025 units)",
                         "The same share per province before the 2025 reform: "
                         "mart_health.insurance_coverage_by_commune summed by each commune's pre-2025 province.",
                         draw_coverage_old),
    "coverage_communes": Plot("Insurance coverage over communes",
                              "How many communes have each coverage share, counted once in pre-2025 communes and "
                              "once in 2025 communes, from mart_health.insurance_coverage_by_commune at its newest "
                              "as-of date.", draw_coverage_communes),
    "vital_events": Plot("Vital events per month",
                         "Births (by date of birth), deaths (by date of death) and marriages (by registration) per "
                         "month over the last {months} months with events, from "
                         "mart_civil_status.vital_events_by_commune_month.", draw_vital_events),
}

_SVG_SIZE = re.compile(r'<svg([^>]*?) width="[^"]*" height="[^"]*"')


def render(key: str, data: PlotData) -> str:
    """The plot as inline SVG, scaled to its container (its viewBox kept)."""
    return _SVG_SIZE.sub(r"<svg\1", to_svg(PLOTS[key].draw(data)), count=1)
