"""``cifar-bench publish``: run records in, a static website of their history over commits out.

The site answers "when did this get slower, and by how much?": an index with
one row per workload (recipe, device, variant, machine) and a page per
workload with train time, images/s and test accuracy over commits, every run
a point, the median per commit a line and the interquartile range a band.
A commit that ``compare`` would call a regression against the commit before
it is marked; the verdict comes from :func:`cifar_bench.compare.judge_pair`
itself, so the site and the gate never disagree.

It is plain files: the charts are drawn by plotly.js, copied from the plotly
Python package into ``assets/`` beside the pages, so the site works opened
from ``file://``, from a CI artifact or on a static host, and fetches
nothing. Every number in a chart is also in a table on the same page, so the
pages are usable with JavaScript off.

Runs from different machines (CPU model, accelerator model) are separate
series and never one line: their times differ for reasons other than the code.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from .compare import PairResult, Settings, judge_pair, rule
from .errors import UsageError
from .report import load_runs, warn

#: What keeps machines apart: two CPU or accelerator models are never one series.
MACHINE_FIELDS = ("cpu", "device_name")
#: Left in the output folder so that a later build may replace it (and nothing else).
SITE_MARKER = ".cifar-bench-site"
ASSET_FILES = ("style.css", "site.js")
PLOTLY_FILE = "plotly.min.js"

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


# -- charts (plotly.js figures as plain JSON) -------------------------------------------


def commit_axis(commits: Sequence[str]) -> dict[str, Any]:
    return {"tickmode": "array", "tickvals": list(range(len(commits))), "ticktext": [c[:8] for c in commits],
            "title": {"text": "commit (oldest first)"}, "range": [-0.6, len(commits) - 0.4],
            "zeroline": False}  # fmt: skip


def measure_figure(series: Series, column: str, title: str, label: str, fmt: str,
                   details: Mapping[str, str]) -> dict[str, Any]:  # fmt: skip
    """Runs as points, the median per commit as a line, the IQR as a band, regressions shaded."""
    commits = [c.commit for c in series.commits]
    quartiles = [c.quartiles(column) for c in series.commits]
    xs = [i for i, q in enumerate(quartiles) if q is not None]
    q25, q50, q75 = ([quartiles[i][k] for i in xs] for k in range(3))
    points_x, points_y, points_text = [], [], []
    for i, commit in enumerate(series.commits):
        ok = commit.ok.assign(_seed=commit.ok["seed"].map(_seed_order)).sort_values(["_seed", "run_id"], kind="stable")
        values = pd.to_numeric(ok[column], errors="coerce")
        spread = min(0.3, 0.06 * (len(ok) - 1))  # runs of one commit side by side, not on top of each other
        for j, (run_id, value) in enumerate(zip(ok["run_id"], values, strict=True)):
            if math.isfinite(value):
                points_x.append(i + (spread * (j / (len(ok) - 1) - 0.5) if len(ok) > 1 else 0))
                points_y.append(value)
                points_text.append(f"{html.escape(fmt.format(value))} {label}<br>{details[run_id]}")
    median_text = [
        f"commit {c.commit[:12]}<br>median {fmt.format(q[1])} {label} (IQR {fmt.format(q[0])}–{fmt.format(q[2])})"
        f"<br>{len(c.ok)} run(s)" + (f"<br>{html.escape(_verdict_text(c))}" if c.versus_previous else "")
        for c, q in zip(series.commits, quartiles, strict=True)
        if q is not None
    ]
    data = [
        {"type": "scatter", "mode": "lines", "x": xs, "y": q75, "line": {"width": 0}, "hoverinfo": "skip",
         "showlegend": False, "name": "75th percentile"},
        {"type": "scatter", "mode": "lines", "x": xs, "y": q25, "line": {"width": 0}, "fill": "tonexty",
         "fillcolor": "rgba(31,119,180,0.18)", "hoverinfo": "skip", "name": "IQR"},
        {"type": "scatter", "mode": "lines+markers", "x": xs, "y": q50, "name": "median per commit",
         "line": {"color": "#1f77b4", "width": 2}, "marker": {"size": 7}, "text": median_text,
         "hovertemplate": "%{text}<extra></extra>"},
        {"type": "scatter", "mode": "markers", "x": points_x, "y": points_y, "name": "runs", "text": points_text,
         "marker": {"size": 7, "color": "rgba(0,0,0,0.55)", "line": {"width": 0}},
         "hovertemplate": "%{text}<extra></extra>"},
    ]  # fmt: skip
    marked = [i for i, c in enumerate(series.commits) if column in c.regressed and quartiles[i] is not None]
    if marked:
        data.append({"type": "scatter", "mode": "markers", "x": marked, "y": [quartiles[i][1] for i in marked],
                     "name": "regression vs previous commit",
                     "text": [html.escape(_verdict_text(series.commits[i])) for i in marked],
                     "marker": {"symbol": "x", "size": 15, "color": REGRESSION_COLOUR, "line": {"width": 2}},
                     "hovertemplate": "%{text}<extra></extra>"})  # fmt: skip
    shapes = [
        {"type": "rect", "xref": "x", "yref": "paper", "x0": i - 0.45, "x1": i + 0.45, "y0": 0, "y1": 1,
         "fillcolor": "rgba(214,39,40,0.10)", "line": {"width": 0}, "layer": "below"}
        for i, c in enumerate(series.commits) if c.regression
    ]  # fmt: skip
    annotations = [
        {"x": i, "y": 1, "xref": "x", "yref": "paper", "yanchor": "bottom", "showarrow": False,
         "text": "regression", "font": {"color": REGRESSION_COLOUR, "size": 11}}
        for i, c in enumerate(series.commits) if c.regression
    ]  # fmt: skip
    layout = {
        "title": {"text": title}, "xaxis": commit_axis(commits), "yaxis": {"title": {"text": label}},
        "shapes": shapes, "annotations": annotations, "hovermode": "closest", "height": 340,
        "margin": {"l": 70, "r": 20, "t": 50, "b": 60}, "legend": {"orientation": "h", "y": -0.28},
    }  # fmt: skip
    return {"data": data, "layout": layout}


def comparison_figure(siblings: Sequence[Series], commits: Sequence[str], current: Series) -> dict[str, Any]:
    """Median train time per commit of every series of the recipe, one line each, on one commit axis."""
    data = []
    for s in siblings:
        xs, ys = [], []
        for c in s.commits:
            median = c.median("train_s")
            if median is not None:
                xs.append(commits.index(c.commit))
                ys.append(median)
        data.append({"type": "scatter", "mode": "lines+markers", "x": xs, "y": ys, "name": _series_label(s),
                     "line": {"width": 3 if s is current else 1.5},
                     "hovertemplate": "%{y:.4g} s<extra>%{fullData.name}</extra>"})  # fmt: skip
    layout = {"title": {"text": "Median train time of this recipe on each device, variant and machine"},
              "xaxis": commit_axis(commits), "yaxis": {"title": {"text": "train s"}}, "height": 360,
              "margin": {"l": 70, "r": 20, "t": 50, "b": 60}, "legend": {"orientation": "h", "y": -0.3}}  # fmt: skip
    return {"data": data, "layout": layout}


def run_details(runs: pd.DataFrame) -> dict[str, str]:
    """What hovering a run's point shows: id, commit, seed, environment and hyperparameters (HTML-escaped)."""
    details = {}
    for row in runs.to_dict("records"):
        machine = ", ".join(dict.fromkeys(str(row.get(n)) for n in MACHINE_FIELDS if _present(row.get(n))))
        software = ", ".join(f"{name} {row.get(name)}" for name in ("threads", "python", "torch")
                             if _present(row.get(name)))  # fmt: skip
        hp = _hyperparameters(row)
        hp_lines = [", ".join(f"{k}={v}" for k, v in list(hp.items())[i : i + 3]) for i in range(0, len(hp), 3)]
        lines = [f"run {row['run_id']}", f"commit {str(row['git_commit'])[:12]}, seed {row.get('seed')}",
                 f"started {row.get('started_at')}", machine, software, *hp_lines]  # fmt: skip
        details[row["run_id"]] = "<br>".join(html.escape(str(line)) for line in lines if line)
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


