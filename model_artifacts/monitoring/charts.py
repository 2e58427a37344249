"""The monitoring report's charts: matplotlib figures drawn as inline SVG strings.

Each function takes a piece of a monitoring result and returns one <svg> element, ready to
sit inside the report's HTML: no XML prolog, no metadata, no size in points (the page's CSS
sizes it), ids prefixed so that many charts can share one document, and text kept as text
(svg.fonttype "none": a tenth of the size of glyph paths, selectable, and drawn in the
page's font). Figures are matplotlib.figure.Figure objects, never pyplot's: nothing is
registered globally, so nothing is left open, and no GUI backend is ever chosen.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import re
from datetime import datetime, timedelta
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

# The palette, shared with the page (report_style.py).
MUTED, GRID = "#64748b", "#e2e8f0"
WINDOW, REFERENCE, DRIFTED = "#3b82f6", "#334155", "#dc2626"
ESTIMATED, BATCH = "#8b5cf6", "#14b8a6"

MAX_CATEGORIES = 12  # more are folded into one "other" bar: a chart of 200 slivers says nothing
MAX_LABEL = 14  # characters of a category shown on an axis (the tables show them whole)

STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "inferline",  # the same result draws the same bytes
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # for layout only: the page's CSS picks the font shown
    "font.size": 9,
    "axes.edgecolor": GRID,
    "axes.labelcolor": MUTED,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "axes.axisbelow": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "text.usetex": False,
}


# -- distributions ----------------------------------------------------------------------------


def distribution(test: dict[str, Any], *, label: str, wide: bool = False) -> str:
    """A distribution in the baseline (outlined bars) and in the window (filled bars, red when
    it drifted): a numeric input's shares per baseline quantile bin, or a categorical one's
    shares per category. `wide`: twice as wide, for a chart that spans two grid columns."""
    colour = DRIFTED if test.get("drifted") else WINDOW
    if test.get("kind") == "numeric":
        bins = test.get("bins") or {}
        reference, window, edges = (
            bins.get("reference") or [],
            bins.get("window") or [],
            bins.get("edges") or [],
        )
        names = [f"bin {i + 1}" for i in range(len(window))]  # only if the edges do not fit
    else:
        cats = test.get("categories") or {}
        values = [str(v) for v in cats.get("values") or []]
        names, reference, window = _fold(values, cats.get("reference") or [], cats.get("window") or [])
        edges = []
    count = min(len(names), len(reference), len(window))  # the same length, unless the result is broken
    names, reference, window = names[:count], reference[:count], window[:count]
    with matplotlib.rc_context(STYLE):
        width = 6.8 if wide else 3.3
        fig = Figure(figsize=(width, 2.1))
        ax = fig.subplots()
        x = list(range(len(window)))
        ax.bar(x, _nums(window), width=0.82, color=colour, alpha=0.8, linewidth=0)
        # The baseline on top, as an outline: visible whether the window's bar is taller or not.
        ax.bar(x, _nums(reference), width=0.82, fill=False, edgecolor=REFERENCE, linewidth=1.1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.set_xlim(-0.6, max(len(x), 1) - 0.4)
        bottom = 0.3  # inches under the axes, for the tick labels
        if edges and len(edges) == len(x) + 1:
            # Quantile bins drawn equally wide (each held about the same share of the baseline),
            # labelled with their edges: real widths would squash all but the widest bin.
            step = 1 if len(edges) <= 7 or wide else 2
            ticks = list(range(0, len(edges), step))
            ax.set_xticks([i - 0.5 for i in ticks], [_short(edges[i]) for i in ticks])
            ax.tick_params(axis="x", length=3)
        else:
            ax.set_xticks(x, [_text(n) for n in names])
            ax.tick_params(axis="x", length=0)
            if len(x) > 4 or any(len(n) > 6 for n in names):
                for tick in ax.get_xticklabels():
                    tick.set(rotation=35, ha="right", rotation_mode="anchor")
                bottom = 0.18 + 0.04 * max(min(len(n), MAX_LABEL) for n in names)
        # The axes keep one height, so that a grid of them lines up; the figure grows for labels.
        fig.set_figheight(1.75 + bottom)
        _place(fig, left=0.45, bottom=bottom, top=0.1)
        return to_svg(fig, f"distribution of {label}: baseline against the window")


def _fold(names: list[str], reference: list, window: list) -> tuple[list[str], list, list]:
    """At most MAX_CATEGORIES bars: the rest summed into "other (n)"."""
    if len(names) <= MAX_CATEGORIES:
        return names, reference, window
    keep = MAX_CATEGORIES - 1
    rest = len(names) - keep
    return (
        [*names[:keep], f"other ({rest})"],
        [*reference[:keep], sum(_nums(reference[keep:]))],
        [*window[:keep], sum(_nums(window[keep:]))],
    )


# -- trends across runs -----------------------------------------------------------------------


def drift_trend(
    history: list[dict[str, Any]], *, min_psi: float | None, drifted_threshold: float | None
) -> str:
    """The largest feature PSI per run (with the PSI a drift needs) beside the number of
    drifted features per run (red where it reached the alarm's threshold)."""
    max_psi = [max(_nums((h.get("psi") or {}).values()), default=math.nan) for h in history]
    drifted = _nums((h.get("figures") or {}).get("DriftedFeatures") for h in history)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(11, 2.5))
        left, right = fig.subplots(1, 2)
        _place(fig, left=0.65, bottom=0.35, gap=1.0)
        x = list(range(len(history)))
        left.plot(x, max_psi, color=WINDOW, marker="o", markersize=5, linewidth=1.6, label="max feature PSI")
        if min_psi is not None:
            label = f"drift needs PSI ≥ {min_psi:g}"
            left.axhline(min_psi, color=DRIFTED, linestyle="--", linewidth=1, label=label)
        top = max([v for v in [*max_psi, min_psi or 0] if not math.isnan(v)] + [0.01])
        left.set_ylim(0, top * 1.35)
        left.set_ylabel("max feature PSI")
        left.legend(loc="upper left", ncols=2)
        limit = drifted_threshold if drifted_threshold is not None else math.inf
        colours = [DRIFTED if v >= limit else WINDOW for v in drifted]
        right.bar(x, [0 if math.isnan(v) else v for v in drifted], color=colours, width=0.6, alpha=0.85)
        right.set_ylabel("drifted features")
        right.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        right.set_ylim(0, max([*(v for v in drifted if not math.isnan(v)), 1]) * 1.15)
        for ax in (left, right):
            _runs_axis(ax, history)
        return to_svg(fig, "feature drift across runs")


