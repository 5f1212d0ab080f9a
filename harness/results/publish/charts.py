"""The site's charts: SVG drawn by matplotlib when the site is built, put inline in each page.

A fixed style (never the user's matplotlibrc) and ids salted per chart, so that a build draws the same SVG
each time; each point is an element with a ``<title>``, which the browser shows as a tooltip.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..plot import literal
from ..regressions import Change, change_text
from ..series import axis_label, has_commit
from .history import Series, _seed_order, escape, series_label, verdict_text

REGRESSION_COLOUR = "#d62728"
CHANGE_COLOUR = "#7b3fa0"  # change points: apart from the adjacent-commit verdicts' red

#: matplotlib settings for every chart, over its defaults (never the user's matplotlibrc), so that a
#: build draws the same SVG each time: text stays text (small, selectable, rendered by the browser)
#: and the ids matplotlib makes are hashed from a fixed salt rather than a random one.
CHART_STYLE = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#e4e4e4",
    "legend.fontsize": 9,
    "legend.frameon": False,
}
CHART_WIDTH = 1230  # CSS px: the content width of a 1300-px-wide page; the SVG scales down below that
CHART_DPI = 96  # CSS px per inch, so that a figure inch is a CSS inch and a 10-pt font is 13.3 px
#: Fixed margins in px (not constrained layout), so the commit columns of the three charts line up
#: one above the other whatever the width of each chart's y tick labels.
CHART_MARGINS = {"left": 78, "right": 16, "top": 34, "bottom": 52}
LABEL_SPACING = 72  # px per commit label at least: labels are thinned to fit beside one another
SECOND_LINE = 13  # px of a second line of tick labels
RUN_COLOUR, MEDIAN_COLOUR = "#333333", "#1f77b4"
#: No measurement comes near this (a corrupt record might): matplotlib's axis arithmetic overflows close to
#: the float limit, so larger values are left off the charts. The tables on the page still show them.
MAX_DRAWN = 1e150


def _drawable(*values: float) -> bool:
    return all(math.isfinite(v) and abs(v) < MAX_DRAWN for v in values)


def commit_axis(ax: Any, commits: Sequence[str], first_run: Mapping[str, str], width: int = CHART_WIDTH) -> None:
    """Commits at 0, 1, 2 ... oldest first; a short hash under each ("no commit" under a run that records
    none, placed by its start time), or under every k-th when they would overlap."""
    from matplotlib.ticker import FixedLocator

    room = width - CHART_MARGINS["left"] - CHART_MARGINS["right"]
    step = max(1, math.ceil(len(commits) * LABEL_SPACING / room))
    labelled = list(range(0, len(commits), step))
    names = [axis_label(commits[i], first_run.get(commits[i], "")) for i in labelled]
    ax.set_xticks(labelled, names, fontfamily="monospace", fontsize=8.5)
    ax.xaxis.set_minor_locator(FixedLocator(range(len(commits))))  # an unlabelled tick at every commit
    ax.set_xlim(-0.6, len(commits) - 0.4)
    loose = "; runs without a commit by start time" if not all(map(has_commit, commits)) else ""
    ax.set_xlabel(f"commit (oldest first{loose})" + (f", a label every {step} commits" if step > 1 else ""))


def _second_line(commits: Sequence[str]) -> int:
    """Px more under the axis when a label has two lines (a run without a commit: "no commit" over its time)."""
    return 0 if all(map(has_commit, commits)) else SECOND_LINE


def commit_text(slot: str) -> str:
    """``commit 0123456789ab`` in a tooltip, or ``no commit``."""
    return f"commit {slot[:12]}" if has_commit(slot) else "no commit"


def _figure(height: int, bottom: int = CHART_MARGINS["bottom"]) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(CHART_WIDTH / CHART_DPI, height / CHART_DPI), dpi=CHART_DPI)
    left, right, top = CHART_MARGINS["left"], CHART_MARGINS["right"], CHART_MARGINS["top"]
    ax = fig.add_axes((left / CHART_WIDTH, bottom / height, 1 - (left + right) / CHART_WIDTH,
                       1 - (top + bottom) / height))  # fmt: skip
    return fig, ax


def _value_axis(ax: Any, label: str, fmt: str) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_ylabel(label)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: fmt.format(value)))  # as the tables print it


def measure_chart(series: Series, column: str, title: str, label: str, fmt: str,
                  details: Mapping[str, str]) -> str:  # fmt: skip
    """Runs as points, the median per commit as a line, the IQR as a band, regressions shaded: an SVG element."""
    with _chart_style(column):
        extra = _second_line([c.commit for c in series.commits])
        fig, ax = _figure(330 + extra, bottom=CHART_MARGINS["bottom"] + extra)
        quartiles = [
            q if q is not None and _drawable(*q) else None for q in (c.quartiles(column) for c in series.commits)
        ]
        xs = [i for i, q in enumerate(quartiles) if q is not None]
        q25, q50, q75 = ([quartiles[i][k] for i in xs] for k in range(3))
        points_x, points_y, titles = _run_points(series, column, label, fmt, details)
        shaded = _shade_regressions(ax, series, column)
        changes = [c for c in series.changes if c.measure == column]
        shaded.update(_mark_changes(ax, series, changes, column))
        ax.fill_between(xs, q25, q75, color=MEDIAN_COLOUR, alpha=0.18, lw=0, zorder=1)
        ax.scatter(points_x, points_y, s=14, color=RUN_COLOUR, alpha=0.55, lw=0, zorder=2, gid=f"{column}-runs")
        ax.plot(xs, q50, color=MEDIAN_COLOUR, lw=2, marker="o", ms=5.5, zorder=3, gid=f"{column}-medians")
        medians = [f"{commit_text(c.commit)}\nmedian {fmt.format(q[1])} {label} "
                   f"(IQR {fmt.format(q[0])}–{fmt.format(q[2])})\n{len(c.ok)} run(s)"
                   + (f"\n{verdict_text(c)}" if c.versus_previous else "")
                   for c, q in zip(series.commits, quartiles, strict=True) if q is not None]  # fmt: skip
        marked = [i for i, c in enumerate(series.commits) if column in c.regressed and quartiles[i] is not None]
        if marked:
            ax.plot(marked, [quartiles[i][1] for i in marked], ls="none", marker="x", ms=11, mew=2.2,
                    color=REGRESSION_COLOUR, zorder=4, gid=f"{column}-marks")  # fmt: skip
        if series.regressions or changes:
            ax.set_ymargin(0.15)  # headroom: the "regression" and change labels sit at the top, clear of the points
        commit_axis(ax, [c.commit for c in series.commits], {c.commit: c.first_run for c in series.commits})
        _value_axis(ax, label, fmt)
        ax.set_title(title, loc="left")
        _measure_legend(ax, series, title, bool(marked), bool(changes))
        svg = _svg(fig, f"{title} over commits", column)
    svg = _title_points(svg, f"{column}-runs", titles)
    svg = _title_points(svg, f"{column}-medians", medians)
    if marked:
        svg = _title_points(svg, f"{column}-marks", [verdict_text(series.commits[i]) for i in marked])
    for gid, text in shaded.items():
        svg = _title_group(svg, gid, text)
    return svg


def _run_points(series: Series, column: str, label: str, fmt: str,
                details: Mapping[str, str]) -> tuple[list[float], list[float], list[str]]:  # fmt: skip
    """Every ok run of the series as a point (x, y) with its tooltip; a commit's runs side by side, by seed."""
    import pandas as pd

    points_x, points_y, titles = [], [], []
    for i, commit in enumerate(series.commits):
        ok = commit.ok.assign(_seed=commit.ok["seed"].map(_seed_order))
        ok = ok.sort_values(["_seed", "run_id"], kind="stable")
        values = pd.to_numeric(ok[column], errors="coerce")
        spread = min(0.3, 0.06 * (len(ok) - 1))  # runs of one commit side by side, not on top of each other
        for j, (run_id, value) in enumerate(zip(ok["run_id"], values, strict=True)):
            if _drawable(value):
                points_x.append(i + (spread * (j / (len(ok) - 1) - 0.5) if len(ok) > 1 else 0))
                points_y.append(value)
                titles.append(f"{fmt.format(value)} {label}\n{details[run_id]}")
    return points_x, points_y, titles


