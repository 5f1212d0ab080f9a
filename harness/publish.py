"""``cifar-bench publish``: run records in, a static website of their history over commits out.

The site answers "when did this get slower, and by how much?": an index with
one row per workload (recipe, device, variant, machine) and a page per
workload with train time, images/s and test accuracy over commits, every run
a point, the median per commit a line and the interquartile range a band.
A commit that ``compare`` would call a regression against the commit before
it is marked; the verdict comes from :func:`cifar_bench.compare.judge_pair`
itself, so the site and the gate never disagree.

It is plain files with no script: the charts are drawn when the site is
built, by matplotlib (as ``cifar-bench plot`` draws), as SVG put inline in
each page. Each point is an element of the page with a ``<title>``, which the
browser shows as a tooltip (the run's id, commit, seed, environment and
hyperparameters), so a page of 1,000 runs is there as soon as it is parsed.
The site works opened from ``file://``, from a CI artifact or on a static
host, fetches nothing, and is the same with JavaScript off. Every number in a
chart is also in a table on the same page.

Runs from different machines (CPU model, accelerator model) are separate
series and never one line: their times differ for reasons other than the code.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compare import PairResult, Settings, judge_pair, rule
from .errors import UsageError
from .report import load_runs, warn

if TYPE_CHECKING:  # pandas is imported when records are read: the command line is built without it
    import pandas as pd

#: What keeps machines apart: two CPU or accelerator models are never one series.
MACHINE_FIELDS = ("cpu", "device_name")
#: Left in the output folder so that a later build may replace it (and nothing else).
SITE_MARKER = ".cifar-bench-site"
ASSET_FILES = ("style.css",)

MEASURES = (  # column, chart title, axis label, how a value prints
    ("train_s", "Train time", "train s", "{:.4g}"),
    ("train_img_s", "Training throughput", "train images/s", "{:,.0f}"),
    ("test_accuracy_pct", "Test accuracy", "test accuracy %", "{:.2f}"),
)
REGRESSION_COLOUR = "#d62728"


# -- grouping -----------------------------------------------------------------------


def workload_of(row: Mapping[str, Any]) -> str:
    """The identity of the work a run did (see workload.py): runs with the same one did the same work.

    ``load_runs`` computes it for every record, older ones included, so that
    the site groups exactly as ``report`` and ``compare`` do.
    """
    return str(row["workload"])


def machine_of(row: Mapping[str, Any]) -> str:
    """The machine's label: the accelerator's model for a GPU run, else the CPU's."""
    cpu, device_name = (str(row.get(name) or "unknown") for name in MACHINE_FIELDS)
    return cpu if device_name in ("cpu", cpu) or row.get("device") == "cpu" else f"{device_name} ({cpu})"


def series_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """Runs with equal keys are one line on a chart: same work, same device, same machine."""
    return (workload_of(row), str(row.get("device")), *(str(row.get(name)) for name in MACHINE_FIELDS))


# -- the history --------------------------------------------------------------------


@dataclass
class CommitResult:
    """One commit of one series: its runs (any status) and the verdict against the commit before."""

    commit: str
    first_run: str  # the earliest started_at of the commit's runs, over every series
    runs: pd.DataFrame
    versus_previous: PairResult | None = None

    @property
    def ok(self) -> pd.DataFrame:
        return self.runs[self.runs.status == "ok"]

    @property
    def regression(self) -> bool:
        return self.versus_previous is not None and self.versus_previous.regression

    @property
    def regressed(self) -> set[str]:
        """The measures whose change made this commit a regression (none when only failed runs did)."""
        pair = self.versus_previous
        if pair is None or not pair.regression:
            return set()
        measures = set()
        if pair.decision is not None and pair.decision.regression:
            measures |= {"train_s", "train_img_s"}
        if any(reason.startswith("accuracy ") for reason in pair.reasons):
            measures.add("test_accuracy_pct")
        return measures

    def quartiles(self, column: str) -> tuple[float, float, float] | None:
        import pandas as pd

        values = pd.to_numeric(self.ok[column], errors="coerce").dropna()
        if values.empty:
            return None
        q25, q50, q75 = values.quantile([0.25, 0.5, 0.75])
        return float(q25), float(q50), float(q75)

    def median(self, column: str) -> float | None:
        quartiles = self.quartiles(column)
        return None if quartiles is None else quartiles[1]