def page(title: str, body: str, *, root: str, charts: bool) -> str:
    # Deferred: the tables show while the browser still parses plotly.js; the scripts then run in order.
    scripts = (f'<script defer src="{root}assets/{PLOTLY_FILE}"></script>\n'
               f'<script defer src="{root}assets/site.js"></script>\n' if charts else "")  # fmt: skip
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<link rel="stylesheet" href="{root}assets/style.css">
<noscript><style>.chart {{ display: none; }}</style></noscript>
</head>
<body>
{body}
{scripts}</body>
</html>
"""


def _chart(figure: Mapping[str, Any], target: str) -> str:
    data = json.dumps(figure, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    return (f'<div class="chart" id="{target}"></div>\n'
            f'<script type="application/json" class="chart-data" data-target="{target}">{data}</script>')  # fmt: skip


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
    return page(title, body, root="", charts=False)


def series_page(s: Series, history: History, siblings: Sequence[Series], title: str) -> str:
    details = run_details(s.runs)
    charts = "\n".join(_chart(measure_figure(s, column, name, label, fmt, details), f"chart-{column}")
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
{_chart(comparison_figure(siblings, history.commits, s), "chart-comparison")}
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
    return page(f"{s.title} – {title}", body, root="../", charts=True)


def _sibling_link(other: Series, current: Series) -> str:
    return "this page" if other is current else f'<a href="{other.slug}.html">open</a>'


def _quartile_text(quartiles: tuple[float, float, float] | None, fmt: str) -> str:
    if quartiles is None:
        return "–"
    low, mid, high = quartiles
    return f"{fmt.format(mid)} [{fmt.format(low)}–{fmt.format(high)}]"


# -- writing the site -------------------------------------------------------------------


def plotly_script() -> bytes:
    """plotly.js as the plotly Python package ships it, so that no page fetches it from the internet."""
    return (resources.files("plotly") / "package_data" / PLOTLY_FILE).read_bytes()


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
        (build / "assets" / PLOTLY_FILE).write_bytes(plotly_script())
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
