"""The result of a run, as typed records, and how they are stored as JSON.

One run makes one :class:`RunRecord`, written as one JSON file. Writes are
atomic (a temporary file in the same folder, then a rename), so a reader
never sees half a record, even when a run is killed while saving.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: Bumped whenever the layout changes; every older version has a migration below.
#: 1: the first layout. 2: variant fields (precision, channels_last, compile,
#: deterministic), memory, role/reference/timings_ratio, warm-up and per-epoch
#: evaluation timings, epoch accuracy and time to target.
SCHEMA_VERSION = 2


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
    per_class_accuracy: dict[str, float | None] = field(default_factory=dict)  # None: no test images
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
    # From the process's start to this run's start: interpreter, imports, plugins, registry (and earlier runs
    # of the same command); with total_s and the write, what the whole command took. None where unknown.
    startup_s: float | None = None


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
    status: str  # ok, skipped, failed, diverged or interrupted; only ok runs count in reports by default
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
    # {"threads", "onednn", "tuned_ms_per_step", "decision", "measured_at", "key"}: the CPU settings trained
    # with, and whether this run measured them or kept an earlier run's decision (see cpu_tuning.decide)
    cpu: dict[str, Any] | None = None
    # {"key", "components", "hyperparameters", "data", "variant", "world_size"}: the work this run did
    # (see workload.py); only runs with equal keys are compared or summarised together
    workload: dict[str, Any] | None = None
    # The run of another install this one took turns with, step by step ('cifar-bench ab'): {"side", "run_id",
    # "status", "train_s", "version", "install", "git_commit", "protocol"}; None for a run made alone.
    partner: dict[str, Any] | None = None
    # {"train_s": this run's paired steps / the partner's same steps, "step_median": median of the per-step
    # ratios, "steps": steps paired}; None unless both runs ended ok.
    paired_ratio: dict[str, Any] | None = None
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """A record of the current schema back from its JSON form (as a run in another process sent it)."""
        data = dict(data)
        data["components"] = {kind: ComponentRef(**ref) for kind, ref in data["components"].items()}
        data["dataset"] = DatasetInfo(**data["dataset"]) if data.get("dataset") else None
        for name, kind in (("metrics", Metrics), ("timings", Timings), ("throughput", Throughput),
                           ("environment", Environment), ("memory", Memory)):  # fmt: skip
            data[name] = kind(**data[name])
        return cls(**data)


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


#: When this process started: temporary files older than it (less a margin) belong to writes that died.
PROCESS_STARTED = time.time()

#: How much older than this process a temporary file must be to count as left by a dead write.
STALE_MARGIN_S = 60.0


def file_mode() -> int:
    """The mode the umask gives an ordinary new file (``0o644`` under umask 022).

    ``mkstemp`` makes its files ``0600`` whatever the umask, and a rename keeps
    that mode: without this, records in a shared folder are unreadable to
    everyone but their writer.
    """
    try:  # Linux says it without changing anything
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back
    os.umask(umask)
    return 0o666 & ~umask


def temp_file(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path`` (``.NAME.XXXX.tmp``) with an ordinary file's mode."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with contextlib.suppress(OSError):  # a file system without modes (some network mounts): the file still works
        os.fchmod(fd, file_mode())
    return fd, tmp


def remove_stale_temp_files(folder: Path, pattern: str = ".*.tmp") -> list[Path]:
    """Remove the temporary files (``pattern``) that writes killed midway left in ``folder``.

    Only files last changed well before this process started: a write still
    under way in another process keeps changing its file, and is left alone.
    Returns what was removed; a file that cannot be removed stays, silently.
    """
    removed = []
    try:
        candidates = list(Path(folder).glob(pattern))
    except OSError:
        return removed
    for path in candidates:
        try:
            if path.is_file() and path.stat().st_mtime < PROCESS_STARTED - STALE_MARGIN_S:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


def prepare_results_dir(results_dir: Path) -> Path:
    """Create ``results_dir`` (or find it) and prove it writable, before any run starts.

    A probe file is written and removed, so a results folder that is a file,
    under a file, read-only or full is bad input (exit 2) now, not a lost
    record after training. Temporary files of writes killed earlier are
    removed on the way.
    """
    from .errors import UsageError

    where = f"results folder {results_dir}"
    if results_dir.exists() and not results_dir.is_dir():
        raise UsageError(f"{where} is a file, not a folder: give --results-dir a folder")
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = temp_file(results_dir / "write-probe")
        os.close(fd)
        Path(probe).unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"cannot write to {where} ({reason}): give --results-dir a folder you can write to") from None
    remove_stale_temp_files(results_dir)
    return results_dir


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` so that it is either all there or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path)
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
    """Store ``record`` as ``<results_dir>/<run_id>.json``; returns the path.

    A record is never dropped: if the results folder cannot take it (full,
    removed, made read-only during the run), it goes to the first of
    :func:`fallback_dirs` that can, and a warning on stderr says where.
    """
    name, data = f"{safe_name(record.run_id)}.json", record.to_dict()
    try:
        return write_json_atomic(results_dir / name, data)
    except OSError as exc:
        first = exc
    for folder in fallback_dirs():
        try:
            path = write_json_atomic(folder / name, data)
        except OSError:
            continue
        reason = first.strerror or type(first).__name__
        print(f"cifar-bench: warning: cannot write to results folder {results_dir} ({reason}); "
              f"the record is kept at {path}: move it there", file=sys.stderr)  # fmt: skip
        return path
    raise first


def fallback_dirs() -> list[Path]:
    """Where a record goes when its results folder refuses it: here, the cache folder, the temp folder."""
    from .cache import default_cache_dir

    return [Path.cwd() / "cifar-bench-unsaved", default_cache_dir() / "unsaved-records",
            Path(tempfile.gettempdir()) / "cifar-bench-unsaved"]  # fmt: skip


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


def read_json(path: Path) -> Any:
    """Parse a JSON file; anything that stops it being read (but a missing file) is a :class:`RecordError`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        # ValueError covers JSONDecodeError and integers longer than Python converts (4300 digits)
        reason = "nested too deep" if isinstance(exc, RecursionError) else _short(exc)
        raise RecordError(f"{path}: not a readable JSON record ({reason})") from None


