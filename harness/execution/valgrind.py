"""Starting a command under valgrind's callgrind so that it can count its own instructions.

The launching half of ``cifar-bench run --measure instructions`` (the counting half, and why this
mechanism, is ``training/callgrind.py``): can valgrind run here (:func:`valgrind_problem`, one line naming
what to install when not), the command line and environment that make counts reproducible
(:func:`reexec_command`), and :func:`run_counted`, which runs a command that way and hands its exit code
back.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from ..training.callgrind import (
    INSTALL_HINT,
    LIBRARY_ENV,
    OUT_DIR_ENV,
    SMOKE_TIMEOUT_S,
    TOOL,
    CountingError,
    build_library,
    under_valgrind,
    valgrind_path,
)

HASH_SEED = "0"  # PYTHONHASHSEED under valgrind: str/bytes hashing, hence dict and set order, fixed
#: One thread for every numeric library: under valgrind threads are serialised and interleaved on
#: valgrind's schedule, so worker threads would make counts differ from run to run.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
#: glibc malloc settings under valgrind. A default malloc's cost per call depends on the heap's history
#: (bin searches, consolidation, a self-adjusting mmap threshold), so the same step counted in two processes
#: whose environments differ by a few bytes differed by 0.11% (training) and 0.49% (evaluation). With
#: every block of 4 KiB or more mmap'd, an unbounded tcache and no fastbins, 0.022% and 0.027%.
MALLOC_TUNABLES = (
    "glibc.malloc.mmap_threshold=4096:"  # bytes; a fixed threshold also stops glibc raising it as it goes
    "glibc.malloc.tcache_count=65535:"  # blocks per size class kept for reuse (the most glibc allows)
    "glibc.malloc.mxfast=0:"  # bytes: no fastbins, hence no consolidation passes
    "glibc.malloc.trim_threshold=4294967295"  # bytes: never give the heap's top back mid-run
)
DUMP_PATTERN = "callgrind.out.%p"  # %p: the pid; callgrind appends .1, .2 ... one per dump
LOG_PATTERN = "valgrind.%p.log"  # valgrind's own messages, kept off the command's stderr


def valgrind_problem() -> str | None:
    """Why instructions cannot be counted on this machine, in one line; None when they can.

    Checks, in order: the platform, valgrind on PATH, that callgrind actually runs a
    trivial program here, and that the request library compiles (a C compiler and
    valgrind's headers). The answer is cached for the process.
    """
    return _problem()


@functools.lru_cache(maxsize=1)
def _problem() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"instruction counting needs Linux with valgrind; this is {sys.platform}"
    path = valgrind_path()
    if path is None:
        return INSTALL_HINT
    smoke = _smoke_test(path)
    if smoke is not None:
        return smoke
    try:
        build_library()
    except CountingError as error:
        return str(error)
    return None


def _smoke_test(path: str) -> str | None:
    """Runs ``true`` under callgrind; None when that works, else a one-line reason."""
    true = shutil.which("true") or "/bin/true"
    command = [path, f"--tool={TOOL}", "--callgrind-out-file=/dev/null", "-q", true]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"valgrind cannot run on this machine ({platform.machine()}): {error}"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no message"])[-1]
        return f"valgrind cannot run on this machine ({platform.machine()}): {last}"
    return None


def reexec_command(argv: Sequence[str], out_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run ``argv`` under callgrind, dumps going to ``out_dir``.

    ``argv[0]`` must be a native executable such as ``sys.executable``: valgrind
    follows no exec, so a shell wrapper (a pyenv shim, ``env python``) would be
    counted instead of Python. Instrumentation is off at start; :class:`counting`
    switches it on. The environment pins one thread, the hash seed and malloc's
    settings (MALLOC_TUNABLES), and passes the compiled request library (built here,
    natively, in a fraction of a second).
    Raises CountingError when valgrind cannot count here.
    """
    problem = valgrind_problem()
    if problem is not None:
        raise CountingError(problem)
    executable = shutil.which(argv[0]) if argv else None
    if executable is None or not _is_native(Path(executable)):
        raise ValueError(f"{argv[0] if argv else '(nothing)'} is not a native executable: pass sys.executable")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(valgrind_path()),
        f"--tool={TOOL}",
        "--instr-atstart=no",  # imports and setup run uninstrumented: about 5x faster
        "--dump-line=no",  # per-function totals are enough; keeps each dump small
        "--trace-children=no",  # children (a compiler, git) run natively and are not counted
        f"--callgrind-out-file={out_dir / DUMP_PATTERN}",
        f"--log-file={out_dir / LOG_PATTERN}",
        executable,
        *argv[1:],
    ]
    env = {**os.environ, **SINGLE_THREAD_ENV, "PYTHONHASHSEED": HASH_SEED}
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), MALLOC_TUNABLES]))  # last wins
    env[LIBRARY_ENV] = str(build_library())
    env[OUT_DIR_ENV] = str(out_dir)
    return command, env


def _is_native(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def valgrind_log(out_dir: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of valgrind's own log(s) in ``out_dir``: what to show when the child failed."""
    text = [line for p in sorted(Path(out_dir).glob("valgrind.*.log")) for line in p.read_text().splitlines()]
    return "\n".join(text[-lines:])


def in_counted_process() -> bool:
    """Whether this process is the counted one :func:`run_counted` started (under valgrind, dumps folder set)."""
    return bool(os.environ.get(OUT_DIR_ENV)) and under_valgrind()


def run_counted(argv: Sequence[str]) -> int:
    """Runs ``argv`` under callgrind (see :func:`reexec_command`) and returns its exit code.

    Its output goes straight to this process's; its dumps to a temporary folder, removed afterwards (the
    counted process reads its own counts into its record). When it fails, the end of valgrind's own log
    is shown. Refuses (UsageError, exit 2, one line naming the package) where valgrind cannot count.
    """
    problem = valgrind_problem()
    if problem is not None:
        raise UsageError(f"--measure instructions runs under valgrind, which cannot run here: {problem}")
    with tempfile.TemporaryDirectory(prefix="cifar-bench-callgrind-") as out_dir:
        try:
            command, env = reexec_command(argv, Path(out_dir))
        except CountingError as error:
            raise UsageError(str(error)) from error
        try:
            code = subprocess.call(command, env=env)
        except KeyboardInterrupt:  # the child got the Ctrl-C too, and records its run as interrupted
            code = 130
        if code not in (0, 1, 2, 130, 143):  # the counted process itself did not end as the command does
            print(f"valgrind's log:\n{valgrind_log(Path(out_dir))}", file=sys.stderr)
    return code
