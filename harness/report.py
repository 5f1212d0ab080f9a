"""``cifar-bench report``: run records in, a table of medians and spreads out.

Also home of :func:`load_runs`, which ``compare`` and ``plot`` share: it
turns files and folders of JSON records into one flat pandas DataFrame, one
row per run. Records from an older schema may lack fields (they read as
missing, never as a crash); records from a newer schema, or files that are
not records at all, are reported by name and the rest are read.

Medians and interquartile ranges rather than means and standard deviations:
a run slowed by a noisy neighbour moves a mean a long way and a median
hardly at all.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from . import variants, workload
from .components import COMPONENT_KINDS  # each a column of its own (--group-by model)
from .errors import UsageError, warn
from .records import RecordError, RunRecord, read_record
from .workload import VARIANT_DEFAULTS

if TYPE_CHECKING:  # pandas is imported when records are read: the command line is built without it
    import pandas as pd

#: What a run is grouped by unless ``--group-by`` says otherwise. ``workload`` keeps runs of one recipe
#: that did different work (another model, other hyperparameters or data) in rows of their own.
DEFAULT_GROUP_BY = ("recipe", "device", "variant", "workload")


#: Columns that hold whole structures, not values to group or sort by.
STRUCTURED = ("epoch_loss", "hyperparameters", "workload_description")

#: Measures summarised by ``report``: column -> label shown in tables.
MEASURES: dict[str, str] = {
    "train_s": "train s",
    "train_img_s": "train img/s",
    "eval_img_s": "eval img/s",
    "test_accuracy_pct": "test acc %",
}

#: Measures shown only when some run has them (energy is measured only where the hardware tells).
ENERGY_MEASURES: dict[str, str] = {
    "energy_j": "energy J",
    "train_img_per_j": "train img/J",
}

#: Environment fields whose differences mean two results are not like for like.
ENVIRONMENT_FIELDS = ("cpu", "device_name", "threads", "python", "torch", "torchvision")

#: The nested parts of a record that flatten() reads; the last two come from ``run --reference``.
SECTIONS = ("timings", "throughput", "metrics", "environment", "dataset", "hyperparameters", "reference",
            "timings_ratio")  # fmt: skip

FORMATS = ("text", "github", "markdown", "latex", "html", "csv", "json")


# -- loading --------------------------------------------------------------------


@dataclass
class Loaded:
    """The runs read from some paths, and what could not be read (one message per file)."""

    runs: pd.DataFrame
    problems: list[str] = field(default_factory=list)


def record_files(paths: Iterable[Path | str]) -> list[tuple[Path, bool]]:
    """Every record file under ``paths``, each with whether the user named it directly.

    Folders are searched recursively for ``*.json`` so that CI artifacts
    (one folder per job) can be passed as they were downloaded.
    """
    files: list[tuple[Path, bool]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend((p, False) for p in sorted(path.rglob("*.json")) if p.is_file())
        elif path.is_file():
            files.append((path, True))
        else:
            raise UsageError(f"no such file or folder: {path}")
    return files


def load_runs(paths: Sequence[Path | str], *, report: Callable[[str], None] | None = warn) -> Loaded:
    """Read every record under ``paths`` into one DataFrame (all statuses; filter later).

    A file named directly that cannot be read is an error; one found in a
    folder is skipped with a message, so that one stray file does not hide
    a folder of good results. No readable record at all is an error.
    """
    if not paths:
        raise UsageError("no record files or folders given")
    rows, problems = [], []
    for path, named in record_files(paths):
        try:
            rows.append(flatten(read_record(path), path))
        except RecordError as exc:
            if named:
                raise UsageError(str(exc)) from None
            problems.append(f"skipped {exc}")
            if report:
                report(problems[-1])
    if not rows:
        where = ", ".join(str(p) for p in paths)
        raise UsageError(f"no run records found in {where}")
    import pandas as pd

    return Loaded(pd.DataFrame(rows), problems)


def flatten(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """One record dict as one flat row; missing or mistyped fields become None or NaN."""
    recipe, device, status = data.get("recipe"), data.get("device"), data.get("status")
    if not all(isinstance(v, str) and v for v in (recipe, device, status)):
        raise RecordError(f"{path}: not a usable run record (needs recipe, device and status)")
    timings, throughput, metrics, env, dataset, hp, reference, ratios = (_section(data, k) for k in SECTIONS)
    energy = _section(data, "energy")
    variant = {key: _typed(data.get(key), type(value), value) for key, value in VARIANT_DEFAULTS.items()}
    world = _section(data, "distributed").get("world_size")
    variant["world_size"] = world if isinstance(world, int) and not isinstance(world, bool) and world > 1 else 1
    accuracy = _number(metrics.get("test_accuracy"))
    description = workload.describe(data)
    components = _section(data, "components")
    return {
        "run_id": str(data.get("run_id") or path.stem),
        "path": str(path),
        "schema_version": data.get("schema_version"),
        "status": status,
        "role": data.get("role") if isinstance(data.get("role"), str) else "candidate",  # or "reference"
        "recipe": recipe,
        "device": device,
        **variant,
        "variant": variants.label(variant),
        "started_at": str(data.get("started_at") or ""),
        "seed": data.get("seed"),
        "dataset": dataset.get("name"),
        "dataset_fingerprint": dataset.get("fingerprint"),
        "train_size": dataset.get("train_size"),
        "test_size": dataset.get("test_size"),
        "synthetic": dataset.get("synthetic"),
        "epochs": hp.get("epochs"),
        "batch_size": hp.get("batch_size"),
        "hyperparameters": dict(hp),
        **{f"{kind}_component": _component_name(components.get(kind)) for kind in COMPONENT_KINDS},
        "workload": workload.key(description),
        "workload_description": description,
        "setup_s": _number(timings.get("setup_s")),
        "train_s": _number(timings.get("train_s")),
        "eval_s": _number(timings.get("eval_s")),
        "total_s": _number(timings.get("total_s")),
        "train_img_s": _number(throughput.get("train_img_s")),
        "eval_img_s": _number(throughput.get("eval_img_s")),
        "energy_j": _number(energy.get("run_j")),
        "train_img_per_j": _number(energy.get("train_img_per_j")),
        "test_accuracy": accuracy,
        "test_accuracy_pct": 100 * accuracy,
        "epoch_loss": _numbers(metrics.get("epoch_loss")),
        **{name: env.get(name) for name in (*ENVIRONMENT_FIELDS, "git_commit", "hostname")},
        "reference_recipe": reference.get("recipe"),
        "reference_run_id": reference.get("run_id"),
        "reference_interleave": reference.get("interleave", "run") if reference.get("run_id") else None,
        "ratio_train_s": _number(ratios.get("train_s")),
        "ratio_total_s": _number(ratios.get("total_s")),
        "error": data.get("error"),
        # From 'cifar-bench ab': the run of the other install this one took turns with, and the ratios.
        "partner_run_id": _section(data, "partner").get("run_id"),
        "paired_step_median": _number(_section(data, "paired_ratio").get("step_median")),
        "paired_train_s": _number(_section(data, "paired_ratio").get("train_s")),
    }


def _component_name(ref: Any) -> str | None:
    return str(ref.get("name")) if isinstance(ref, Mapping) and ref.get("name") is not None else None


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _typed(value: Any, kind: type, default: Any) -> Any:
    return value if isinstance(value, kind) else default


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    try:
        return float(value)
    except OverflowError:  # an integer too big for a float (read_record refuses such files)
        return math.nan


def _numbers(value: Any) -> list[float]:
    return [_number(v) for v in value] if isinstance(value, list) else []


# -- the summary ------------------------------------------------------------------


def select_status(
    runs: pd.DataFrame, include_failed: bool, report: Callable[[str], None] | None = warn
) -> pd.DataFrame:
    """Only ``ok`` runs, unless asked otherwise; says how many were left out and why."""
    if include_failed:
        return runs
    left_out = runs[runs["status"] != "ok"]
    if len(left_out) and report:
        counts = ", ".join(f"{n} {s}" for s, n in left_out["status"].value_counts().sort_index().items())
        report(f"left out {len(left_out)} run(s) that did not finish ok ({counts}); --include-failed counts them")
    return runs[runs["status"] == "ok"]


def group_columns(runs: pd.DataFrame, group_by: Sequence[str]) -> pd.DataFrame:
    """``runs`` with a column for each name in ``group_by``: a run column, a component kind or a hyperparameter.

    A component kind (``model``) groups by the component's name; any other
    name that is not a column is looked up in each run's hyperparameters
    (``lr``, ``momentum``), a run that lacks it showing as ``None``.
    """
    hyperparameters = set().union(*(h for h in runs["hyperparameters"] if isinstance(h, Mapping)))
    added = {}
    for name in group_by:
        if name in runs.columns and name not in STRUCTURED and name not in COMPONENT_KINDS:
            continue
        if name in COMPONENT_KINDS:
            added[name] = runs[f"{name}_component"]
        elif name in hyperparameters:
            added[name] = [h.get(name) if isinstance(h, Mapping) else None for h in runs["hyperparameters"]]
        else:
            columns = {c for c in runs.columns if c not in STRUCTURED and not c.endswith("_component")}
            known = sorted(columns | set(COMPONENT_KINDS) | hyperparameters)
            raise UsageError(
                f"cannot group by {name}: use a column, a component kind or a hyperparameter ({', '.join(known)})"
            )
    return runs.assign(**{k: [_hashable(v) for v in values] for k, values in added.items()})


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def summarize(runs: pd.DataFrame, group_by: Sequence[str] = DEFAULT_GROUP_BY) -> pd.DataFrame:
    """Run count, then median and IQR of each measure, per group.

    Grouped by ``workload`` (the default does), the table gains a ``differs``
    column wherever one recipe covers several workloads, saying what sets
    each apart (``model=resnet18 (resnet)``): rows that look alike by name
    are never alike in work.
    """
    runs = group_columns(runs, group_by)
    keys = list(group_by)
    grouped = runs.assign(**{k: runs[k].astype(str) for k in keys}).groupby(keys, sort=True, dropna=False)
    table = grouped.size().rename("runs").to_frame()
    energy = {c: label for c, label in ENERGY_MEASURES.items() if c in runs.columns and runs[c].notna().any()}
    for column, label in {**MEASURES, **energy}.items():
        values = grouped[column]
        table[label] = values.median()
        table[f"{label} IQR"] = values.quantile(0.75) - values.quantile(0.25)
    table = table.reset_index()
    if "workload" in keys:
        within = "recipe" if "recipe" in keys else None
        differs = _differs(runs, within)
        if any(differs.values()):
            places = table[within] if within else [None] * len(table)
            labels = [differs.get((place, w), "") for place, w in zip(places, table["workload"], strict=True)]
            table.insert(keys.index("workload") + 1, "differs", labels)
    return table


def _differs(runs: pd.DataFrame, within: str | None) -> dict[tuple[Any, str], str]:
    """(recipe, workload key) -> what sets it apart from the recipe's other workloads ("" when it is alone)."""
    labels: dict[tuple[Any, str], str] = {}
    groups = runs.groupby(within, sort=False) if within else [(None, runs)]
    for place, group in groups:
        descriptions = dict(zip(group["workload"], group["workload_description"], strict=True))
        if len(descriptions) < 2:
            continue
        varying = workload.varying(list(descriptions.values()))
        for key, description in descriptions.items():
            labels[place, key] = workload.label(description, varying)
    return labels


