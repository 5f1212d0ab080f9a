"""Reading run records: files and folders of JSON records in, one flat pandas DataFrame out, one row per run.

Every command that reads records (``report``, ``compare``, ``plot``, ``publish``, ``regressions``) and
the Python API's ``load_runs`` read them here. Records from an older schema may lack fields (they read as
missing, never as a crash); records from a newer schema, or files that are not records at all, are
reported by name and the rest are read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, warn
from ..hooks.components import COMPONENT_KINDS  # each a column of its own (--group-by model)
from . import evaluations, workload
from .store import RecordError, read_record
from .variant import Variant

if TYPE_CHECKING:  # pandas is imported when records are read: the command line is built without it
    import pandas as pd

#: Columns that hold whole structures, not values to group or sort by.
STRUCTURED = ("epoch_loss", "hyperparameters", "workload_description", "evaluations")

#: Environment fields whose differences mean two results are not like for like.
ENVIRONMENT_FIELDS = ("cpu", "device_name", "threads", "python", "torch", "torchvision")

#: The nested parts of a record that flatten() reads; the last two come from ``run --reference``.
SECTIONS = ("timings", "throughput", "metrics", "environment", "dataset", "hyperparameters", "reference",
            "timings_ratio")  # fmt: skip


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
    variant = Variant.from_mapping(data)
    world = _section(data, "distributed").get("world_size")
    world_size = world if isinstance(world, int) and not isinstance(world, bool) and world > 1 else 1
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
        **variant.to_dict(),
        "world_size": world_size,
        "variant": variant.label(world_size),
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
        **_metric_fields(metrics),
        **{name: env.get(name) for name in (*ENVIRONMENT_FIELDS, "git_commit", "hostname")},
        "reference_recipe": reference.get("recipe"),
        "reference_run_id": reference.get("run_id"),
        "reference_interleave": reference.get("interleave", "run") if reference.get("run_id") else None,
        "ratio_train_s": _number(ratios.get("train_s")),
        "ratio_total_s": _number(ratios.get("total_s")),
        "error": data.get("error"),
        **_measurement_fields(data),
    }


def _measurement_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """What 'ab', 'run --measure instructions' and 'run --evaluate' add to a run, as columns."""
    paired = _section(data, "paired_ratio")
    instructions = _section(data, "instructions")
    return {
        # From 'cifar-bench ab': the run of the other install this one took turns with, and the ratios.
        "partner_run_id": _section(data, "partner").get("run_id"),
        "paired_step_median": _number(paired.get("step_median")),
        "paired_train_s": _number(paired.get("train_s")),
        # From 'run --measure instructions': counted under valgrind, instead of timed.
        "instructions_per_step": _number(instructions.get("per_step")),
        "instructions_per_eval_image": _number(instructions.get("per_eval_image")),
        # From 'run --evaluate': the whole section, and each metric as an EVALUATION.METRIC column.
        "evaluations": dict(_section(data, "evaluations")),
        **evaluations.metric_values(data.get("evaluations")),
    }


def _metric_fields(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Test accuracy (a fraction, and in points), loss per epoch, and run --target-acc's target and time to it."""
    accuracy = _number(metrics.get("test_accuracy"))
    return {
        "test_accuracy": accuracy,
        "test_accuracy_pct": 100 * accuracy,
        "epoch_loss": _numbers(metrics.get("epoch_loss")),
        # run --target-acc: the target (a fraction) and the train seconds to first reach it (NaN: never reached).
        "target_acc": _number(metrics.get("target_acc")),
        "time_to_target_s": _number(metrics.get("time_to_target_s")),
    }


def _component_name(ref: Any) -> str | None:
    return str(ref.get("name")) if isinstance(ref, Mapping) and ref.get("name") is not None else None


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    try:
        return float(value)
    except OverflowError:  # an integer too big for a float (read_record refuses such files)
        return math.nan


def _numbers(value: Any) -> list[float]:
    return [_number(v) for v in value] if isinstance(value, list) else []


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
