"""Arrays an evaluation keeps in the cache folder (``EvaluationInput.cache``): saved whole, checked when read.

One ``.npz`` file per name and key under ``CACHE/evaluations/`` (NumPy's own format, read without pickle),
holding the arrays and the key they were saved under. A file is used only when it reads back completely (the
zip format checks every member's CRC-32) and its stored key equals the key asked for; anything else is
ignored with a warning, and the evaluation makes the arrays again and saves them over it. Writes go to a
temporary file beside the target and are renamed over it, so a reader in another process never sees half a
file, and a write killed midway leaves only a temporary file, removed by a later run.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..files import remove_stale_temp_files, temp_file

#: The cache folder's subfolder for evaluations' arrays.
FOLDER = "evaluations"

#: The member holding the key (JSON text as bytes); no array of an evaluation may take this name.
KEY_MEMBER = "__key__"

#: Bumped when the file layout changes: files of another layout are rebuilt.
FORMAT = 1


def key_text(name: str, key: Mapping[str, Any]) -> str:
    """The key as stored: canonical JSON of the name, the format and the caller's key."""
    return json.dumps({"format": FORMAT, "name": name, "key": key}, sort_keys=True, separators=(",", ":"))


class FolderArrayCache:
    """:class:`cifar_bench.hooks.evaluations.ArrayCache` over a folder; ``folder=None``: nothing is kept."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = None if folder is None else Path(folder) / FOLDER
        if self.folder is not None:
            remove_stale_temp_files(self.folder, ".*.npz.*.tmp")  # left by a write killed midway

    def path(self, name: str, key: Mapping[str, Any]) -> Path | None:
        """Where the arrays of ``name`` under ``key`` are kept (the key's hash names the file)."""
        if self.folder is None:
            return None
        digest = hashlib.sha256(key_text(name, key).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        return self.folder / f"{safe}-{digest}.npz"

    def load(self, name: str, key: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        """The arrays saved under ``name`` and ``key``, read in full; None when absent or not trustworthy."""
        path = self.path(name, key)
        if path is None or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:  # never unpickle: arrays only
                if KEY_MEMBER not in stored.files:
                    raise ValueError("it is not a cifar-bench evaluation cache")
                if bytes(stored[KEY_MEMBER]).decode() != key_text(name, key):
                    raise ValueError("it was saved under another key")
                return {member: stored[member] for member in stored.files if member != KEY_MEMBER}
        except Exception as exc:  # a damaged or foreign file is made again, never trusted
            warnings.warn(f"ignoring evaluation cache {path}: {_reason(exc)}; making it again", stacklevel=2)
            return None

    def save(self, name: str, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Keep ``arrays`` under ``name`` and ``key``, whole or not at all; an unwritable folder only warns."""
        path = self.path(name, key)
        if path is None:
            return
        if KEY_MEMBER in arrays:
            raise ValueError(f"an evaluation's array may not be named {KEY_MEMBER!r}")
        members = {KEY_MEMBER: np.frombuffer(key_text(name, key).encode(), dtype=np.uint8), **arrays}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = temp_file(path)
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **members)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:  # the next run makes them again: slower, not wrong
            warnings.warn(f"could not write evaluation cache {path}: {exc}", stacklevel=2)


def _reason(exc: BaseException) -> str:
    """Why a cache file was refused, in one line."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