def _shade_regressions(ax: Any, series: Series, column: str) -> dict[str, str]:
    """Each regressed commit shaded and labelled; returns the gid of each shading -> its verdict (its tooltip)."""
    shaded = {}
    for i, c in enumerate(series.commits):
        if c.regression:
            ax.axvspan(i - 0.45, i + 0.45, color=REGRESSION_COLOUR, alpha=0.1, lw=0, zorder=0,
                       gid=f"{column}-regression-{i}")  # fmt: skip
            ax.text(i, 0.99, "regression", transform=ax.get_xaxis_transform(), ha="center", va="top",
                    color=REGRESSION_COLOUR, fontsize=8.5, gid=f"{column}-regression-label-{i}")  # fmt: skip
            shaded[f"{column}-regression-{i}"] = f"{commit_text(c.commit)}: {verdict_text(c)}"
    return shaded


def _mark_changes(ax: Any, series: Series, changes: Sequence[Change], column: str) -> dict[str, str]:
    """Each change point a dashed line before the commit where it begins, the range it could have begun in
    a band, and the level of each stretch between change points a line; returns gid -> tooltip."""
    titles = {}
    for k, change in enumerate(changes):
        p, at = change.point, series.index_of(change.slot) - 0.5
        if p.earliest != p.latest:
            ax.axvspan(series.index_of(str(p.earliest)) - 0.5, series.index_of(str(p.latest)) - 0.5,
                       color=CHANGE_COLOUR, alpha=0.12, lw=0, zorder=0, gid=f"{column}-change-range-{k}")  # fmt: skip
            titles[f"{column}-change-range-{k}"] = f"where it could have begun: {change.describe()}"
        ax.axvline(at, color=CHANGE_COLOUR, ls="--", lw=1.6, zorder=3, gid=f"{column}-change-{k}")
        ax.text(at + 0.06, 0.9, change_text(p), transform=ax.get_xaxis_transform(), ha="left", va="top",
                color=CHANGE_COLOUR, fontsize=8.5, gid=f"{column}-change-label-{k}")  # fmt: skip
        titles[f"{column}-change-{k}"] = change.describe()
    if changes:  # the level of each stretch between change points: the median of its runs
        bounds = [0, *(series.index_of(c.slot) for c in changes), len(series.commits)]
        levels = [changes[0].point.before, *(c.point.after for c in changes)]
        xs, ys = [], []
        for (a, b), level in zip(itertools.pairwise(bounds), levels, strict=True):
            if _drawable(level):
                xs += [a - 0.45, b - 0.55, math.nan]
                ys += [level, level, math.nan]
        ax.plot(xs, ys, color=CHANGE_COLOUR, lw=1.3, alpha=0.85, zorder=2.5, gid=f"{column}-levels")
    return titles


