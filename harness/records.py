"""The result of a run, as typed records, and how they are stored as JSON.

One run makes one :class:`RunRecord`, written as one JSON file. Writes are
atomic (a temporary file in the same folder, then a rename), so a reader
never sees half a record, even when a run is killed while saving.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: Bumped whenever the layout changes; every older version has a migration below.
#: 1: the first layout. 2: variant fields (precision, channels_last, compile,
#: deterministic), memory, role/reference/timings_ratio, warm-up and per-epoch
#: evaluation timings, epoch accuracy and time to target.
SCHEMA_VERSION = 2

#: What a run can end as. Only ``ok`` runs count in reports by default.
STATUSES = ("ok", "skipped", "failed", "diverged", "interrupted")


@dataclass
class ComponentRef:
    """Which registered component a run used, and the plugin that provided it."""

    name: str
    plugin: str


@dataclass
class DatasetInfo:
    name: str
    fingerprint: str
    train_size: int
    test_size: int
    classes: list[str]
    synthetic: bool = False
    source: str = ""


@dataclass
class Metrics:
    test_accuracy: float | None = None  # fraction of the test set, 0..1
    per_class_accuracy: dict[str, float] = field(default_factory=dict)
    epoch_loss: list[float] = field(default_factory=list)  # mean training loss per epoch
    epoch_accuracy: list[float] = field(default_factory=list)  # after each epoch, with --target-acc
    target_acc: float | None = None
    time_to_target_s: float | None = None  # train seconds when target_acc was first reached
    diverged_at: dict[str, int] | None = None  # {"epoch", "step"} for a diverged run


@dataclass
class Timings:
    """Seconds per phase; each edge waits for the device, so no work leaks across."""

    setup_s: float = 0.0  # data preparation and model build
    warmup_s: float = 0.0  # one step per batch shape, then state restored; torch.compile compiles here
    train_s: float = 0.0  # training steps only
    eval_s: float = 0.0  # the final test-set evaluation
    epoch_eval_s: float = 0.0  # evaluations after each epoch for --target-acc, not in train_s
    total_s: float = 0.0  # wall time of the whole run, setup included
    epoch_train_s: list[float] = field(default_factory=list)


@dataclass
class Throughput:
    train_img_s: float = 0.0  # training images per second of train_s
    eval_img_s: float = 0.0  # test images per second of eval_s


@dataclass
class Memory:
    device_peak_bytes: int | None = None  # CUDA max allocated during the run
    host_peak_rss_bytes: int | None = None  # the process's peak resident set so far


@dataclass
class Environment:
    """The hardware and software a result came from."""

    python: str
    torch: str
    torchvision: str
    platform: str
    cpu: str
    threads: int
    device_name: str
    git_commit: str | None = None
    hostname: str = ""


@dataclass
class RunRecord:
    run_id: str
    status: str
    recipe: str
    components: dict[str, ComponentRef]
    hyperparameters: dict[str, Any]
    seed: int
    device: str
    loader: str
    dataset: DatasetInfo | None
    metrics: Metrics
    timings: Timings
    throughput: Throughput
    environment: Environment
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    memory: Memory = field(default_factory=Memory)
    overrides: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # why a run was skipped, failed, diverged or was interrupted
    started_at: str = ""
    role: str = "candidate"  # or "reference": a run interleaved with --reference
    # {"recipe", "run_id", "train_s", "total_s"} of that reference, and "interleave": "step" (the two took
    # turns step by step) or "run" (one after the other; also what a record without the key means)
    reference: dict[str, Any] | None = None
    timings_ratio: dict[str, float] | None = None  # {"train_s", "total_s"}: this run / its reference
    schema_version: int = SCHEMA_VERSION
    # {"world_size", "backend", "global_batch_size", "per_rank_batch_size", "dropped_per_epoch",
    # "padded_per_epoch"} of a data-parallel run (see distributed.py); None for one process.
    distributed: dict[str, Any] | None = None
    suite_key: str | None = None  # which run of a suite this is (see suite.py); lets a suite resume
    cpu: dict[str, Any] | None = None  # {"threads", "onednn", "tuned_ms_per_step"}: the CPU settings trained with
    cuda_graph: bool = False  # the step's forward and backward replayed as CUDA graphs
    # {"cudnn_benchmark", "cuda_graph", "graphed_shapes", "event_s": {phase: seconds by CUDA events}} on CUDA
    cuda: dict[str, Any] | None = None
    # {"source": "nvml"|"rapl", "scope", "reason": None, "phase_j": {phase: joules}, "run_j", "train_img_per_j",
    # "mean_utilization_pct": {phase: percent} | None}, or {"source": None, "reason": why not measured}
    energy: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # schema_version first: the one key a reader must see before trusting the rest.
        return {"schema_version": data.pop("schema_version"), **data}


def new_run_id(recipe: str, device: str) -> str:
    """A run id that sorts by start time and cannot collide across processes.

    The random suffix is what makes two runs started in the same second by
    two processes writing to one folder still distinct.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{safe_name(recipe)}-{safe_name(device)}-{secrets.token_hex(4)}"


def safe_name(name: str) -> str:
    """A file-name-safe form of a recipe, device or plugin name.

    Only letters, digits, ``.``, ``_`` and ``-`` survive, and no leading dot,
    so a name can never climb out of the results folder.
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+|\.{2,}", "_", name).lstrip(".")
    return cleaned or "_"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` so that it is either all there or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_record(record: RunRecord, results_dir: Path) -> Path:
    """Store ``record`` as ``<results_dir>/<run_id>.json``; returns the path."""
    return write_json_atomic(results_dir / f"{safe_name(record.run_id)}.json", record.to_dict())


class RecordError(ValueError):
    """A file that is not a readable run record; the message names the file."""


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # Version 1 knew only fp32, contiguous, uncompiled, single runs: say so explicitly.
    data = {**data}
    for key, default in (("precision", "fp32"), ("channels_last", False), ("compile", False),
                         ("deterministic", False), ("role", "candidate"), ("reference", None),
                         ("timings_ratio", None)):  # fmt: skip
        data.setdefault(key, default)
    data.setdefault("memory", {"device_peak_bytes": None, "host_peak_rss_bytes": None})
    # Sections of the wrong type are left for the reader to reject; a migration only adds.
    if isinstance(data.get("timings"), dict):
        data["timings"] = {"warmup_s": 0.0, "epoch_eval_s": 0.0, **data["timings"]}
    if isinstance(data.get("metrics"), dict):
        metrics = {"epoch_accuracy": [], "target_acc": None, "time_to_target_s": None, "diverged_at": None}
        data["metrics"] = {**metrics, **data["metrics"]}
    data["schema_version"] = 2
    return data


#: version -> function turning a record of that version into the next one.
MIGRATIONS = {1: _v1_to_v2}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of any older schema up to :data:`SCHEMA_VERSION`, one version at a time."""
    while data["schema_version"] < SCHEMA_VERSION:
        data = MIGRATIONS[data["schema_version"]](data)
    return data


def read_record(path: Path) -> dict[str, Any]:
    """Load one record as a dict in the current schema, refusing files that are not records of a known schema."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not a readable JSON record ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise RecordError(f"{path}: not a cifar-bench run record (no schema_version)")
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < min(MIGRATIONS, default=1):
        raise RecordError(f"{path}: schema_version {version!r} is not one cifar-bench ever wrote")
    if version > SCHEMA_VERSION:
        raise RecordError(
            f"{path}: record schema_version {version!r} is newer than this cifar-bench "
            f"understands ({SCHEMA_VERSION}); upgrade cifar-bench to read it"
        )
    return migrate(data)
