"""The site's pages: an index of workloads, and a page per workload with its charts and tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import compare_accuracy
from ..compare_render import rule
from ..regressions import LABELS, Change, change_text, interval_text, searched
from ..series import present, slot_label
from .charts import REGRESSION_COLOUR, commit_text, comparison_chart, measure_chart
from .evaluations import evaluation_section
from .history import MACHINE_FIELDS, CommitResult, History, Series, escape

if TYPE_CHECKING:
    import pandas as pd

MEASURES = (  # column, chart title, axis label, how a value prints
    ("train_s", "Train time", "train s", "{:.4g}"),
    ("train_img_s", "Training throughput", "train images/s", "{:,.0f}"),
    ("test_accuracy_pct", "Test accuracy", "test accuracy %", "{:.2f}"),
)
#: The chart a series of counted runs (run --measure instructions) gets first: its times are valgrind's.
COUNTED_MEASURE = ("instructions_per_step", "Instructions per training step", "instructions/step", "{:,.0f}")


def run_details(runs: pd.DataFrame) -> dict[str, str]:
    """What hovering a run's point shows: id, commit, seed, environment and hyperparameters, a line each."""
    details = {}
    for row in runs.to_dict("records"):
        machine = ", ".join(dict.fromkeys(str(row.get(n)) for n in MACHINE_FIELDS if present(row.get(n))))
        software = ", ".join(f"{name} {row.get(name)}" for name in ("threads", "python", "torch")
                             if present(row.get(name)))  # fmt: skip
        hp = _hyperparameters(row)
        hp_lines = [", ".join(f"{k}={v}" for k, v in list(hp.items())[i : i + 3]) for i in range(0, len(hp), 3)]
        lines = [f"run {row['run_id']}", f"{commit_text(str(row['slot']))}, seed {row.get('seed')}",
                 f"started {row.get('started_at')}", machine, software, *hp_lines]  # fmt: skip
        details[row["run_id"]] = "\n".join(str(line) for line in lines if line)
    return details


def _hyperparameters(row: Mapping[str, Any]) -> dict[str, Any]:
    """The run's resolved hyperparameters, as ``load_runs`` keeps them."""
    hp = row.get("hyperparameters")
    return dict(sorted(hp.items())) if isinstance(hp, Mapping) else {}


# -- pages ----------------------------------------------------------------------------


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None or not math.isfinite(value) else fmt.format(value)


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
    if pair.accuracy is not None:  # the mean difference and its test, as compare judges it
        parts.append(compare_accuracy.short(pair.accuracy))
    return ", ".join(parts) or "–"


def _verdict_cell(commit: CommitResult) -> str:
    if commit.versus_previous is None:
        return "<td>–</td>"
    verdict = commit.versus_previous.verdict
    css = ' class="verdict-regression"' if commit.regression else ""
    why = "; ".join(commit.versus_previous.reasons)
    return f'<td{css} title="{escape(why)}">{escape(verdict.upper() if commit.regression else verdict)}</td>'


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
    return (f'<svg class="trend" width="{width}" height="{height}" role="img" aria-label="{escape(label)}">'
            f"<title>{escape(label)}</title><polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" "
            f'points="{line}"/>{dots}</svg>')  # fmt: skip