def _measure_legend(ax: Any, series: Series, title: str, marked: bool, changed: bool = False) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], ls="none", marker="o", ms=4, color=RUN_COLOUR, alpha=0.55, label="runs"),
               Line2D([], [], color=MEDIAN_COLOUR, lw=2, marker="o", ms=5, label="median per commit"),
               Patch(color=MEDIAN_COLOUR, alpha=0.18, lw=0, label="IQR")]  # fmt: skip
    if changed:
        handles.append(Line2D([], [], color=CHANGE_COLOUR, ls="--", lw=1.6, label="change point"))
    if series.regressions:
        handles.append(Patch(color=REGRESSION_COLOUR, alpha=0.15, lw=0, label="regression vs previous commit"))
    if marked:
        handles.append(Line2D([], [], ls="none", marker="x", ms=8, mew=2, color=REGRESSION_COLOUR,
                              label=f"{title.lower()} regressed"))  # fmt: skip
    ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1, 1), ncols=len(handles), borderaxespad=0.3)


def comparison_chart(siblings: Sequence[Series], commits: Sequence[str], current: Series,
                     first_run: Mapping[str, str]) -> str:  # fmt: skip
    """Median train time per commit of every series of the recipe, one line each, on one commit axis."""
    columns = 2
    rows = math.ceil(len(siblings) / columns)
    legend = 20 * rows + 8  # px under the commit axis for the legend
    with _chart_style("comparison"):
        legend += _second_line(commits)
        fig, ax = _figure(300 + legend, bottom=CHART_MARGINS["bottom"] + legend)
        titles = []
        for k, s in enumerate(siblings):
            xs, ys, texts = [], [], []
            for c in s.commits:
                median = c.median("train_s")
                if median is not None and _drawable(median):
                    xs.append(commits.index(c.commit))
                    ys.append(median)
                    texts.append(f"{series_label(s)}\n{commit_text(c.commit)}: median {median:.4g} train s "
                                 f"over {len(c.ok)} run(s)")  # fmt: skip
            name = series_label(s) + (" (this page)" if s is current else "")
            ax.plot(xs, ys, lw=3 if s is current else 1.5, marker="o", ms=5, color=f"C{k % 10}", label=literal(name),
                    gid=f"comparison-{k}")  # fmt: skip
            titles.append(texts)
        commit_axis(ax, commits, first_run)
        _value_axis(ax, "train s", "{:.4g}")
        ax.set_title("Median train time of this recipe on each device, variant and machine", loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(0, -CHART_MARGINS["bottom"] / ax.bbox.height), ncols=columns,
                  borderaxespad=0)  # fmt: skip
        svg = _svg(fig, "Median train time on each device, variant and machine over commits", "comparison")
    for k, texts in enumerate(titles):
        svg = _title_points(svg, f"comparison-{k}", texts)
    return svg


