"""Counting the instructions a region of work executes, under valgrind's callgrind.

Wall time on a shared machine wanders by percents; the number of instructions a
training step executes hardly moves. How (chosen after measuring three ways, with
``benchmarks/instructions_probe.py``; figures from a 2-core AMD EPYC, valgrind 3.19):

1. the command re-executes itself under ``valgrind --tool=callgrind
   --instr-atstart=no`` (:func:`reexec_command`): importing torch and building the
   model run uninstrumented (importing torch: 30 s of CPU, against 70 s under full
   instrumentation);
2. inside that process, :class:`counting` switches instrumentation on around exactly
   the counted work and writes one callgrind dump per region, named by its label.
   The switches are callgrind *client requests*: marker instructions in a tiny C
   library (``callgrind_requests.c``) compiled at first use and called through ctypes.
   They act synchronously, at the call, and cost a fixed ~5,000 instructions, so
   the same work in the same process history counts the same to the instruction
   (20 training steps of the tutorial's Net in 5 processes: 152,898,101 each time);
   natively they do nothing;
3. :func:`read_counts` reads the dumps back: label -> instructions (event ``Ir``).

Rejected: ``callgrind_control -i on|off`` run from the process itself (it forks a
perl script and vgdb per switch, counted: 235,000 instructions of overhead and a
1.2% spread between repeats); a cachegrind difference of whole runs with N and 2N
steps (exact to a few thousand instructions, but two fully instrumented processes
per count, each over 2 minutes, and it also counts whatever the extra steps shift
elsewhere in the process).

Counts are only reproducible when the process is deterministic: one thread (valgrind
serialises threads and switches between them on its own schedule: a sleeping monitor
thread spread a loop's counts by 0.12%), a fixed ``PYTHONHASHSEED``, no timers firing
inside the region, and the same history before it (glibc's malloc costs depend on
the heap's past, hence MALLOC_TUNABLES). :func:`reexec_command` sets the environment
for that; the caller keeps data loader workers, progress-bar monitors, samplers and
timers out of the counted process.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# --- constants ------------------------------------------------------------------------------------

TOOL = "callgrind"  # the valgrind tool that counts; recorded beside every count
MECHANISM = "callgrind client requests"  # how the counted region is delimited, for the record
INSTALL_HINT = "install valgrind (apt-get install valgrind)"  # the one line when valgrind is absent
COMPILER_HINT = "install a C compiler (apt-get install gcc)"
HEADER_HINT = "install valgrind's headers (apt-get install valgrind; valgrind-devel on Fedora)"

#: Path of the compiled request library; set by reexec_command so the child need not compile.
LIBRARY_ENV = "CIFAR_BENCH_CALLGRIND_LIB"
#: Set in the child's environment: the folder its callgrind dumps go to.
OUT_DIR_ENV = "CIFAR_BENCH_INSTRUCTIONS_DIR"
#: Overrides the cache folder, as for the rest of cifar-bench.
CACHE_ENV = "CIFAR_BENCH_CACHE"

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
SMOKE_TIMEOUT_S = 60  # seconds: a trivial program under callgrind starts in under one
COMPILE_TIMEOUT_S = 120  # seconds for the C compiler
SOURCE_NAME = "callgrind_requests.c"
INTERFACE_VERSION = 1  # must equal cb_interface_version() in the C source
LABEL_RE = re.compile(r"[A-Za-z0-9_.:/=+-]{1,100}")  # labels land in a file's trigger line

_DUMP_FILE_RE = re.compile(r"callgrind\.out\.(\d+)\.(\d+)$")
_TRIGGER_PREFIX = "desc: Trigger: Client Request: "


class CountingError(RuntimeError):
    """Instructions cannot be counted here; the message is one line saying what to install or fix."""


# --- can valgrind run here? -----------------------------------------------------------------------


def valgrind_path() -> str | None:
    """The valgrind executable on PATH, or None."""
    return shutil.which("valgrind")


@functools.lru_cache(maxsize=1)
def valgrind_version() -> str | None:
    """valgrind's version, e.g. ``"3.19.0"``; None when it is absent or does not answer."""
    path = valgrind_path()
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().removeprefix("valgrind-") or None


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