def page(title: str, body: str, *, root: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
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
    items = "".join(f"<li>{escape(n)}</li>" for n in notes)
    return f'<details class="notes"><summary>{len(notes)} note(s) from loading</summary><ul>{items}</ul></details>'


def index_page(history: History, title: str) -> str:
    rows = []
    for s in history.series:
        latest = s.latest
        css = ' class="regression"' if latest.regression else ""
        rows.append(
            f"<tr{css}><td><a href=\"workloads/{s.slug}.html\">{escape(s.recipe)}</a></td><td>{escape(s.device)}</td>"
            f"<td>{escape(s.variant)}</td><td>{escape(s.machine)}</td><td>{len(s.commits)}</td><td>{len(s.runs)}</td>"
            f"<td>{_commit_cell(latest.commit)}</td>"
            f"<td class=num>{_number(latest.median('train_s'), '{:.4g}')}</td>"
            f"<td class=num>{_number(latest.median('train_img_s'), '{:,.0f}')}</td>"
            f"<td class=num>{_number(latest.median('test_accuracy_pct'), '{:.2f}')}</td>"
            f"<td>{escape(_change(latest))}</td>{_verdict_cell(latest)}<td>{_changes_count(s)}</td>"
            f"<td>{sparkline(s)}<span class=marks>{len(s.regressions) or ''}</span></td></tr>"
        )  # fmt: skip
    flagged = sum(1 for s in history.series if s.regressions)
    changed = sum(1 for s in history.series if s.changes)
    body = f"""<header><h1>{escape(title)}</h1>
<p class="summary">{len(history.series)} workload(s), {history.runs} run(s) at {len(history.commits)} commit(s);
{flagged} workload(s) with a regression against the commit before somewhere in their history, {changed} with a
change point. Latest commit per workload; the change and verdict are against the commit before it, judged as
<code>cifar-bench compare</code> judges (the adjacent-commit verdict); change points look at the whole series
(<code>cifar-bench regressions</code>).</p>
{_notes(history.notes)}</header>
<main>
<table class="workloads">
<thead><tr><th>recipe</th><th>device</th><th>variant</th><th>machine</th><th>commits</th><th>runs</th>
<th>latest commit</th><th>train s</th><th>train img/s</th><th>test acc %</th><th>change since previous commit</th>
<th>verdict vs previous commit</th><th>change points (regressions)</th>
<th>train s trend (red: regression vs previous)</th>
</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
{_index_changes(history)}
</main>"""
    return page(title, body, root="")


def series_page(s: Series, history: History, siblings: Sequence[Series], title: str) -> str:
    details = run_details(s.runs)
    measures = (COUNTED_MEASURE, *MEASURES) if COUNTED_MEASURE[0] in searched(s.runs) else MEASURES
    charts = "\n".join(_chart(measure_chart(s, column, name, label, fmt, details), f"chart-{column}")
                       for column, name, label, fmt in measures)  # fmt: skip
    first = s.runs.iloc[0]
    identity = [("recipe", s.recipe), ("device", s.device), ("variant", s.variant), ("machine", s.machine),
                ("workload", s.key[0]), ("dataset", first.get("dataset")),
                ("epochs", first.get("epochs")), ("batch size", first.get("batch_size"))]  # fmt: skip
    regressions = len(s.regressions)
    flag = "flag" if regressions else ""
    changed = "flag" if any(c.regression for c in s.changes) else ""
    body = f"""<header><p><a href="../index.html">← all workloads</a></p><h1>{escape(s.title)}</h1>
<p class="summary">{len(s.runs)} run(s) at {len(s.commits)} commit(s) on {escape(s.machine)};
<span class="{flag}">{regressions} commit(s) marked as a regression</span> against the commit before
(the adjacent-commit verdict); <span class="{changed}">{len(s.changes)} change point(s)</span> over the whole
series.</p>
<p class="rule">Adjacent-commit verdict: {escape(rule(history.settings))}</p>
<p class="rule">Change points: {escape(change_rule(history))}</p>
<dl class="identity">{"".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in identity)}</dl></header>
<main>
<section class="charts">{charts}</section>
{_series_changes(s)}
<section><h2>History</h2>
<table class="history"><thead><tr><th>#</th><th>commit</th><th>first run</th><th>ok runs</th>
<th>train s median [IQR]</th><th>train img/s median [IQR]</th><th>test acc % median [IQR]</th>
<th>change since previous</th><th>verdict vs previous</th><th>why</th></tr></thead>
<tbody>
{_history_rows(s)}
</tbody></table></section>
{evaluation_section(s, details)}
{_comparison_section(s, history, siblings)}
<section><details><summary>All {len(s.runs)} runs</summary>
<table class="runs"><thead><tr><th>run</th><th>commit</th><th>seed</th><th>status</th><th>started</th><th>train s</th>
<th>train img/s</th><th>test acc %</th></tr></thead><tbody>
{_run_rows(s)}
</tbody></table></details></section>
</main>"""
    return page(f"{s.title} – {title}", body, root="../")


def _history_rows(s: Series) -> str:
    """A row per commit: its runs, the median and IQR of each measure, and the verdict against the one before."""
    rows = []
    for i, c in enumerate(s.commits):
        cells = "".join(
            f"<td class=num>{_quartile_text(c.quartiles(column), fmt)}</td>" for column, _, _, fmt in MEASURES
        )
        failed = len(c.runs) - len(c.ok)
        css = ' class="regression"' if c.regression else ""
        rows.append(
            f"<tr{css}><td>{i + 1}</td><td>{_commit_cell(c.commit)}</td>"
            f"<td>{escape(c.first_run)}</td><td>{len(c.ok)}{f' (+{failed} not ok)' if failed else ''}</td>{cells}"
            f"<td>{escape(_change(c))}</td>{_verdict_cell(c)}"
            f"<td>{escape('; '.join(c.versus_previous.reasons) if c.versus_previous else '')}</td></tr>"
        )  # fmt: skip
    return "\n".join(rows)


def _run_rows(s: Series) -> str:
    """A row per run, in the order they ran."""
    return "\n".join(
        f"<tr><td>{escape(r['run_id'])}</td><td>{_commit_cell(str(r['slot']))}</td>"
        f"<td>{escape(r['seed'])}</td><td>{escape(r['status'])}</td><td>{escape(r['started_at'])}</td>"
        f"<td class=num>{_number(r['train_s'], '{:.4g}')}</td>"
        f"<td class=num>{_number(r['train_img_s'], '{:,.0f}')}</td>"
        f"<td class=num>{_number(r['test_accuracy_pct'], '{:.2f}')}</td></tr>"
        for r in s.runs.sort_values(["started_at", "run_id"]).to_dict("records")
    )  # fmt: skip


def _comparison_section(s: Series, history: History, siblings: Sequence[Series]) -> str:
    """The same recipe's other series (devices, variants, machines) on one chart and in a table; none if alone."""
    if len(siblings) <= 1:
        return ""
    sibling_rows = "".join(
        f"<tr><td>{escape(o.device)}</td><td>{escape(o.variant)}</td><td>{escape(o.machine)}</td>"
        f"<td class=num>{_number(o.latest.median('train_s'), '{:.4g}')}</td>"
        f"<td class=num>{_number(o.latest.median('test_accuracy_pct'), '{:.2f}')}</td>"
        f"<td>{_sibling_link(o, s)}</td></tr>"
        for o in siblings
    )  # fmt: skip
    return f"""<section class="comparison"><h2>Devices, variants and machines</h2>
<p>The same recipe elsewhere; each is its own series, never pooled with this one.</p>
{_chart(comparison_chart(siblings, history.commits, s, history.first_run), "chart-comparison")}
<table><thead><tr><th>device</th><th>variant</th><th>machine</th><th>latest train s</th><th>latest test acc %</th>
<th></th></tr></thead><tbody>{sibling_rows}</tbody></table></section>"""


def _sibling_link(other: Series, current: Series) -> str:
    return "this page" if other is current else f'<a href="{other.slug}.html">open</a>'


def _quartile_text(quartiles: tuple[float, float, float] | None, fmt: str) -> str:
    if quartiles is None:
        return "–"
    low, mid, high = quartiles
    return f"{fmt.format(mid)} [{fmt.format(low)}–{fmt.format(high)}]"


# -- change points --------------------------------------------------------------------------------------


def _commit_cell(slot: str) -> str:
    """A short hash with the whole one as its tooltip, or "no commit"."""
    if slot_label(slot) == "no commit":
        return '<span class="no-commit">no commit</span>'
    return f'<code title="{escape(slot)}">{escape(slot_label(slot))}</code>'


def change_rule(history: History) -> str:
    """How change points are found and when one is a regression, in a sentence."""
    s = history.change_settings
    test = "Student's t-test of the commits' medians" if s.method == "t" else "shuffles of whole commits"
    return (f"E-Divisive proposes where each series splits, {test} keeps a split at p <= {s.alpha:g}, at least "
            f"{s.min_segment} commits a side; a regression when slower (or fewer images/s) by more than "
            f"{s.max_slowdown:.0%}, instructions per step (counted runs) up more than "
            f"{s.max_instructions_increase:.0%}, or accuracy down more than {s.max_accuracy_drop:g} points, with "
            "the 95% interval wholly on that side.")  # fmt: skip


def _changes_count(s: Series) -> str:
    if not s.changes:
        return "–"
    regressions = sum(c.regression for c in s.changes)
    return f"{len(s.changes)}" + (f' <span class="flag">({regressions})</span>' if regressions else "")


def _change_row(s: Series, c: Change, link: str | None) -> str:
    p = c.point
    where = _commit_cell(c.slot) if p.earliest == p.latest else (
        f"{_commit_cell(str(p.earliest))} .. {_commit_cell(str(p.latest))}")  # fmt: skip
    workload = f'<td><a href="{link}">{escape(s.title)}, {escape(s.machine)}</a></td>' if link else ""
    css = ' class="regression"' if c.regression else ""
    return (f"<tr{css}>{workload}<td>{escape(LABELS[c.measure])}</td>"
            f"<td>{_commit_cell(c.slot)} (#{s.index_of(c.slot) + 1})</td><td>{where}</td>"
            f"<td class=num>{escape(change_text(p))} {escape(interval_text(p))}</td>"
            f"<td class=num>{p.p_value:.2g}</td><td>{'REGRESSION' if c.regression else ''}</td></tr>")  # fmt: skip


CHANGE_HEAD = ("<th>measure</th><th>begins at (# on its page)</th><th>could have begun</th>"
               "<th>change [95% interval]</th><th>p</th><th></th>")  # fmt: skip


def _series_changes(s: Series) -> str:
    """A workload page's change points, newest first; nothing when it has none."""
    if not s.changes:
        return ""
    rows = "\n".join(_change_row(s, c, None) for c in reversed(s.changes))
    return f"""<section class="changes"><h2>Change points</h2>
<table class="changes"><thead><tr>{CHANGE_HEAD}</tr></thead><tbody>
{rows}
</tbody></table></section>"""


def _index_changes(history: History) -> str:
    """Every workload's change points, newest first, each linking to its page; a line when there are none."""
    found = [(s, c) for s in history.series for c in s.changes]
    if not found:
        return '<section class="changes"><h2>Change points</h2><p>None in any series.</p></section>'
    found.sort(key=lambda sc: -history.commits.index(sc[1].slot))
    rows = "\n".join(_change_row(s, c, f"workloads/{s.slug}.html") for s, c in found)
    return f"""<section class="changes"><h2>Change points</h2>
<table class="changes"><thead><tr><th>workload</th>{CHANGE_HEAD}</tr></thead><tbody>
{rows}
</tbody></table></section>"""
