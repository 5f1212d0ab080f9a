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

import shutil
import tempfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from ...errors import UsageError, warn
from ..reader import load_runs
from .history import History, Series, build_history
from .pages import index_page, series_page

#: Left in the output folder so that a later build may replace it (and nothing else).
SITE_MARKER = ".cifar-bench-site"
ASSET_FILES = ("style.css",)


def publish(paths: Sequence[Path], output: Path, title: str = "cifar-bench results",
            report: Callable[[str], None] = warn) -> History:  # fmt: skip
    """Read the records under ``paths`` and write their site into ``output``; returns the history it shows."""
    loaded = load_runs(paths, report=report)
    history = build_history(loaded.runs, notes=loaded.problems)
    for note in history.notes[len(loaded.problems) :]:
        report(note)
    write_site(history, output, title)
    return history


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
        assets = resources.files(__package__) / "assets"
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