# --- the request library --------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where compiled request libraries are kept: ``$CIFAR_BENCH_CACHE/callgrind``, else under XDG/~/.cache."""
    if os.environ.get(CACHE_ENV):
        base = Path(os.environ[CACHE_ENV])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cifar-bench"
    return base / "callgrind"


def _source() -> bytes:
    return (Path(__file__).with_name(SOURCE_NAME)).read_bytes()


def _compiler() -> str | None:
    """$CC when set, else cc, gcc or clang from PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((found for name in ("cc", "gcc", "clang") if (found := shutil.which(name))), None)


def _include_dirs() -> list[str]:
    """Folders holding ``valgrind/callgrind.h``: beside the valgrind install first, then the system's."""
    candidates = []
    if (path := valgrind_path()) is not None:
        candidates.append(Path(path).resolve().parent.parent / "include")
    candidates += [Path("/usr/local/include"), Path("/usr/include")]
    return [str(c) for c in candidates if (c / "valgrind" / "callgrind.h").is_file()]


def build_library(directory: Path | None = None) -> Path:
    """Compiles the request library if no build matches, and returns its path.

    The build is keyed by a hash of the C source, the valgrind version, the header and
    the machine, so a new valgrind or an edited source gets a fresh build; it is
    written under a temporary name and renamed, so concurrent first uses are safe.
    Raises CountingError (one line: what to install) when it cannot be built.
    """
    source, includes, compiler = _source(), _include_dirs(), _compiler()
    if compiler is None:
        raise CountingError(f"no C compiler to build the callgrind request helper: {COMPILER_HINT}")
    if not includes:
        raise CountingError(f"valgrind/callgrind.h not found: {HEADER_HINT}")
    key = hashlib.sha256()
    for part in (source, (valgrind_version() or "").encode(), platform.machine().encode()):
        key.update(part)
    key.update((Path(includes[0]) / "valgrind" / "callgrind.h").read_bytes())
    folder = (directory or cache_dir()) / key.hexdigest()[:16]
    target = folder / "libcallgrind_requests.so"
    if target.is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _compile(compiler, source, includes[0], folder, target)
    except OSError as error:  # a read-only home in CI, a full disk
        raise CountingError(f"cannot build the callgrind request helper in {folder} ({error}); "
                            f"set {CACHE_ENV} to a writable folder") from error  # fmt: skip
    return target