@dataclass
class Series:
    key: tuple[str, ...]
    slug: str  # the page's file name, without .html
    recipe: str
    device: str
    variant: str
    machine: str
    runs: pd.DataFrame
    commits: list[CommitResult]

    @property
    def title(self) -> str:
        return f"{self.recipe} on {self.device}, {self.variant}"

    @property
    def latest(self) -> CommitResult:
        return self.commits[-1]

    @property
    def regressions(self) -> list[CommitResult]:
        return [c for c in self.commits if c.regression]


@dataclass
class History:
    series: list[Series]
    commits: list[str]  # every commit, oldest first
    runs: int
    notes: list[str]
    settings: Settings


def build_history(runs: pd.DataFrame, settings: Settings | None = None, notes: Sequence[str] = ()) -> History:
    """Split runs (as :func:`load_runs` gives them) into series and judge each commit against the one before.

    ``settings`` are compare's (its defaults unless given): a commit is marked when compare would call it a
    regression against the commit before.
    """
    settings = settings or Settings()
    notes = list(notes)
    references = runs["role"] == "reference"
    if references.any():
        notes.append(f"left out {int(references.sum())} reference run(s) made beside other runs by --reference")
    runs = runs[~references]
    committed = runs["git_commit"].map(_present)
    if (~committed).any():
        notes.append(f"left out {int((~committed).sum())} run(s) that record no git commit: they have no place "
                     "in a history")  # fmt: skip
    runs = runs[committed]
    if not (runs["status"] == "ok").any():
        raise UsageError("no run that finished ok records a git commit: nothing to publish")
    runs = runs.assign(git_commit=runs["git_commit"].astype(str), started_at=runs["started_at"].fillna("").astype(str))
    first_run = runs.groupby("git_commit")["started_at"].min()
    order = sorted(first_run.index, key=lambda c: (first_run[c], c))
    position = {commit: i for i, commit in enumerate(order)}
    rows = runs.to_dict("records")
    runs = runs.assign(_series=[series_key(r) for r in rows], _machine=[machine_of(r) for r in rows])

    series, unfinished = [], 0
    for key, group in runs.groupby("_series", sort=False):
        if not (group["status"] == "ok").any():
            unfinished += 1  # nothing to draw: no run of this series ever finished
            continue
        first = group.iloc[0]
        pair_key = (str(first["recipe"]), str(first["device"]), str(first["variant"]))
        commits: list[CommitResult] = []
        for commit in sorted(group["git_commit"].unique(), key=position.__getitem__):
            result = CommitResult(commit, first_run[commit], group[group["git_commit"] == commit])
            if commits:
                result.versus_previous = judge_pair(pair_key, commits[-1].runs, result.runs, settings)
            commits.append(result)
        series.append(Series(key, _slug(pair_key[:2], key), *pair_key, str(first["_machine"]), group, commits))
    if unfinished:
        notes.append(f"left out {unfinished} workload(s) none of whose runs finished ok")
    series.sort(key=lambda s: (s.recipe, s.device, s.variant, s.machine, s.key))
    return History(series, order, len(runs), notes, settings)


def _slug(words: Iterable[str], key: tuple[str, ...]) -> str:
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
    return "-".join([*(re.sub(r"[^a-z0-9]+", "_", w.lower()).strip("_") or "x" for w in words), digest])


def _seed_order(seed: Any) -> float:
    """Seeds in numeric order; anything that is not a number (an odd record) after them."""
    return float(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else math.inf


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value) != ""


# -- charts (SVG drawn by matplotlib when the site is built) ----------------------------------

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
RUN_COLOUR, MEDIAN_COLOUR = "#333333", "#1f77b4"
#: No measurement comes near this (a corrupt record might): matplotlib's axis arithmetic overflows close to
#: the float limit, so larger values are left off the charts. The tables on the page still show them.
MAX_DRAWN = 1e150


def _drawable(*values: float) -> bool:
    return all(math.isfinite(v) and abs(v) < MAX_DRAWN for v in values)


