"""Files written whole or not at all, and read back safely: what records, caches and decisions share.

A write goes to a temporary file beside its target, is flushed to disk, then renamed over the target, so a
reader never sees half a file, even when the writer is killed while saving. Temporary files that such a
killed write left behind are removed later (:func:`remove_stale_temp_files`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


class UnreadableFile(ValueError):
    """A file that exists but cannot be read as JSON; the message names it and says why in one line."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: not readable JSON ({reason})")
        self.path, self.reason = path, reason


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


def read_json(path: Path) -> Any:
    """Parse a JSON file; anything that stops it being read (but a missing file) is a :class:`UnreadableFile`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        # ValueError covers JSONDecodeError and integers longer than Python converts (4300 digits)
        reason = "nested too deep" if isinstance(exc, RecursionError) else short(exc)
        raise UnreadableFile(path, reason) from None


def short(value: Any, limit: int = 80) -> str:
    """``repr`` of a value, cut short: a message must stay one readable line whatever the file held."""
    try:
        text = " ".join(str(value).split()) if isinstance(value, BaseException) else repr(value)
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
