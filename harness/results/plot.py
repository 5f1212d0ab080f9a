"""``cifar-bench plot``: the charts a person would rather look at than a table.

One figure, three panels:

1. training loss per epoch, one line per run (does every run learn alike?);
2. test accuracy against training time, one point per run, colour per
   recipe and marker per device (the trade-off the recipes make);
3. training throughput per device, a bar per recipe at the median with the
   interquartile range as error bar and every run as a dot (how much the
   device matters, and how noisy each number is).

Runs with evaluations after training (``run --evaluate``) add a second row: a reliability diagram,
accuracy against corruption severity, other evaluations' metrics (see ``plot_evaluations.py``).

Drawn on a bare :class:`matplotlib.figure.Figure`, never through pyplot, so
it needs no display and leaves matplotlib's global backend alone.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from .plot_evaluations import panels as evaluation_panels

if TYPE_CHECKING:  # matplotlib is imported when a chart is drawn, not when the command line is built
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LOG_SCALE_SPREAD = 30  # switch an axis to log scale when its values span more than this factor


def literal(text: object) -> str:
    """``text`` as matplotlib must draw it as written: a ``$`` in a recipe or device name would otherwise
    start mathtext (``$\\nosuchsymbol$`` makes drawing fail)."""
    return str(text).replace("$", r"\$")


def series_label(runs: pd.DataFrame) -> pd.Series:
    """What a colour stands for: the recipe, plus the variant when one recipe ran several."""
    variants = runs.groupby("recipe")["variant"].transform("nunique")
    return runs["recipe"].where(variants <= 1, runs["recipe"] + " [" + runs["variant"] + "]")


def draw(runs: pd.DataFrame) -> Figure:
    """The three-panel figure for ``ok`` runs (as loaded by :func:`load_runs`)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    runs = runs.assign(series=series_label(runs))
    series = sorted(runs["series"].unique())
    devices = sorted(runs["device"].unique())
    colour = {name: f"C{i % 10}" for i, name in enumerate(series)}
    marker = dict(zip(devices, itertools.cycle(MARKERS)))

    extra = evaluation_panels(runs)  # run --evaluate: a second row (reliability diagram, corruptions, others)
    fig = Figure(figsize=(17, 5.6 * (2 if extra else 1)), layout="constrained")
    axes = fig.subplots(2 if extra else 1, 3, squeeze=False)
    loss_ax, acc_ax, speed_ax = axes[0]
    _loss_per_epoch(loss_ax, runs, colour, marker)
    _accuracy_vs_time(acc_ax, runs, colour, marker)
    _throughput(speed_ax, runs, series, devices, colour)
    for i, ax in enumerate(axes[1] if extra else []):
        extra[i](ax, runs, colour) if i < len(extra) else ax.set_visible(False)

    handles = [Line2D([], [], color=colour[s], lw=6, label=literal(s)) for s in series]
    handles += [Line2D([], [], color="0.3", marker=marker[d], ls="", label=literal(d)) for d in devices]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False)
    synthetic = runs["synthetic"].fillna(False).astype(bool).any()
    title = f"cifar-bench: {len(runs)} runs"
    fig.suptitle(title + (" (includes synthetic data, not CIFAR-10)" if synthetic else ""))
    return fig


def _loss_per_epoch(ax: Axes, runs: pd.DataFrame, colour: dict, marker: dict) -> None:
    for run in runs.itertuples():
        losses = run.epoch_loss
        if losses:
            ax.plot(range(1, len(losses) + 1), losses, color=colour[run.series], marker=marker[run.device],
                    ms=4, lw=1.2, alpha=0.7)  # fmt: skip
    ax.set(title="training loss per epoch (one line per run)", xlabel="epoch", ylabel="mean training loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)


def _accuracy_vs_time(ax: Axes, runs: pd.DataFrame, colour: dict, marker: dict) -> None:
    for (series, device), group in runs.groupby(["series", "device"]):
        ax.scatter(group["train_s"], group["test_accuracy_pct"], color=colour[series], marker=marker[device],
                   s=40, alpha=0.8, edgecolors="white", linewidths=0.5)  # fmt: skip
    _log_if_wide(ax, runs["train_s"], "x")
    ax.set(title="test accuracy against training time (one point per run)", xlabel="training time (s)",
           ylabel="test accuracy (%)")  # fmt: skip
    ax.grid(alpha=0.3)


def _throughput(ax: Axes, runs: pd.DataFrame, series: list, devices: list, colour: dict) -> None:
    width = 0.8 / len(series)
    import numpy as np

    rng = np.random.default_rng(0)  # jitter of the run dots, fixed so that a replot looks the same
    for i, name in enumerate(series):
        for j, device in enumerate(devices):
            values = runs.loc[(runs["series"] == name) & (runs["device"] == device), "train_img_s"].dropna()
            if values.empty:
                continue
            x = j - 0.4 + width * (i + 0.5)
            q25, q50, q75 = values.quantile([0.25, 0.5, 0.75])
            ax.bar(x, q50, width * 0.9, color=colour[name], alpha=0.75,
                   yerr=[[q50 - q25], [q75 - q50]], capsize=3)  # fmt: skip
            ax.scatter(x + rng.uniform(-width / 4, width / 4, len(values)), values, s=8, color="black", zorder=3)
    ax.set_xticks(range(len(devices)), [literal(d) for d in devices])
    _log_if_wide(ax, runs["train_img_s"], "y")
    ax.set(title="training throughput per device (median, IQR, runs)", xlabel="device",
           ylabel="training images per second")  # fmt: skip
    ax.grid(alpha=0.3, axis="y")


def _log_if_wide(ax: Axes, values: pd.Series, axis: str) -> None:
    positive = values[values > 0]
    if len(positive) and positive.max() / positive.min() > LOG_SCALE_SPREAD:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
