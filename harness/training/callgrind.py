"""Counting the instructions a region of work executes, inside a process valgrind's callgrind runs.

The in-process half of ``cifar-bench run --measure instructions`` (the other half, which starts the
process under valgrind, is ``execution/valgrind.py``). Wall time on a shared machine wanders by percents;
the number of instructions a training step executes hardly moves. How (chosen after measuring three ways,
with ``benchmarks/instructions_probe.py``; figures from a 2-core AMD EPYC, valgrind 3.19):

1. the command re-executes itself under ``valgrind --tool=callgrind --instr-atstart=no``: importing
   torch and building the model run uninstrumented (importing torch: 30 s of CPU, against 70 s under
   full instrumentation);
2. inside that process, :class:`counting` switches instrumentation on around exactly the counted work
   and writes one callgrind dump per region, named by its label. The switches are callgrind *client
   requests*: marker instructions in a tiny C library (``callgrind_requests.c``) compiled at first use
   and called through ctypes. They act synchronously, at the call, and cost a fixed ~5,000
   instructions, so the same work in the same process history counts the same to the instruction (20
   training steps of the tutorial's Net in 5 processes: 152,898,101 each time); natively they do
   nothing;
3. :func:`read_counts` reads the dumps back: label -> instructions (event ``Ir``).

Rejected: ``callgrind_control -i on|off`` run from the process itself (it forks a perl script and vgdb
per switch, counted: 235,000 instructions of overhead and a 1.2% spread between repeats); a cachegrind
difference of whole runs with N and 2N steps (exact to a few thousand instructions, but two fully
instrumented processes per count, each over 2 minutes, and it also counts whatever the extra steps shift
elsewhere in the process).

Counts are only reproducible when the process is deterministic: one thread (valgrind serialises threads
and switches between them on its own schedule: a sleeping monitor thread spread a loop's counts by
0.12%), a fixed ``PYTHONHASHSEED``, no timers firing inside the region, and the same history before it
(glibc's malloc costs depend on the heap's past, hence the malloc settings ``execution/valgrind.py``
pins). The launcher sets the environment for that; the run keeps data loader workers, progress-bar
monitors, samplers and timers out of the counted process.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
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

SMOKE_TIMEOUT_S = 60  # seconds: a trivial program under callgrind starts in under one
COMPILE_TIMEOUT_S = 120  # seconds for the C compiler
SOURCE_NAME = "callgrind_requests.c"
INTERFACE_VERSION = 1  # must equal cb_interface_version() in the C source
LABEL_RE = re.compile(r"[A-Za-z0-9_.:/=+-]{1,100}")  # labels land in a file's trigger line

_DUMP_FILE_RE = re.compile(r"callgrind\.out\.(\d+)\.(\d+)$")
_TRIGGER_PREFIX = "desc: Trigger: Client Request: "


class CountingError(RuntimeError):
    """Instructions cannot be counted here; the message is one line saying what to install or fix."""


# --- which valgrind -------------------------------------------------------------------------------


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

    Under valgrind, Python's cyclic garbage collector is paused during the block: when
    it runs depends on every container allocated since the process started, so a
    collection could fall inside one run's region and outside another's. (Collecting
    before the block as well made repeated regions of one process differ by 1%: the
    freed memory is allocated afresh.)
    """

    _active = False  # class-wide: callgrind has one instrumentation switch per process

    def __init__(self, label: str) -> None:
        if not LABEL_RE.fullmatch(label):
            raise ValueError(f"label {label!r}: use 1-100 of A-Z a-z 0-9 _ . : / = + -")
        self.label = label
        self._encoded = label.encode()
        self._requests: _Requests | None = None
        self._collecting = False  # the garbage collector was on when the block began (it is back on after)

    def __enter__(self) -> counting:
        if counting._active:  # checked natively too, so that a nesting bug shows before valgrind runs
            raise RuntimeError(f"counting({self.label!r}) inside another counted region")
        requests = _requests() if under_valgrind() else None
        counting._active, self._requests = True, requests
        if requests is not None:
            self._collecting = gc.isenabled()
            gc.disable()  # a pending collection runs after the block, uncounted
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
        if self._collecting:
            gc.enable()


# --- reading the dumps back -----------------------------------------------------------------------


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
