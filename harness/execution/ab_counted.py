"""``ab`` with ``run --measure instructions``: each install's counted run in turn, on one identical command line.

Counts need no turns: an instruction count does not depend on what runs beside it, so the lockstep of
``ab.py`` (which exists to share the machine's noise between two timed sides) buys nothing here. What a
count does depend on is the counted process's own inputs: a results folder of another name moved a
step's count by up to 0.068% (docs/comparing.md, "Counting instructions"), because the name's bytes are
hashed and allocated in the process. So both sides run the very same arguments, down to the results
folder: one staging folder, emptied between the sides, whose records are then moved to ``--results-a``
and ``--results-b``. Only the command that starts each side differs.

The sides run one after the other, a first; each is an ordinary ``run`` of its own install, which starts
itself again under valgrind. A side that refuses its flags (exit 2) stops the command with one line
naming the side; a side whose run failed still has its records moved, so nothing is lost.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..files import read_json, write_json_atomic
from ..results.store import prepare_results_dir

#: Exit codes of a side's ``run`` that still leave records worth moving: ok, a failed run, Ctrl-C, SIGTERM.
RECORDED_CODES = (0, 1, 130, 143)


@dataclass(frozen=True)
class CountedSide:
    """One side's counted run: its name, exit code and the records moved to its results folder."""

    name: str
    code: int
    records: tuple[Path, ...]


def wants_counts(run_argv: list[str]) -> bool:
    """Whether ``run RECIPE [flags]`` asks for ``--measure instructions`` (either spelling)."""
    for i, token in enumerate(run_argv):
        if token == "--measure" and run_argv[i + 1 : i + 2] == ["instructions"]:
            return True
        if token == "--measure=instructions":
            return True
    return False


def count_sides(commands: dict[str, str], run_argv: list[str], results: dict[str, Path]) -> list[CountedSide]:
    """Runs ``run_argv`` counted with each side's command (a first), each moving its records to ``results``."""
    for folder in results.values():
        prepare_results_dir(folder)  # a folder that cannot take the records: exit 2 now, not after counting
    sides = []
    with tempfile.TemporaryDirectory(prefix="cifar-bench-ab-counted-") as staging:
        counted = Path(staging) / "records"  # the same path on both sides' command lines
        for name, command in commands.items():
            argv = [*shlex.split(command), *run_argv, "--results-dir", str(counted)]
            try:
                code = subprocess.call(argv)
            except FileNotFoundError:
                raise UsageError(f"side {name}'s command {command!r} was not found: give --{name} a cifar-bench "
                                 "command (e.g. venv/bin/cifar-bench)") from None  # fmt: skip
            except KeyboardInterrupt:  # the side got the Ctrl-C too and records its run as interrupted
                code = 130
            moved = _move_records(counted, results[name])
            sides.append(CountedSide(name, code, moved))
            if code == 130:
                raise KeyboardInterrupt
            if code not in RECORDED_CODES:
                raise UsageError(f"side {name} ({command}) refused the run (exit {code}; its message is above): "
                                 "fix its flags or install, then run ab again")  # fmt: skip
    return sides


def _move_records(staged: Path, destination: Path) -> tuple[Path, ...]:
    """Each record staged by a side, written whole into ``destination`` and then removed from the staging folder."""
    moved = []
    for path in sorted(staged.glob("*.json")) if staged.is_dir() else []:
        moved.append(write_json_atomic(destination / path.name, read_json(path)))
        path.unlink()
    if staged.is_dir():
        shutil.rmtree(staged)
    return tuple(moved)


def counts_of(record: Path) -> dict[str, object]:
    """The counted figures of one record, for the side-by-side table: status and the ``instructions`` section."""
    data = json.loads(record.read_text())
    return {"status": data.get("status"), **(data.get("instructions") or {})}