def _compile(compiler: str, source: bytes, include: str, folder: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        src, out = Path(scratch) / SOURCE_NAME, Path(scratch) / target.name
        src.write_bytes(source)
        command = [compiler, "-O2", "-shared", "-fPIC", f"-I{include}", "-o", str(out), str(src)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise CountingError(f"building the callgrind request helper failed: {error}") from error
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no message"])[0]
            raise CountingError(f"building the callgrind request helper failed: {first}")
        os.replace(out, target)  # atomic: a concurrent build of the same key writes the same bytes


class _Requests:
    """The loaded library, its functions bound once so a counted region pays no attribute lookups."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        if lib.cb_interface_version() != INTERFACE_VERSION:
            raise CountingError(f"{path} is a stale build of the callgrind request helper; delete it")
        self.running_on_valgrind = lib.cb_running_on_valgrind
        self.start = lib.cb_count_start
        self.stop = lib.cb_count_stop
        self.stop.argtypes = [ctypes.c_char_p]
        self.abandon = lib.cb_count_abandon


@functools.lru_cache(maxsize=1)
def _requests() -> _Requests:
    path = os.environ.get(LIBRARY_ENV)
    return _Requests(Path(path) if path else build_library())


# --- inside the measured process ------------------------------------------------------------------


def _preloads_valgrind() -> bool:
    # valgrind preloads its vgpreload_*.so into every client and removes it for children it does
    # not follow, so this says "maybe" cheaply without compiling anything.
    return "vgpreload" in os.environ.get("LD_PRELOAD", "")


def under_valgrind() -> bool:
    """True when this process runs under valgrind (asked of valgrind itself through the library)."""
    if not _preloads_valgrind():
        return False
    return bool(_requests().running_on_valgrind())


def thread_count() -> int:
    """Threads in this process (native ones too, from /proc/self/task); 0 where that cannot be read."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


class counting:
    """Counts the instructions of the ``with`` block into one callgrind dump named ``label``.

    Outside valgrind it does nothing (the block runs as usual). Under valgrind, the
    block's instructions are counted, plus a fixed overhead of a few thousand (the
    ctypes calls and the ``with`` statement); the dump is written as the block ends,
    read it with :func:`read_counts`. A block that raises is not dumped. Regions may
    not nest (callgrind has one switch per process).
    """

    _active = False  # class-wide: callgrind has one instrumentation switch per process

    def __init__(self, label: str) -> None:
        if not LABEL_RE.fullmatch(label):
            raise ValueError(f"label {label!r}: use 1-100 of A-Z a-z 0-9 _ . : / = + -")
        self.label = label
        self._encoded = label.encode()
        self._requests: _Requests | None = None

    def __enter__(self) -> counting:
        if counting._active:  # checked natively too, so that a nesting bug shows before valgrind runs
            raise RuntimeError(f"counting({self.label!r}) inside another counted region")
        requests = _requests() if under_valgrind() else None
        counting._active, self._requests = True, requests
        if requests is not None:
            requests.start()  # the last thing before the block: what follows is counted
        return self

    def __exit__(self, kind, value, traceback) -> None:
        requests, self._requests = self._requests, None
        counting._active = False
        if requests is None:
            return
        if kind is None:
            requests.stop(self._encoded)
        else:
            requests.abandon()


# --- launching and reading back -------------------------------------------------------------------


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


@dataclass(frozen=True)
class Dump:
    """One counted region as callgrind wrote it: its label, instructions (Ir), process id and dump number."""

    label: str
    instructions: int
    pid: int
    part: int
    path: Path


def parse_dump(text: str) -> tuple[str, int] | None:
    """(label, instructions) from one callgrind dump's text; None for dumps no counting region wrote.

    The label comes from the ``desc: Trigger: Client Request: LABEL`` line, the count
    from the ``totals:`` line (else ``summary:``) at the position of event ``Ir`` in
    the ``events:`` line. The dump callgrind writes at program end is skipped: its
    totals are meaningless once instrumentation was switched off (it can even be negative).
    """
    label = events = total = None
    for line in text.splitlines():
        if line.startswith(_TRIGGER_PREFIX):
            label = line[len(_TRIGGER_PREFIX) :].strip()
        elif line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("totals:") or (line.startswith("summary:") and total is None):
            total = line.split()[1:]
    if label is None or events is None or total is None or "Ir" not in events:
        return None
    return label, int(total[events.index("Ir")])


def read_dumps(out_dir: Path) -> list[Dump]:
    """Every counted region's dump in ``out_dir``, ordered by process id then dump number."""
    dumps = []
    for path in Path(out_dir).iterdir():
        match = _DUMP_FILE_RE.search(path.name)
        if match is None:
            continue
        parsed = parse_dump(path.read_text(errors="replace"))
        if parsed is not None:
            dumps.append(Dump(parsed[0], parsed[1], int(match[1]), int(match[2]), path))
    return sorted(dumps, key=lambda d: (d.pid, d.part))


def read_counts(out_dir: Path) -> dict[str, int]:
    """Instructions per label from the dumps in ``out_dir``; ValueError when a label was counted twice."""
    counts: dict[str, int] = {}
    for dump in read_dumps(out_dir):
        if dump.label in counts:
            raise ValueError(f"label {dump.label!r} was counted more than once in {out_dir}")
        counts[dump.label] = dump.instructions
    return counts


def valgrind_log(out_dir: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of valgrind's own log(s) in ``out_dir``: what to show when the child failed."""
    text = [line for p in sorted(Path(out_dir).glob("valgrind.*.log")) for line in p.read_text().splitlines()]
    return "\n".join(text[-lines:])


def measurement_info() -> dict[str, str | None]:
    """What to record beside the counts: tool, valgrind version, mechanism, machine architecture, malloc settings.

    Counts are comparable only between measurements that agree on all of these.
    """
    return {
        "tool": TOOL,
        "valgrind": valgrind_version(),
        "mechanism": MECHANISM,
        "arch": platform.machine(),
        "malloc": MALLOC_TUNABLES,
    }


__all__ = [
    "CountingError",
    "Dump",
    "build_library",
    "counting",
    "measurement_info",
    "parse_dump",
    "read_counts",
    "read_dumps",
    "reexec_command",
    "thread_count",
    "under_valgrind",
    "valgrind_log",
    "valgrind_path",
    "valgrind_problem",
    "valgrind_version",
]