def read_record(path: Path) -> dict[str, Any]:
    """Load one record as a dict in the current schema, refusing files that are not sane records of a known schema.

    Whatever is wrong with a file (not JSON, nested too deep, numbers too big
    for a float, a field of the wrong type) ends as one :class:`RecordError`
    naming it, so that every reader skips it the same way and reads the rest.
    """
    try:
        data = read_json(path)
    except FileNotFoundError as exc:
        raise RecordError(f"{path}: not a readable JSON record ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise RecordError(f"{path}: not a cifar-bench run record (no schema_version)")
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < min(MIGRATIONS, default=1):
        raise RecordError(f"{path}: schema_version {_short(version)} is not one cifar-bench ever wrote")
    if version > SCHEMA_VERSION:
        raise RecordError(
            f"{path}: record schema_version {_short(version)} is newer than this cifar-bench "
            f"understands ({SCHEMA_VERSION}); upgrade cifar-bench to read it"
        )
    data = migrate(data)
    problem = record_problem(data)
    if problem:
        raise RecordError(f"{path}: not a usable run record ({problem})")
    return data


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of a value, cut short: a message must stay one readable line whatever the file held."""
    try:
        text = " ".join(str(value).split()) if isinstance(value, BaseException) else repr(value)
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- what a sane record holds -------------------------------------------------------
# Every field that readers use, with the kinds of value it may hold. None is allowed
# everywhere (a skipped run measured nothing); missing fields read as None. Fields not
# listed here may hold any JSON: readers do not look into them.

_STR, _INT, _BOOL, _NUM, _NUMS, _STRS, _SECTION = "str", "int", "bool", "number", "numbers", "strings", "section"

#: Top-level fields and their kinds; sections are checked field by field with :data:`_SECTION_FIELDS`.
_TOP_FIELDS: dict[str, str] = {
    "run_id": _STR, "status": _STR, "recipe": _STR, "device": _STR, "loader": _STR, "precision": _STR,
    "error": _STR, "started_at": _STR, "role": _STR, "suite_key": _STR,
    "seed": _INT, "channels_last": _BOOL, "compile": _BOOL, "deterministic": _BOOL,
    **{name: _SECTION for name in ("components", "hyperparameters", "overrides", "dataset", "metrics", "timings",
                                   "throughput", "environment", "memory", "reference", "timings_ratio",
                                   "distributed", "cpu")},
}  # fmt: skip

_SECTION_FIELDS: dict[str, dict[str, str]] = {
    "dataset": {"name": _STR, "fingerprint": _STR, "source": _STR, "train_size": _INT, "test_size": _INT,
                "synthetic": _BOOL, "classes": _STRS},
    "metrics": {"test_accuracy": _NUM, "target_acc": _NUM, "time_to_target_s": _NUM, "epoch_loss": _NUMS,
                "epoch_accuracy": _NUMS, "per_class_accuracy": _SECTION, "diverged_at": _SECTION},
    "timings": {"epoch_train_s": _NUMS},  # every other timing: a number
    "throughput": {},  # every field: a number
    "timings_ratio": {},  # every field: a number
    "memory": {"device_peak_bytes": _INT, "host_peak_rss_bytes": _INT},
    "environment": {"python": _STR, "torch": _STR, "torchvision": _STR, "platform": _STR, "cpu": _STR,
                    "device_name": _STR, "git_commit": _STR, "hostname": _STR, "threads": _INT},
    "hyperparameters": {"epochs": _INT, "batch_size": _INT},
    "reference": {"recipe": _STR, "run_id": _STR, "interleave": _STR, "train_s": _NUM, "total_s": _NUM},
    "distributed": {"world_size": _INT, "backend": _STR, "global_batch_size": _INT, "per_rank_batch_size": _INT},
}  # fmt: skip

#: Sections whose every field not named above must be a number.
_ALL_NUMBERS = ("timings", "throughput", "timings_ratio")

#: Integers beyond 64 bits are no count, size or seed cifar-bench writes.
_INT_LIMIT = 2**63


def _kind_problem(value: Any, kind: str) -> str | None:
    if value is None:
        return None
    if kind == _STR:
        ok = isinstance(value, str)
    elif kind == _BOOL:
        ok = isinstance(value, bool)
    elif kind == _INT:
        ok = isinstance(value, int) and not isinstance(value, bool) and -_INT_LIMIT <= value < _INT_LIMIT
    elif kind == _NUM:
        ok = _is_number(value)
    elif kind == _NUMS:
        ok = isinstance(value, list) and all(v is None or _is_number(v) for v in value)
    elif kind == _STRS:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:  # a section
        ok = isinstance(value, dict)
    return None if ok else f"expected {'a ' if kind in (_STR, _BOOL, _INT, _NUM, _SECTION) else ''}{kind}"


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer too big for a float
        return False


def record_problem(data: dict[str, Any]) -> str | None:
    """What makes ``data`` no sane record (``"timings.train_s: expected a number"``), or None."""
    if not all(isinstance(data.get(name), str) and data.get(name) for name in ("recipe", "device", "status")):
        return "needs recipe, device and status"
    for name, kind in _TOP_FIELDS.items():
        problem = kind != _SECTION and _kind_problem(data.get(name), kind)
        if problem:
            return f"{name}: {problem}"
    # A section that is not a table at all reads as absent (as in records of older layouts that lack
    # it); a table whose fields have the wrong kinds makes the whole file a bad one.
    for section, fields in _SECTION_FIELDS.items():
        values = data.get(section)
        for name, value in values.items() if isinstance(values, dict) else ():
            kind = fields.get(name, _NUM if section in _ALL_NUMBERS else None)
            problem = kind and _kind_problem(value, kind)
            if problem:
                return f"{section}.{name}: {problem}"
    metrics = data.get("metrics")
    per_class = metrics.get("per_class_accuracy") if isinstance(metrics, dict) else None
    for name, value in per_class.items() if isinstance(per_class, dict) else ():
        if _kind_problem(value, _NUM):
            return f"metrics.per_class_accuracy.{name}: expected a number"
    return None