def commit_axis(ax: Any, commits: Sequence[str], width: int = CHART_WIDTH) -> None:
    """Commits at 0, 1, 2 ... oldest first; a short hash under each, or under every k-th when they would overlap."""
    from matplotlib.ticker import FixedLocator

    room = width - CHART_MARGINS["left"] - CHART_MARGINS["right"]
    step = max(1, math.ceil(len(commits) * LABEL_SPACING / room))
    labelled = list(range(0, len(commits), step))
    ax.set_xticks(labelled, [commits[i][:8] for i in labelled], fontfamily="monospace", fontsize=8.5)
    ax.xaxis.set_minor_locator(FixedLocator(range(len(commits))))  # an unlabelled tick at every commit
    ax.set_xlim(-0.6, len(commits) - 0.4)
    ax.set_xlabel("commit (oldest first)" + (f", a label every {step} commits" if step > 1 else ""))


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
    import pandas as pd
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    with _chart_style(column):
        fig, ax = _figure(330)
        quartiles = [
            q if q is not None and _drawable(*q) else None for q in (c.quartiles(column) for c in series.commits)
        ]
        xs = [i for i, q in enumerate(quartiles) if q is not None]
        q25, q50, q75 = ([quartiles[i][k] for i in xs] for k in range(3))
        titles: dict[str, list[str]] = {"runs": [], "medians": [], "marks": []}
        regression_titles: dict[str, str] = {}  # the gid of each shaded commit -> its verdict
        points_x, points_y = [], []
        for i, commit in enumerate(series.commits):
            ok = commit.ok.assign(_seed=commit.ok["seed"].map(_seed_order))
            ok = ok.sort_values(["_seed", "run_id"], kind="stable")
            values = pd.to_numeric(ok[column], errors="coerce")
            spread = min(0.3, 0.06 * (len(ok) - 1))  # runs of one commit side by side, not on top of each other
            for j, (run_id, value) in enumerate(zip(ok["run_id"], values, strict=True)):
                if _drawable(value):
                    points_x.append(i + (spread * (j / (len(ok) - 1) - 0.5) if len(ok) > 1 else 0))
                    points_y.append(value)
                    titles["runs"].append(f"{fmt.format(value)} {label}\n{details[run_id]}")
        for i, c in enumerate(series.commits):
            if c.regression:
                ax.axvspan(i - 0.45, i + 0.45, color=REGRESSION_COLOUR, alpha=0.1, lw=0, zorder=0,
                           gid=f"{column}-regression-{i}")  # fmt: skip
                ax.text(i, 0.99, "regression", transform=ax.get_xaxis_transform(), ha="center", va="top",
                        color=REGRESSION_COLOUR, fontsize=8.5, gid=f"{column}-regression-label-{i}")  # fmt: skip
                regression_titles[f"{column}-regression-{i}"] = f"commit {c.commit[:12]}: {_verdict_text(c)}"
        ax.fill_between(xs, q25, q75, color=MEDIAN_COLOUR, alpha=0.18, lw=0, zorder=1)
        ax.scatter(points_x, points_y, s=14, color=RUN_COLOUR, alpha=0.55, lw=0, zorder=2, gid=f"{column}-runs")
        ax.plot(xs, q50, color=MEDIAN_COLOUR, lw=2, marker="o", ms=5.5, zorder=3, gid=f"{column}-medians")
        for c, q in zip(series.commits, quartiles, strict=True):
            if q is not None:
                verdict = f"\n{_verdict_text(c)}" if c.versus_previous else ""
                titles["medians"].append(f"commit {c.commit[:12]}\nmedian {fmt.format(q[1])} {label} "
                                         f"(IQR {fmt.format(q[0])}–{fmt.format(q[2])})\n"
                                         f"{len(c.ok)} run(s){verdict}")  # fmt: skip
        marked = [i for i, c in enumerate(series.commits) if column in c.regressed and quartiles[i] is not None]
        if marked:
            ax.plot(marked, [quartiles[i][1] for i in marked], ls="none", marker="x", ms=11, mew=2.2,
                    color=REGRESSION_COLOUR, zorder=4, gid=f"{column}-marks")  # fmt: skip
            titles["marks"] = [_verdict_text(series.commits[i]) for i in marked]
        if series.regressions:
            ax.set_ymargin(0.15)  # headroom: the "regression" labels sit at the top, clear of the points
        commit_axis(ax, [c.commit for c in series.commits])
        _value_axis(ax, label, fmt)
        ax.set_title(title, loc="left")
        handles = [Line2D([], [], ls="none", marker="o", ms=4, color=RUN_COLOUR, alpha=0.55, label="runs"),
                   Line2D([], [], color=MEDIAN_COLOUR, lw=2, marker="o", ms=5, label="median per commit"),
                   Patch(color=MEDIAN_COLOUR, alpha=0.18, lw=0, label="interquartile range")]  # fmt: skip
        if series.regressions:
            handles.append(Patch(color=REGRESSION_COLOUR, alpha=0.15, lw=0, label="regression vs previous commit"))
        if marked:
            handles.append(Line2D([], [], ls="none", marker="x", ms=8, mew=2, color=REGRESSION_COLOUR,
                                  label=f"{title.lower()} regressed"))  # fmt: skip
        ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1, 1), ncols=len(handles), borderaxespad=0.3)
        svg = _svg(fig, f"{title} over commits", column)
    svg = _title_points(svg, f"{column}-runs", titles["runs"])
    svg = _title_points(svg, f"{column}-medians", titles["medians"])
    if marked:
        svg = _title_points(svg, f"{column}-marks", titles["marks"])
    for gid, text in regression_titles.items():
        svg = _title_group(svg, gid, text)
    return svg