def sort_table(table: pd.DataFrame, spec: str | None) -> pd.DataFrame:
    """``--sort COLUMN`` or ``COLUMN:desc``; a column may be named by label or by measure name."""
    if not spec:
        return table
    name, _, order = spec.partition(":")
    if order not in ("", "asc", "desc"):
        raise UsageError(f"--sort {spec}: the order after ':' must be asc or desc")
    column = MEASURES.get(name, name)  # train_img_s and "train img/s" name the same column
    if column not in table.columns:
        raise UsageError(f"cannot sort by {name!r}: columns are {', '.join(map(str, table.columns))}")
    return table.sort_values(column, ascending=order != "desc", kind="stable").reset_index(drop=True)


def render(table: pd.DataFrame, fmt: str) -> str:
    """The table in one of :data:`FORMATS`, made by tabulate or pandas.

    Machine formats (csv, json) keep full precision; the others show four
    significant digits without exponents (``11820``, not ``1.182e+04``).
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=2) + "\n"
    tablefmt = {"text": "simple", "markdown": "pipe", "latex": "latex_booktabs"}.get(fmt, fmt)
    shown = table.map(_significant).astype(object)
    shown = shown.where(table.notna(), None)  # NaN prints as an empty cell
    return tabulate(shown, headers="keys", tablefmt=tablefmt, floatfmt="g", showindex=False) + "\n"


def _significant(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return round(value, digits - 1 - math.floor(math.log10(abs(value))))
    return value


def write_output(text: str, output: Path | None) -> None:
    """To ``output`` when given (its folder must exist), else to stdout."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


