"""Instruction counting under callgrind (training/callgrind.py, execution/valgrind.py): the problem line, parsing,
and a real count."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cifar_bench.execution import valgrind
from cifar_bench.training import callgrind


@pytest.fixture(autouse=True)
def fresh_lookups(tmp_path, monkeypatch):
    """Each test sees its own PATH, platform and cache: the lookups are cached per process, so clear them."""
    monkeypatch.setenv(callgrind.CACHE_ENV, str(tmp_path / "cache"))
    for cached in (valgrind._problem, callgrind.valgrind_version, callgrind._requests):
        cached.cache_clear()
    yield
    for cached in (valgrind._problem, callgrind.valgrind_version, callgrind._requests):
        cached.cache_clear()


def _can_count() -> str | None:
    valgrind._problem.cache_clear()
    return valgrind.valgrind_problem()


# --- why counting cannot run ------------------------------------------------------------------------


def test_without_valgrind_the_problem_is_one_line_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no valgrind, no compiler
    monkeypatch.setattr(sys, "platform", "linux")
    problem = valgrind.valgrind_problem()
    assert problem is not None and "\n" not in problem
    assert "apt-get install valgrind" in problem
    assert callgrind.valgrind_version() is None


def test_another_platform_is_named(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    problem = valgrind.valgrind_problem()
    assert problem is not None and "darwin" in problem and "\n" not in problem


def test_a_missing_compiler_names_one_to_install(monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    with pytest.raises(callgrind.CountingError, match="apt-get install gcc"):
        callgrind.build_library()


def test_missing_valgrind_headers_are_named(monkeypatch):
    monkeypatch.setattr(callgrind, "_include_dirs", lambda: [])
    with pytest.raises(callgrind.CountingError, match=r"callgrind\.h"):
        callgrind.build_library()


def test_an_unwritable_cache_is_named_with_the_way_out(tmp_path, monkeypatch):
    if callgrind._compiler() is None or not callgrind._include_dirs():
        pytest.skip("no compiler or valgrind headers: the build stops before writing")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(callgrind.CACHE_ENV, str(blocker))  # a folder cannot be made under a file
    with pytest.raises(callgrind.CountingError, match=callgrind.CACHE_ENV):
        callgrind.build_library()


def test_reexec_refuses_when_valgrind_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(callgrind.CountingError, match="install valgrind"):
        valgrind.reexec_command([sys.executable, "-c", "pass"], tmp_path / "out")


# --- reading callgrind's dumps ----------------------------------------------------------------------


def dump_text(trigger: str, events: str = "Ir", totals: str = "159616146") -> str:
    """A callgrind dump as 3.19 writes one (header, a function, the totals), shortened."""
    return textwrap.dedent(f"""\
        # callgrind format
        version: 1
        creator: callgrind-3.19.0
        pid: 4242
        cmd:  /usr/bin/python3 probe.py
        part: 3

        desc: I1 cache:
        desc: Timerange: Basic block 0 - 1000
        desc: Trigger: {trigger}

        positions: line
        events: {events}
        summary: {totals}


        ob=(1) /usr/lib/libtorch_cpu.so
        fl=(1) ???
        fn=(1) at::native::add
        0 12345

        totals: {totals}
        """)


def test_a_client_request_dump_gives_its_label_and_ir():
    assert callgrind.parse_dump(dump_text("Client Request: train/0")) == ("train/0", 159616146)


def test_ir_is_found_among_several_events():
    parsed = callgrind.parse_dump(dump_text("Client Request: eval/0", events="Dr Ir Dw", totals="7 99 5"))
    assert parsed == ("eval/0", 99)


def test_the_dump_at_program_end_is_not_a_count():
    # With instrumentation off at exit callgrind's final totals are meaningless (seen negative).
    assert callgrind.parse_dump(dump_text("Program termination", totals="18446744073709549291")) is None
    assert callgrind.parse_dump(dump_text("Client Request: x", events="Dr Dw", totals="1 2")) is None


def test_read_counts_takes_each_process_dump_and_skips_the_rest(tmp_path):
    (tmp_path / "callgrind.out.10.1").write_text(dump_text("Client Request: train/0", totals="100"))
    (tmp_path / "callgrind.out.10.2").write_text(dump_text("Client Request: eval/0", totals="50"))
    (tmp_path / "callgrind.out.11.1").write_text(dump_text("Client Request: train/1", totals="101"))
    (tmp_path / "callgrind.out.10").write_text(dump_text("Program termination", totals="7"))
    (tmp_path / "valgrind.10.log").write_text("==10== Callgrind\n")
    assert callgrind.read_counts(tmp_path) == {"train/0": 100, "eval/0": 50, "train/1": 101}
    assert [(d.pid, d.part) for d in callgrind.read_dumps(tmp_path)] == [(10, 1), (10, 2), (11, 1)]


def test_a_label_counted_twice_is_an_error_not_a_silent_pick(tmp_path):
    (tmp_path / "callgrind.out.10.1").write_text(dump_text("Client Request: train", totals="100"))
    (tmp_path / "callgrind.out.12.1").write_text(dump_text("Client Request: train", totals="104"))
    with pytest.raises(ValueError, match="more than once"):
        callgrind.read_counts(tmp_path)


# --- outside valgrind -------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["", "two words", "new\nline", "x" * 101])
def test_labels_that_would_break_the_dump_are_refused(label):
    with pytest.raises(ValueError, match="label"):
        callgrind.counting(label)


def test_counting_outside_valgrind_runs_the_block_and_refuses_nesting():
    ran = []
    with callgrind.counting("outer"):
        ran.append(1)
        with pytest.raises(RuntimeError, match="inside another"), callgrind.counting("inner"):
            pass
    with callgrind.counting("again"):  # the switch was released
        ran.append(2)
    assert ran == [1, 2] and not callgrind.under_valgrind()


def test_the_requests_are_harmless_outside_valgrind(monkeypatch):
    try:
        library = callgrind.build_library()
    except callgrind.CountingError as error:
        pytest.skip(f"cannot build the request helper here: {error}")
    # Pretend valgrind's preload is there: the library itself must then say "not under valgrind".
    monkeypatch.setenv("LD_PRELOAD", "/usr/libexec/valgrind/vgpreload_core-amd64-linux.so")
    monkeypatch.setenv(callgrind.LIBRARY_ENV, str(library))
    assert callgrind.under_valgrind() is False
    requests = callgrind._requests()
    requests.start()
    requests.stop(b"native")
    requests.abandon()
    assert requests.running_on_valgrind() == 0


def test_the_build_is_cached_by_its_key(tmp_path):
    try:
        first = callgrind.build_library(tmp_path)
    except callgrind.CountingError as error:
        pytest.skip(f"cannot build the request helper here: {error}")
    stamp = first.stat().st_mtime_ns
    assert callgrind.build_library(tmp_path) == first and first.stat().st_mtime_ns == stamp


# --- a real count ---------------------------------------------------------------------------------

WORKLOAD = """
from cifar_bench.training.callgrind import counting