def quality_trend(history: list[dict[str, Any]], *, metric: str) -> str:
    """The live metric (on predictions with ground truth) and the CBPE estimate (from the
    scores alone) per run, against the serving version's reference metric (one segment per
    run: it changes with the version)."""
    live = _nums((h.get("figures") or {}).get("LiveMetric") for h in history)
    estimated = _nums((h.get("figures") or {}).get("EstimatedMetric") for h in history)
    reference = _nums(h.get("reference_metric") for h in history)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(11, 2.6))
        ax = fig.subplots()
        _place(fig, left=0.75, bottom=0.35)
        x = list(range(len(history)))
        ax.hlines(reference, [i - 0.45 for i in x], [i + 0.45 for i in x], color=MUTED, linestyle="--",
                  linewidth=1.3, label="reference")  # fmt: skip
        ax.plot(x, estimated, color=ESTIMATED, marker="s", markersize=5, linewidth=1.4, linestyle=":",
                label="estimated (CBPE: scores only, no labels needed)")  # fmt: skip
        ax.plot(
            x, live, color=WINDOW, marker="o", markersize=5.5, linewidth=1.8, label="live (with ground truth)"
        )
        values = [v for v in (*live, *estimated, *reference) if not math.isnan(v)]
        if values:
            low, high = min(values), max(values)
            pad = max((high - low) * 0.25, 0.01)
            ax.set_ylim(low - pad, high + pad * 2.2)  # room for the legend above the lines
        ax.set_ylabel(metric)
        ax.legend(loc="upper left", ncols=3)
        _runs_axis(ax, history)
        return to_svg(fig, f"{metric} across runs: live, estimated and reference")