# -- the command ------------------------------------------------------------------


def choice_type(choices: Sequence[str], what: str) -> Callable[[str], str]:
    """An argparse type that refuses unknown values with one line naming the known ones."""

    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}: use one of {', '.join(choices)}")
        return text

    return parse


def add_command(commands, plugin_flag) -> None:
    parser = commands.add_parser("report", help="summarise run records: medians and IQRs per recipe/device/variant")
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="record files or folders [results/]")
    parser.add_argument(
        "--format", type=choice_type(FORMATS, "format"), default="text", help=f"{'|'.join(FORMATS)} [text]"
    )
    parser.add_argument(
        "--group-by",
        default=",".join(DEFAULT_GROUP_BY),
        metavar="COLS",
        help="comma-separated columns, e.g. recipe,device,precision or recipe,git_commit [recipe,device,variant]",
    )
    parser.add_argument("--sort", metavar="COLUMN[:desc]", help="sort rows by a column, e.g. 'train_img_s:desc'")
    parser.add_argument("--include-failed", action="store_true", help="count runs of every status, by status")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write the table to FILE instead of stdout")
    parser.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    runs = load_runs(args.paths or [Path("results")]).runs
    group_by = [c.strip() for c in args.group_by.split(",") if c.strip()]
    if not group_by:
        raise UsageError("--group-by needs at least one column")
    if args.include_failed and "status" not in group_by:
        group_by.append("status")  # a failed run's timings must not mix with ok ones
    runs = select_status(runs, args.include_failed)
    if runs.empty:
        raise UsageError("no run finished ok; --include-failed shows the others")
    table = sort_table(summarize(runs, group_by), args.sort)
    write_output(render(table, args.format), args.output)
    return 0


