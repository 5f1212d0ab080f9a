"""A workload page's evaluations (``run --evaluate``): a chart per metric over commits, and the numbers in a table.

Each metric an evaluation recorded (``corruptions.mean_accuracy``, ``calibration.ece``, a third-party one's)
is charted as the page's own measures are (runs as points, the median per commit as a line, the IQR as a
band) and listed per commit, median [IQR]. The metrics are shown, not judged: ``compare`` gates on time,
accuracy and failures only. A series without evaluations gets nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..evaluations import metric_columns
from .charts import measure_chart
from .history import Series, escape

FORMAT = "{:.4g}"  # how an evaluation metric prints: its unit is the evaluation's own


def evaluation_section(s: Series, details: Mapping[str, str]) -> str:
    """The page's section of evaluation charts and their table; "" when the series' runs made no evaluations."""
    columns = metric_columns(s.runs)
    if not columns:
        return ""
    charts = "\n".join(
        f'<figure class="chart" id="chart-{escape(column)}">'
        f"{measure_chart(s, column, label, label, FORMAT, details)}</figure>"
        for column, label in columns.items()
    )
    head = "".join(f"<th>{escape(label)} median [IQR]</th>" for label in columns.values())
    rows = []
    for i, commit in enumerate(s.commits):
        cells = "".join(f"<td class=num>{_quartiles(commit.quartiles(column))}</td>" for column in columns)
        rows.append(f'<tr><td>{i + 1}</td><td><code title="{escape(commit.commit)}">{escape(commit.commit[:8])}'
                    f"</code></td>{cells}</tr>")  # fmt: skip
    return f"""<section class="evaluations"><h2>Evaluations after training</h2>
<p>Metrics of the evaluations these runs made (<code>run --evaluate</code>); shown, not judged.</p>
<section class="charts">{charts}</section>
<table class="history"><thead><tr><th>#</th><th>commit</th>{head}</tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></section>"""


def _quartiles(quartiles: tuple[float, float, float] | None) -> str:
    if quartiles is None:
        return "–"
    low, mid, high = quartiles
    return f"{FORMAT.format(mid)} [{FORMAT.format(low)}–{FORMAT.format(high)}]"