def _runs_axis(ax, history: list[dict[str, Any]]) -> None:
    """Runs in order on x (at most 8 labelled, by when they ran); a faint line where the
    version changed. A short history stays centred, a single run is one point in the middle."""
    n = len(history)
    ticks = sorted({round(i * (n - 1) / 7) for i in range(8)}) if n > 8 else list(range(n))
    ax.set_xticks(ticks, [_when(history[i].get("created_at")) for i in ticks])
    pad = max(0.6, (6 - n) / 2)
    ax.set_xlim(-pad, n - 1 + pad)
    ax.grid(False, axis="x")
    for i in range(1, n):
        if history[i].get("version") != history[i - 1].get("version"):
            ax.axvline(i - 0.5, color=MUTED, linewidth=0.8, alpha=0.6)
            where = (i - 0.5, 1)  # x in runs, y at the top of the axes
            version = _text(f"v{history[i].get('version')}")
            ax.annotate(version, where, xycoords=("data", "axes fraction"), xytext=(3, -2),
                        textcoords="offset points", fontsize=7, color=MUTED, va="top")  # fmt: skip


# -- live quality -----------------------------------------------------------------------------


def calibration(window: list[dict[str, Any]], reference: list[dict[str, Any]]) -> str:
    """The reliability diagram: observed rate per score bin against the mean score, in the
    window (dots sized by rows) and in the baseline; on the diagonal a score means what it says."""
    with matplotlib.rc_context(STYLE | {"axes.grid.axis": "both"}):
        fig = Figure(figsize=(3.9, 3.5))
        ax = fig.subplots()
        _place(fig, left=0.6, bottom=0.5)
        ax.plot([0, 1], [0, 1], color=MUTED, linestyle=":", linewidth=1, label="perfectly calibrated")
        if reference:
            ax.plot(
                _nums(b.get("mean_score") for b in reference),
                _nums(b.get("observed") for b in reference),
                color=REFERENCE,
                marker="o",
                markersize=3,
                linewidth=1,
                alpha=0.7,
                label="baseline",
            )
        if window:
            rows = _nums(b.get("rows") for b in window)
            biggest = max([r for r in rows if not math.isnan(r)] or [1]) or 1
            xs, ys = _nums(b.get("mean_score") for b in window), _nums(b.get("observed") for b in window)
            ax.plot(xs, ys, color=WINDOW, linewidth=1.6, label="window")
            ax.scatter(
                xs,
                ys,
                s=[12 + 70 * (0 if math.isnan(r) else r) / biggest for r in rows],
                color=WINDOW,
                zorder=3,
                edgecolor="white",
                linewidth=0.6,
            )
        else:
            ax.text(0.97, 0.04, "no ground truth in the window yet", ha="right", color=MUTED, fontsize=8)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean score in bin", ylabel="observed rate")
        ax.set_aspect("equal")
        ax.legend(loc="upper left")
        return to_svg(fig, "reliability diagram")


def slice_metrics(
    rows: list[dict[str, Any]], *, metric: str, worse: float | None, higher_is_better: bool = True
) -> str:
    """Per slice value with a metric: the live metric (dot; red when worse than the reference
    by `worse` or more) against the reference (ring), joined by a line."""
    rows = [r for r in rows if r.get("metric") is not None][:20]
    with matplotlib.rc_context(STYLE | {"axes.grid.axis": "x"}):
        fig = Figure(figsize=(3.8, 0.65 + 0.26 * max(len(rows), 1)))
        ax = fig.subplots()
        longest = max([len(_text(str(r.get("value")))) for r in rows] + [2])
        _place(fig, left=0.2 + 0.065 * longest, bottom=0.5)
        y = list(range(len(rows)))[::-1]
        for yi, r in zip(y, rows, strict=True):
            live, ref = float(r["metric"]), r.get("reference")
            drop = (ref - live if higher_is_better else live - ref) if ref is not None else None
            bad = drop is not None and worse is not None and drop >= worse
            if ref is not None:
                ax.plot([ref, live], [yi, yi], color=GRID, linewidth=2.5, zorder=1)
                ax.scatter([ref], [yi], s=36, facecolor="white", edgecolor=REFERENCE, linewidth=1.2, zorder=2)
            ax.scatter([live], [yi], s=40, color=DRIFTED if bad else WINDOW, zorder=3)
        ax.set_yticks(y, [_text(str(r.get("value"))) for r in rows])
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
        ax.set_xlabel(f"{metric}: live (dot) against reference (ring)")
        return to_svg(fig, f"{metric} per slice")


# -- service ----------------------------------------------------------------------------------