# -- the table a run or a suite ends with -------------------------------------------------


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def run_table(records: Sequence[RunRecord | Mapping[str, Any]], settings: Sequence[str] | None = None) -> str:
    """Median [IQR] per recipe, device and variant; runs that did not finish, with their reason.

    ``records`` are records or their dicts (as read back from files); ``settings``, one label per record,
    also splits the groups (a suite's runs of one recipe may differ in more than device and variant).
    """
    dicts = [r.to_dict() if isinstance(r, RunRecord) else r for r in records]
    import pandas as pd

    runs = pd.DataFrame([flatten(r, Path(str(r.get("run_id")))) for r in dicts])
    keys = ["recipe", "device", "variant", "workload", *(["setting"] if settings is not None else [])]
    if settings is not None:
        runs["setting"] = list(settings)
    rows = []
    ok = runs[runs["status"] == "ok"]
    shown = [k for k in keys if k != "workload"]  # split by it, but named by what differs (if anything)
    if len(ok):
        for _, group in summarize(ok, keys).iterrows():
            # What sets workloads apart, unless a suite's setting labels already say it.
            differs = ["differs"] if "differs" in group and settings is None else []
            row = {k: group[k] for k in (*shown, *differs, "runs")}
            row["status"] = "ok"
            for label in MEASURES.values():
                spread = f" [{_short(group[label + ' IQR'])}]" if group["runs"] > 1 else ""
                row[label] = f"{_short(group[label])}{spread}"
            rows.append(row)
    for _, run in runs[runs["status"] != "ok"].iterrows():
        rows.append({k: run[k] for k in shown} | {"runs": 1, "status": f"{run['status']}: {run['error']}"})
    note = "median [IQR] over repeats" if any(r.get("runs", 1) > 1 for r in rows) else ""
    return tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True) + (f"\n({note})" if note else "")