def comparison_chart(siblings: Sequence[Series], commits: Sequence[str], current: Series) -> str:
    """Median train time per commit of every series of the recipe, one line each, on one commit axis."""
    columns = 2
    rows = math.ceil(len(siblings) / columns)
    legend = 20 * rows + 8  # px under the commit axis for the legend
    with _chart_style("comparison"):
        fig, ax = _figure(300 + legend, bottom=CHART_MARGINS["bottom"] + legend)
        titles = []
        for k, s in enumerate(siblings):
            xs, ys, texts = [], [], []
            for c in s.commits:
                median = c.median("train_s")
                if median is not None and _drawable(median):
                    xs.append(commits.index(c.commit))
                    ys.append(median)
                    texts.append(f"{_series_label(s)}\ncommit {c.commit[:12]}: median {median:.4g} train s "
                                 f"over {len(c.ok)} run(s)")  # fmt: skip
            name = _series_label(s) + (" (this page)" if s is current else "")
            ax.plot(xs, ys, lw=3 if s is current else 1.5, marker="o", ms=5, color=f"C{k % 10}", label=name,
                    gid=f"comparison-{k}")  # fmt: skip
            titles.append(texts)
        commit_axis(ax, commits)
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
    return re.sub(r'<svg ([^>]*?)width="[^"]*" height="[^"]*" ', rf'<svg \1role="img" aria-label="{_e(label)}" ',
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
    group = re.sub(r"<use ([^>]*?)/>", lambda m: f"<use {m.group(1)}><title>{_e(next(texts))}</title></use>", group)
    group = group.replace(f'<g id="{gid}"', f'<g id="{gid}" class="points"', 1)
    return svg[:start] + group + svg[end:]


def _title_group(svg: str, gid: str, title: str) -> str:
    """A ``<title>`` for the whole group ``gid`` (a shaded commit, say)."""
    opening = re.search(rf'<g id="{re.escape(gid)}"[^>]*>', svg)
    return svg[: opening.end()] + f"<title>{_e(title)}</title>" + svg[opening.end() :]


def _group_end(svg: str, start: int) -> int:
    """Where the ``<g>`` element that opens at ``start`` closes."""
    depth = 0
    for tag in re.finditer(r"<g[ >]|</g>", svg[start:]):
        depth += -1 if tag.group(0) == "</g>" else 1
        if depth == 0:
            return start + tag.end()
    raise ValueError(f"unclosed <g> at {start}")


def run_details(runs: pd.DataFrame) -> dict[str, str]:
    """What hovering a run's point shows: id, commit, seed, environment and hyperparameters, a line each."""
    details = {}
    for row in runs.to_dict("records"):
        machine = ", ".join(dict.fromkeys(str(row.get(n)) for n in MACHINE_FIELDS if _present(row.get(n))))
        software = ", ".join(f"{name} {row.get(name)}" for name in ("threads", "python", "torch")
                             if _present(row.get(name)))  # fmt: skip
        hp = _hyperparameters(row)
        hp_lines = [", ".join(f"{k}={v}" for k, v in list(hp.items())[i : i + 3]) for i in range(0, len(hp), 3)]
        lines = [f"run {row['run_id']}", f"commit {str(row['git_commit'])[:12]}, seed {row.get('seed')}",
                 f"started {row.get('started_at')}", machine, software, *hp_lines]  # fmt: skip
        details[row["run_id"]] = "\n".join(str(line) for line in lines if line)
    return details


def _hyperparameters(row: Mapping[str, Any]) -> dict[str, Any]:
    """The run's resolved hyperparameters, as ``load_runs`` keeps them."""
    hp = row.get("hyperparameters")
    return dict(sorted(hp.items())) if isinstance(hp, Mapping) else {}


# -- pages ----------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None or not math.isfinite(value) else fmt.format(value)


def _series_label(s: Series) -> str:
    return f"{s.device}, {s.variant}, {s.machine}"


def _verdict_text(commit: CommitResult) -> str:
    pair = commit.versus_previous
    if pair is None:
        return "first commit"
    why = "; ".join(pair.reasons)
    return f"{pair.verdict} vs previous commit" + (f": {why}" if why else "")


def _change(commit: CommitResult) -> str:
    """Train time and accuracy change since the commit before, as compare estimates them.

    Time: the Hodges-Lehmann estimate of the ratio (the median of all pairwise ratios of runs), which
    is what compare's verdict rests on; it can differ from the ratio of the two medians.
    """
    pair = commit.versus_previous
    if pair is None:
        return "–"
    parts = []
    if pair.decision is not None:
        parts.append(f"{(pair.decision.estimate.ratio - 1) * 100:+.1f}% train s")
    if pair.accuracy_change is not None:
        parts.append(f"{pair.accuracy_change:+.2f} pts acc")
    return ", ".join(parts) or "–"


def _verdict_cell(commit: CommitResult) -> str:
    if commit.versus_previous is None:
        return "<td>–</td>"
    verdict = commit.versus_previous.verdict
    css = ' class="verdict-regression"' if commit.regression else ""
    why = "; ".join(commit.versus_previous.reasons)
    return f'<td{css} title="{_e(why)}">{_e(verdict.upper() if commit.regression else verdict)}</td>'


def sparkline(series: Series, width: int = 120, height: int = 28) -> str:
    """The median train time per commit as a small inline SVG (no script needed); regressions as red dots."""
    points = [(i, c.median("train_s"), c.regression) for i, c in enumerate(series.commits)]
    points = [(i, v, r) for i, v, r in points if v is not None]
    if not points:
        return ""
    low, high = min(v for _, v, _ in points), max(v for _, v, _ in points)
    last = max(len(series.commits) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        y = height / 2 if high == low else 3 + (height - 6) * (1 - (v - low) / (high - low))
        return 3 + (width - 6) * i / last, y

    coords = [xy(i, v) for i, v, _ in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{REGRESSION_COLOUR}"/>'
        for (x, y), (_, _, regression) in zip(coords, points, strict=True)
        if regression
    )
    label = f"median train s over {len(points)} commit(s), {_number(low, '{:.4g}')} to {_number(high, '{:.4g}')}"
    return (f'<svg class="trend" width="{width}" height="{height}" role="img" aria-label="{_e(label)}">'
            f"<title>{_e(label)}</title><polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" "
            f'points="{line}"/>{dots}</svg>')  # fmt: skip


def page(title: str, body: str, *, root: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<link rel="stylesheet" href="{root}assets/style.css">
</head>
<body>
{body}
</body>
</html>
"""


def _chart(svg: str, target: str) -> str:
    return f'<figure class="chart" id="{target}">{svg}</figure>'


def _notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return f'<details class="notes"><summary>{len(notes)} note(s) from loading</summary><ul>{items}</ul></details>'


def index_page(history: History, title: str) -> str:
    rows = []
    for s in history.series:
        latest = s.latest
        css = ' class="regression"' if latest.regression else ""
        rows.append(
            f"<tr{css}><td><a href=\"workloads/{s.slug}.html\">{_e(s.recipe)}</a></td><td>{_e(s.device)}</td>"
            f"<td>{_e(s.variant)}</td><td>{_e(s.machine)}</td><td>{len(s.commits)}</td><td>{len(s.runs)}</td>"
            f'<td><code title="{_e(latest.commit)}">{_e(latest.commit[:8])}</code></td>'
            f"<td class=num>{_number(latest.median('train_s'), '{:.4g}')}</td>"
            f"<td class=num>{_number(latest.median('train_img_s'), '{:,.0f}')}</td>"
            f"<td class=num>{_number(latest.median('test_accuracy_pct'), '{:.2f}')}</td>"
            f"<td>{_e(_change(latest))}</td>{_verdict_cell(latest)}"
            f"<td>{sparkline(s)}<span class=marks>{len(s.regressions) or ''}</span></td></tr>"
        )  # fmt: skip
    flagged = sum(1 for s in history.series if s.regressions)
    body = f"""<header><h1>{_e(title)}</h1>
<p class="summary">{len(history.series)} workload(s), {history.runs} run(s) at {len(history.commits)} commit(s);
{flagged} workload(s) with a regression somewhere in their history. Latest commit per workload; the change and
verdict are against the commit before it, judged as <code>cifar-bench compare</code> judges.</p>
{_notes(history.notes)}</header>
<main>
<table class="workloads">
<thead><tr><th>recipe</th><th>device</th><th>variant</th><th>machine</th><th>commits</th><th>runs</th>
<th>latest commit</th><th>train s</th><th>train img/s</th><th>test acc %</th><th>change since previous commit</th>
<th>verdict</th><th>train s trend (red: regression)</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</main>"""
    return page(title, body, root="")


def series_page(s: Series, history: History, siblings: Sequence[Series], title: str) -> str:
    details = run_details(s.runs)
    charts = "\n".join(_chart(measure_chart(s, column, name, label, fmt, details), f"chart-{column}")
                       for column, name, label, fmt in MEASURES)  # fmt: skip
    history_rows = []
    for i, c in enumerate(s.commits):
        cells = "".join(
            f"<td class=num>{_quartile_text(c.quartiles(column), fmt)}</td>" for column, _, _, fmt in MEASURES
        )
        failed = len(c.runs) - len(c.ok)
        css = ' class="regression"' if c.regression else ""
        history_rows.append(
            f'<tr{css}><td>{i + 1}</td><td><code title="{_e(c.commit)}">{_e(c.commit[:8])}</code></td>'
            f"<td>{_e(c.first_run)}</td><td>{len(c.ok)}{f' (+{failed} not ok)' if failed else ''}</td>{cells}"
            f"<td>{_e(_change(c))}</td>{_verdict_cell(c)}"
            f"<td>{_e('; '.join(c.versus_previous.reasons) if c.versus_previous else '')}</td></tr>"
        )  # fmt: skip
    run_rows = "\n".join(
        f"<tr><td>{_e(r['run_id'])}</td><td><code>{_e(str(r['git_commit'])[:8])}</code></td><td>{_e(r['seed'])}</td>"
        f"<td>{_e(r['status'])}</td><td>{_e(r['started_at'])}</td><td class=num>{_number(r['train_s'], '{:.4g}')}</td>"
        f"<td class=num>{_number(r['train_img_s'], '{:,.0f}')}</td>"
        f"<td class=num>{_number(r['test_accuracy_pct'], '{:.2f}')}</td></tr>"
        for r in s.runs.sort_values(["started_at", "run_id"]).to_dict("records")
    )  # fmt: skip
    first = s.runs.iloc[0]
    identity = [("recipe", s.recipe), ("device", s.device), ("variant", s.variant), ("machine", s.machine),
                ("workload", s.key[0]), ("dataset", first.get("dataset")),
                ("epochs", first.get("epochs")), ("batch size", first.get("batch_size"))]  # fmt: skip
    comparison = ""
    if len(siblings) > 1:
        sibling_rows = "".join(
            f"<tr><td>{_e(o.device)}</td><td>{_e(o.variant)}</td><td>{_e(o.machine)}</td>"
            f"<td class=num>{_number(o.latest.median('train_s'), '{:.4g}')}</td>"
            f"<td class=num>{_number(o.latest.median('test_accuracy_pct'), '{:.2f}')}</td>"
            f"<td>{_sibling_link(o, s)}</td></tr>"
            for o in siblings
        )  # fmt: skip
        comparison = f"""<section class="comparison"><h2>Devices, variants and machines</h2>
<p>The same recipe elsewhere; each is its own series, never pooled with this one.</p>
{_chart(comparison_chart(siblings, history.commits, s), "chart-comparison")}
<table><thead><tr><th>device</th><th>variant</th><th>machine</th><th>latest train s</th><th>latest test acc %</th>
<th></th></tr></thead><tbody>{sibling_rows}</tbody></table></section>"""
    regressions = len(s.regressions)
    flag = "flag" if regressions else ""
    body = f"""<header><p><a href="../index.html">← all workloads</a></p><h1>{_e(s.title)}</h1>
<p class="summary">{len(s.runs)} run(s) at {len(s.commits)} commit(s) on {_e(s.machine)};
<span class="{flag}">{regressions} commit(s) marked as a regression</span> against the commit before.</p>
<p class="rule">{_e(rule(history.settings))}</p>
<dl class="identity">{"".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in identity)}</dl></header>
<main>
<section class="charts">{charts}</section>
<section><h2>History</h2>
<table class="history"><thead><tr><th>#</th><th>commit</th><th>first run</th><th>ok runs</th>
<th>train s median [IQR]</th><th>train img/s median [IQR]</th><th>test acc % median [IQR]</th>
<th>change since previous</th><th>verdict</th><th>why</th></tr></thead>
<tbody>
{chr(10).join(history_rows)}
</tbody></table></section>
{comparison}
<section><details><summary>All {len(s.runs)} runs</summary>
<table class="runs"><thead><tr><th>run</th><th>commit</th><th>seed</th><th>status</th><th>started</th><th>train s</th>
<th>train img/s</th><th>test acc %</th></tr></thead><tbody>
{run_rows}
</tbody></table></details></section>
</main>"""
    return page(f"{s.title} – {title}", body, root="../")


def _sibling_link(other: Series, current: Series) -> str:
    return "this page" if other is current else f'<a href="{other.slug}.html">open</a>'


def _quartile_text(quartiles: tuple[float, float, float] | None, fmt: str) -> str:
    if quartiles is None:
        return "–"
    low, mid, high = quartiles
    return f"{fmt.format(mid)} [{fmt.format(low)}–{fmt.format(high)}]"


# -- writing the site -------------------------------------------------------------------


def write_site(history: History, output: Path, title: str = "cifar-bench results") -> None:
    """Every page into ``output``, built beside it and swapped in, so a failed build leaves the old site whole."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is a file: name a folder for the site")
    if output.is_dir() and any(output.iterdir()) and not (output / SITE_MARKER).exists():
        raise UsageError(f"--output {output} is a folder that holds something else: name a new or empty folder")
    parent = output.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"--output {output}: no such folder {parent}")
    build = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=parent))
    try:
        (build / "assets").mkdir()
        (build / "workloads").mkdir()
        assets = resources.files("cifar_bench") / "publish_assets"
        for name in ASSET_FILES:
            (build / "assets" / name).write_bytes((assets / name).read_bytes())
        (build / "index.html").write_text(index_page(history, title), encoding="utf-8")
        by_recipe: dict[str, list[Series]] = {}
        for s in history.series:
            by_recipe.setdefault(s.recipe, []).append(s)
        for s in history.series:
            html_text = series_page(s, history, by_recipe[s.recipe], title)
            (build / "workloads" / f"{s.slug}.html").write_text(html_text, encoding="utf-8")
        (build / SITE_MARKER).write_text("built by cifar-bench publish; the next build replaces this folder\n")
        build.chmod(0o755)  # mkdtemp makes it private; a site is meant to be read
        if output.exists():
            shutil.rmtree(output)
        build.rename(output)
    except OSError as exc:
        raise UsageError(f"cannot write the site to {output}: {exc.strerror or exc}") from None
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)


# -- the command ------------------------------------------------------------------------


def add_command(commands, plugin_flag) -> None:
    parser = commands.add_parser("publish", help="a static website of results over commits: index + page per workload")
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="record files or folders [results/]")
    parser.add_argument("--output", type=Path, default=Path("site"), metavar="DIR",
                        help="folder for the site; replaced if it holds an earlier site [site/]")  # fmt: skip
    parser.add_argument("--title", default="cifar-bench results", help="the site's title")
    parser.set_defaults(func=cmd_publish)


def cmd_publish(args, report: Callable[[str], None] = warn) -> int:
    loaded = load_runs(args.paths or [Path("results")], report=report)
    history = build_history(loaded.runs, notes=loaded.problems)
    for note in history.notes[len(loaded.problems) :]:
        report(note)
    write_site(history, args.output, args.title)
    print(f"wrote {args.output / 'index.html'}: {len(history.series)} workload(s), {history.runs} run(s), "
          f"{len(history.commits)} commit(s)")  # fmt: skip
    return 0
