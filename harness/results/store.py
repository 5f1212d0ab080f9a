"""Run records on disk: where they go, how they are written (whole, never lost), and how they are read back.

One run, one file: ``<results folder>/<run_id>.json``. Writes are atomic (see ``files.py``) and never drop
a record: a results folder that refuses it sends it to a fallback folder, with a warning saying where.
Reading refuses, one line per file, whatever is no sane record of a known schema, so that every reader
skips it the same way and reads the rest; records of older layouts are brought up to date on the way.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..cache import default_cache_dir
from ..errors import UsageError
from ..files import UnreadableFile, read_json, remove_stale_temp_files, short, temp_file, write_json_atomic
from . import typed
from .schema import SCHEMA_VERSION, RunRecord

#: Kinds of the hyperparameters readers rely on (the rest of the section is free-form).
KNOWN_HYPERPARAMETERS = {"epochs": int, "batch_size": int}

#: The oldest layout this version can still read (each later one is filled in from the schema's defaults).
OLDEST_SCHEMA = 1


class RecordError(ValueError):
    """A file that is not a readable run record; the message names the file."""


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


# -- writing ---------------------------------------------------------------------------------


def prepare_results_dir(results_dir: Path) -> Path:
    """Create ``results_dir`` (or find it) and prove it writable, before any run starts.

    A probe file is written and removed, so a results folder that is a file,
    under a file, read-only or full is bad input (exit 2) now, not a lost
    record after training. Temporary files of writes killed earlier are
    removed on the way.
    """
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
    return [Path.cwd() / "cifar-bench-unsaved", default_cache_dir() / "unsaved-records",
            Path(tempfile.gettempdir()) / "cifar-bench-unsaved"]  # fmt: skip


# -- reading ---------------------------------------------------------------------------------


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of any older schema up to :data:`SCHEMA_VERSION`.

    Every layout change so far only added fields, so a migration fills in what the record lacks with the
    schema's own defaults (version 1 knew only fp32, contiguous, uncompiled, single runs: the defaults say
    exactly that). Sections of the wrong type are left for the reader to reject; a migration only adds.
    """
    data = typed.fill_defaults(RunRecord, data)
    data["schema_version"] = SCHEMA_VERSION
    return data


def record_problem(data: dict[str, Any]) -> str | None:
    """What makes ``data`` no sane record (``"timings.train_s: expected a number"``), or None."""
    if not all(isinstance(data.get(name), str) and data.get(name) for name in ("recipe", "device", "status")):
        return "needs recipe, device and status"
    return typed.problem(RunRecord, data, {"hyperparameters": KNOWN_HYPERPARAMETERS})


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
    except UnreadableFile as exc:
        raise RecordError(f"{path}: not a readable JSON record ({exc.reason})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise RecordError(f"{path}: not a cifar-bench run record (no schema_version)")
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < OLDEST_SCHEMA:
        raise RecordError(f"{path}: schema_version {short(version)} is not one cifar-bench ever wrote")
    if version > SCHEMA_VERSION:
        raise RecordError(
            f"{path}: record schema_version {short(version)} is newer than this cifar-bench "
            f"understands ({SCHEMA_VERSION}); upgrade cifar-bench to read it"
        )
    data = migrate(data)
    problem = record_problem(data)
    if problem:
        raise RecordError(f"{path}: not a usable run record ({problem})")
    return data