def _chart_style(salt: str) -> Any:
    """matplotlib's defaults plus :data:`CHART_STYLE`, and ids salted per chart: unique on the page, same each build."""
    import contextlib
    import warnings

    import matplotlib.style

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    # The browser draws the text (svg.fonttype none); a glyph matplotlib's font lacks only nudges its layout.
    warnings.filterwarnings("ignore", message="Glyph .* missing from font")
    stack.enter_context(matplotlib.style.context("default"))
    stack.enter_context(matplotlib.rc_context({**CHART_STYLE, "svg.hashsalt": f"cifar-bench {salt}"}))
    return stack


def _svg(fig: Any, label: str, key: str) -> str:
    """The figure as an ``<svg>`` element to put inline in HTML: no XML prologue, metadata or fixed size.

    Every group id starts with ``key``: matplotlib names its groups figure_1, axes_1, xtick_1 ... in each
    chart alike, and ids must be unique on the page.
    """
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue().strip()
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.DOTALL)
    text = re.sub(rf'<g id="(?!{re.escape(key)}-)', f'<g id="{key}-', text)
    # Sized by its viewBox and the stylesheet (the page's width), not in points.
    return re.sub(r'<svg ([^>]*?)width="[^"]*" height="[^"]*" ', rf'<svg \1role="img" aria-label="{escape(label)}" ',
                  text, count=1)  # fmt: skip


def _title_points(svg: str, gid: str, titles: Sequence[str]) -> str:
    """A ``<title>`` (the browser's own tooltip) in each marker of the artist ``gid``, in data order."""
    start = svg.find(f'<g id="{gid}"')
    if start < 0:  # nothing drawn
        return svg
    end = _group_end(svg, start)
    group = svg[start:end]
    uses = group.count("<use ")
    if uses != len(titles):  # matplotlib left a marker out: better no tooltips than wrong ones
        return svg
    texts = iter(titles)
    group = re.sub(r"<use ([^>]*?)/>", lambda m: f"<use {m.group(1)}><title>{escape(next(texts))}</title></use>", group)
    group = group.replace(f'<g id="{gid}"', f'<g id="{gid}" class="points"', 1)
    return svg[:start] + group + svg[end:]


def _title_group(svg: str, gid: str, title: str) -> str:
    """A ``<title>`` for the whole group ``gid`` (a shaded commit, say)."""
    opening = re.search(rf'<g id="{re.escape(gid)}"[^>]*>', svg)
    return svg[: opening.end()] + f"<title>{escape(title)}</title>" + svg[opening.end() :]


def _group_end(svg: str, start: int) -> int:
    """Where the ``<g>`` element that opens at ``start`` closes."""
    depth = 0
    for tag in re.finditer(r"<g[ >]|</g>", svg[start:]):
        depth += -1 if tag.group(0) == "</g>" else 1
        if depth == 0:
            return start + tag.end()
    raise ValueError(f"unclosed <g> at {start}")