def traffic(per_hour: dict[str, Any]) -> str:
    """Predictions per hour of the window, online and batch stacked."""
    online = _nums(per_hour.get("online") or [])
    batch = _nums(per_hour.get("batch") or [])
    hours = max(len(online), len(batch), 1)
    online += [0.0] * (hours - len(online))
    batch += [0.0] * (hours - len(batch))
    try:
        start = datetime.fromisoformat(str(per_hour.get("start")))
    except ValueError:
        start = None
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(11, 2.4))
        ax = fig.subplots()
        _place(fig, left=0.7, bottom=0.35, top=0.3)
        x = list(range(hours))
        ax.bar(x, online, width=0.85, color=WINDOW, label="online", linewidth=0)
        ax.bar(x, batch, bottom=online, width=0.85, color=BATCH, label="batch", linewidth=0)
        ax.set_xlim(-0.6, hours - 0.4)
        ax.set_ylim(0, max([o + b for o, b in zip(online, batch, strict=True)] + [1]) * 1.1)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _hour(start, v)))
        ax.set_ylabel("predictions per hour")
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncols=2)
        return to_svg(fig, "predictions per hour")


# -- SVG --------------------------------------------------------------------------------------


def _place(
    fig: Figure, *, left: float, bottom: float, right: float = 0.2, top: float = 0.12, gap: float = 0
) -> None:
    """Margins in inches, set by hand: matplotlib's constrained layout would draw each figure
    twice, doubling the time of a report with twenty of them."""
    width, height = fig.get_size_inches()
    columns = len(fig.axes)
    each = (width - left - right - gap * (columns - 1)) / columns
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=gap / each,
    )


def to_svg(fig: Figure, title: str) -> str:
    """The figure as an <svg> element for an HTML page (see the module's docstring)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, transparent=True)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    # matplotlib's "*{stroke-linejoin...}" would style the whole page: the page sets it on svg.
    svg = re.sub(r"<style[^>]*>.*?</style>", "", svg, flags=re.S)
    svg = re.sub(r"<defs>\s*</defs>", "", svg)
    # The page's font, not DejaVu's name: CSS gives svg text the report's font stack.
    svg = re.sub(r"font-family: [^;\"]*;?\s*", "", svg)
    svg = re.sub(r'\s(width|height)="[\d.]+pt"', "", svg, count=2)
    # Inside HTML, <svg> needs no namespace declarations, and SVG 2's href replaces xlink:href:
    # the page then names no URL at all.
    svg = re.sub(r'\sxmlns(:xlink)?="[^"]*"', "", svg, count=2).replace("xlink:href=", "href=")
    # Ids are per document in HTML: keep only those referenced (clip paths, markers), made unique.
    prefix = "c" + hashlib.sha1(svg.encode()).hexdigest()[:8]
    used = set(re.findall(r'(?:url\(#|href="#)([^)"]+)', svg))
    svg = re.sub(r'\sid="([^"]+)"', lambda m: f' id="{prefix}-{m[1]}"' if m[1] in used else "", svg)
    svg = re.sub(r'(url\(#|href="#)([^)"]+)', lambda m: f"{m[1]}{prefix}-{m[2]}", svg)
    svg = re.sub(r"\s*\n\s*", " ", svg).replace("> <", "><")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(title)}" ', 1).strip()


# -- helpers ----------------------------------------------------------------------------------


def _nums(values: Any) -> list[float]:
    """Numbers for matplotlib: null (a figure a run could not judge) as NaN, drawn as a gap."""
    out = []
    for v in values:
        try:
            out.append(math.nan if v is None else float(v))
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def _text(value: str) -> str:
    """A label from production data, safe for matplotlib: shortened, and "$" escaped (two of them
    would start mathtext, and a malformed formula fails the whole figure)."""
    value = value if len(value) <= MAX_LABEL else value[: MAX_LABEL - 1] + "…"
    return value.replace("$", r"\$")


def _short(value: float) -> str:
    """A bin edge or a count in a few characters: 0.0128, 15.1, 3.58k, 1.2M."""
    value = float(value)
    if value == 0 or math.isnan(value):
        return "0" if value == 0 else ""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _when(created_at: Any) -> str:
    try:
        return f"{datetime.fromisoformat(str(created_at)):%m-%d %H:%M}"
    except ValueError:
        return str(created_at or "")[:16]


def _hour(start: datetime | None, offset: float) -> str:
    if start is None:
        return f"+{offset:.0f} h"
    at = start + timedelta(hours=offset)
    return f"{at:%m-%d %H:00}" if at.hour == 0 or offset == 0 else f"{at:%H:00}"