def work():
    total = 0
    for i in range(20_000):
        total += i * i
    return total


work()  # uncounted: the interpreter specialises the loop's bytecode here
for repeat in range(3):
    with counting(f"loop/{repeat}"):
        work()
with counting("empty"):
    pass
try:
    with counting("raised"):
        raise KeyError("a region that fails is not dumped")
except KeyError:
    pass
"""


def test_a_real_count_is_positive_and_repeats_exactly(tmp_path):
    if (problem := _can_count()) is not None:
        pytest.skip(problem)
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    counts = []
    for process in range(2):
        command, env = valgrind.reexec_command([sys.executable, str(script)], tmp_path / f"out{process}")
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, valgrind.valgrind_log(tmp_path / f"out{process}")
        counts.append(callgrind.read_counts(tmp_path / f"out{process}"))
    loops = [c[f"loop/{r}"] for c in counts for r in range(3)]
    assert set(counts[0]) == {"loop/0", "loop/1", "loop/2", "empty"}  # no dump for the region that raised
    assert min(loops) > 20_000 * 10  # tens of instructions per Python iteration, at least
    # The same work counts the same within 0.01%, in one process and across two.
    # Not always exactly: the environment's strings differ (the output folder), so do their hashes and
    # with them a few dict probes; measured here, 6 processes spread by 330 of 13.1 million (0.0025%).
    assert (max(loops) - min(loops)) / min(loops) < 1e-4
    assert counts[0]["empty"] < min(loops) / 100  # the fixed overhead is small beside the work


def test_reexec_runs_python_itself_under_callgrind(tmp_path, monkeypatch):
    if (problem := _can_count()) is not None:
        pytest.skip(problem)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.x86_ibt=on")
    command, env = valgrind.reexec_command([sys.executable, "-c", "pass"], tmp_path)
    assert command[0].endswith("valgrind") and "--tool=callgrind" in command and "--instr-atstart=no" in command
    assert command[command.index("-c") - 1] == sys.executable
    assert env["PYTHONHASHSEED"] == valgrind.HASH_SEED and env["OMP_NUM_THREADS"] == "1"
    assert Path(env[callgrind.LIBRARY_ENV]).is_file()
    # The caller's glibc settings are kept; malloc's, which make counts steadier, come last and so win.
    assert env["GLIBC_TUNABLES"] == "glibc.cpu.x86_ibt=on:" + valgrind.MALLOC_TUNABLES
    shim = tmp_path / "python-shim"
    shim.write_text('#!/bin/sh\nexec python3 "$@"\n')
    shim.chmod(0o755)
    with pytest.raises(ValueError, match="native executable"):  # valgrind would count the shell
        valgrind.reexec_command([str(shim), "-c", "pass"], tmp_path)
