"""``run --measure instructions`` and the gate on its counts: the record's section, compare's method and
threshold, what is refused, missing valgrind, and one real counted run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from record_factory import counted as counted_record
from record_factory import record, write

from cifar_bench.commands.cli import main
from cifar_bench.execution import valgrind
from cifar_bench.results import compare_instructions, workload
from cifar_bench.results.schema import InstructionsInfo, RunRecord
from cifar_bench.training import callgrind
from cifar_bench.training.instructions import measured

PER_STEP = 7_663_344.4  # the baseline Net's step, as counted on the 2-core AMD EPYC


def counted(per_step: float = PER_STEP, *, valgrind_version: str = "3.19.0", steps: int = 5, **extra) -> dict:
    """A record of a counted run (``train_s`` is valgrind's time: it must not matter)."""
    return counted_record(per_step, valgrind=valgrind_version, steps=steps, **extra)


def gate(tmp_path: Path, base: list[dict], current: list[dict], *flags: str, capsys) -> tuple[int, dict, str]:
    code = main(["compare", str(write(tmp_path / "base", *base)), str(write(tmp_path / "cur", *current)),
                 "--format", "json", *flags])  # fmt: skip
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else {}), err


# --- the record ------------------------------------------------------------------------------------


def test_the_section_holds_counts_per_step_and_per_image_and_how_they_were_counted():
    info = measured({"train": 38_316_722, "eval": 18_982_321}, steps=5, eval_images=32, malloc="glibc.malloc.x=1")
    assert (info.tool, info.mechanism, info.steps, info.train) == ("callgrind", callgrind.MECHANISM, 5, 38_316_722)
    assert info.per_step == pytest.approx(7_663_344.4) and info.per_eval_image == pytest.approx(593_197.53125)
    assert info.valgrind == callgrind.valgrind_version() and info.arch and info.malloc == "glibc.malloc.x=1"
    with pytest.raises(RuntimeError, match="no count for the training steps"):
        measured({"eval": 1}, steps=5, eval_images=32)


def test_the_section_survives_the_record_round_trip():
    data = counted()
    back = RunRecord.from_dict(data)
    assert isinstance(back.instructions, InstructionsInfo) and back.instructions.per_step == PER_STEP
    assert RunRecord.from_dict(record()).instructions is None  # a timed record has none


def test_counts_are_their_own_workload_apart_from_times_and_from_other_counting():
    timed, count = workload.identify(record()), workload.identify(counted())
    assert timed["key"] != count["key"] and "measure" not in timed
    assert count["measure"] == {"kind": "instructions", "tool": "callgrind", "valgrind": "3.19.0", "arch": "x86_64",
                                "steps": 5, "eval_images": 32}  # fmt: skip
    assert workload.identify(counted(PER_STEP * 2))["key"] == count["key"]  # the count is the result, not the work
    for other in (counted(valgrind_version="3.22.0"), counted(steps=20)):
        assert workload.identify(other)["key"] != count["key"]


# --- the gate --------------------------------------------------------------------------------------


def test_equal_counts_pass_whatever_valgrind_time_says_and_the_method_is_named(tmp_path, capsys):
    base = [counted(PER_STEP + d, train_s=10.0) for d in (0, 3, -2)]
    current = [counted(PER_STEP + d, train_s=19.0) for d in (1, 0, 2)]  # twice the time: not judged
    code, report, _ = gate(tmp_path, base, current, capsys=capsys)
    pair = report["pairs"][0]
    assert code == 0 and pair["verdict"] == "ok" and pair["decision"] is None
    assert report["settings"]["method"] == compare_instructions.METHOD
    assert pair["instructions"]["method"] == compare_instructions.METHOD and pair["instructions"]["steady"]
    assert pair["instructions"]["baseline_spread"] == pytest.approx(5 / PER_STEP)
    assert any("spread over runs: baseline 0.0001% (3 runs)" in r for r in pair["reasons"])


@pytest.mark.parametrize(("increase", "flags", "code"), [
    (0.005, (), 0), (0.015, (), 1), (0.015, ("--max-instructions-increase", "2"), 0), (0.0101, (), 1),
])  # fmt: skip
def test_a_plain_threshold_on_instructions_per_step(tmp_path, capsys, increase, flags, code):
    got, report, _ = gate(tmp_path, [counted()], [counted(PER_STEP * (1 + increase))], *flags, capsys=capsys)
    pair = report["pairs"][0]
    assert got == code and (pair["verdict"] == "regression") == (code == 1)
    assert pair["instructions"]["increase"] == pytest.approx(increase)
    assert any(f"{increase * 100:+.3f}% instructions per step" in r for r in pair["reasons"])
    assert any("unknown (1 run; repeat to confirm)" in r for r in pair["reasons"])  # no spread from one run


def test_counts_that_spread_are_called_doubtful(tmp_path, capsys):
    base = [counted(PER_STEP), counted(PER_STEP * 1.004)]  # 0.4%: over a quarter of the 1% threshold
    _, report, _ = gate(tmp_path, base, [counted()], capsys=capsys)
    pair = report["pairs"][0]
    assert not pair["instructions"]["steady"] and any("doubtful" in r for r in pair["reasons"])


def test_counts_are_never_judged_against_times(tmp_path, capsys):
    code, _, err = gate(tmp_path, [record()], [counted()], capsys=capsys)
    assert code == 2 and "measure: absent vs instructions (callgrind 3.19.0" in err


def test_the_text_report_shows_counts_and_says_how_they_were_judged(tmp_path, capsys):
    base, cur = write(tmp_path / "b", counted()), write(tmp_path / "c", counted(PER_STEP * 1.02))
    assert main(["compare", str(base), str(cur)]) == 1
    out = capsys.readouterr().out
    assert "7,663,344" in out and "+2.000%" in out and "exceed the baseline's by more than 1.00%" in out
    assert "Mann-Whitney" not in out  # no time was judged


# --- the command -----------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [
    ("--steps", "3"), ("--measure", "instructions", "--nproc", "2"), ("--measure", "instructions", "--repeats", "3"),
    ("--measure", "instructions", "--loader", "dataloader"), ("--measure", "instructions", "--threads", "2"),
])  # fmt: skip
def test_what_cannot_be_counted_is_refused_in_one_line(run_cli, flags):
    result = run_cli("run", "baseline", *flags)
    assert result.code == 2 and result.err.count("\n") == 1 and "error:" in result.err


def test_without_valgrind_the_run_exits_2_naming_the_package(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no valgrind on it
    valgrind._problem.cache_clear()
    try:
        result = run_cli("run", "baseline", "--dataset", "synthetic", "--measure", "instructions")
    finally:
        valgrind._problem.cache_clear()
    assert result.code == 2 and result.err.count("\n") == 1
    assert "apt-get install valgrind" in result.err and not (tmp_path / "results").exists()


def test_a_counted_run_outside_valgrind_is_refused(tmp_path):
    from cifar_bench import api
    from cifar_bench.errors import UsageError

    with pytest.raises(UsageError, match="under valgrind"):
        api.run("baseline", dataset="synthetic", limit_train=8, limit_test=8, count_steps=2, threads=1,
                no_cpu_tune=True)  # fmt: skip


def test_a_real_counted_run_records_its_counts(tmp_path):
    """The whole command under valgrind on a tiny workload (a minute or two: valgrind starts torch slowly)."""
    valgrind._problem.cache_clear()
    if (problem := valgrind.valgrind_problem()) is not None:
        pytest.skip(problem)
    done = subprocess.run(
        [sys.executable, "-m", "cifar_bench", "run", "baseline", "--dataset", "synthetic", "--limit-train", "16",
         "--limit-test", "8", "--measure", "instructions", "--steps", "2", "--results-dir", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = (tmp_path / "r").glob("*.json")
    data = json.loads(path.read_text())
    counts = data["instructions"]
    assert data["status"] == "ok" and counts["tool"] == "callgrind" and counts["steps"] == 2
    assert counts["valgrind"] == callgrind.valgrind_version() and counts["eval_images"] == 8
    # The tutorial Net's step on a batch of 4 is millions of instructions, and the pass over 8 images more.
    assert 1e6 < counts["per_step"] < 1e8 and counts["eval"] > counts["per_eval_image"] > 0
    assert data["workload"]["measure"]["kind"] == "instructions"
    assert data["environment"]["threads"] == 1  # counted in one thread


# --- ab with counts ---------------------------------------------------------------------------------

# A stand-in for one install's cifar-bench: logs the arguments it was given, then writes the record it is
# handed (a counted record, as a real counted run writes) into its --results-dir, or exits as told.
FAKE_COUNTED_SIDE = """
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["SIDE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
code = int(os.environ.get("SIDE_EXIT", "0"))
if code in (0, 1):
    folder = Path(args[args.index("--results-dir") + 1])
    folder.mkdir(parents=True, exist_ok=True)
    record = json.loads(Path(os.environ["SIDE_RECORD"]).read_text())
    (folder / (record["run_id"] + ".json")).write_text(json.dumps(record))
else:
    print("error: the side refuses this", file=sys.stderr)
sys.exit(code)
"""


def counted_side(tmp_path: Path, name: str, per_step: float, exit_code: int = 0) -> str:
    script = tmp_path / "fake_counted_side.py"
    script.write_text(FAKE_COUNTED_SIDE)
    (tmp_path / f"{name}.json").write_text(json.dumps(counted(per_step)))
    env = f"SIDE_LOG={tmp_path / 'sides.log'} SIDE_RECORD={tmp_path / name}.json SIDE_EXIT={exit_code}"
    return f"env {env} {sys.executable} {script}"


def test_ab_counts_each_side_on_one_identical_command_line_and_shows_them_side_by_side(run_cli, tmp_path):
    a, b = counted_side(tmp_path, "a", PER_STEP), counted_side(tmp_path, "b", PER_STEP * 1.004)
    results = {"a": tmp_path / "ra", "b": tmp_path / "rb"}
    run = ("run", "baseline", "--dataset", "synthetic", "--measure", "instructions", "--steps", "5")
    result = run_cli("ab", "--a", a, "--b", b, "--results-a", results["a"], "--results-b", results["b"], "--", *run)
    assert result.code == 0, result
    calls = [json.loads(line) for line in (tmp_path / "sides.log").read_text().splitlines()]
    # Both sides counted, one after the other, with the very same arguments (results folder included).
    assert len(calls) == 2 and calls[0] == calls[1] and calls[0][:2] == ["run", "baseline"]
    staging = Path(calls[0][calls[0].index("--results-dir") + 1])
    assert not staging.exists() and not staging.parent.exists()  # the staging folder is gone
    for side in "ab":  # each side's record moved whole to its own folder
        (path,) = results[side].glob("*.json")
        assert json.loads(path.read_text()) == json.loads((tmp_path / f"{side}.json").read_text())
    assert "7,663,344" in result.out and "b/a instructions per step: 1.00400 (+0.400%)" in result.out
    assert f"cifar-bench compare {results['a']} {results['b']}" in result.out
    # The records gate as any counted pair does.
    assert run_cli("compare", results["a"], results["b"]).code == 0
    assert run_cli("compare", results["a"], results["b"], "--max-instructions-increase", "0.25").code == 1


def test_ab_with_counts_stops_in_one_line_when_a_side_refuses(run_cli, tmp_path):
    a, b = counted_side(tmp_path, "a", PER_STEP, exit_code=2), counted_side(tmp_path, "b", PER_STEP)
    result = run_cli("ab", "--a", a, "--b", b, "--results-a", tmp_path / "ra", "--results-b", tmp_path / "rb", "--",
                     "run", "baseline", "--measure=instructions")  # fmt: skip
    assert result.code == 2 and result.err.count("\n") == 1 and "side a" in result.err
    assert len((tmp_path / "sides.log").read_text().splitlines()) == 1  # side b never started


def test_ab_with_counts_keeps_a_failed_sides_record_and_exits_1(run_cli, tmp_path):
    a, b = counted_side(tmp_path, "a", PER_STEP), counted_side(tmp_path, "b", PER_STEP, exit_code=1)
    result = run_cli("ab", "--a", a, "--b", b, "--results-a", tmp_path / "ra", "--results-b", tmp_path / "rb", "--",
                     "run", "baseline", "--measure", "instructions")  # fmt: skip
    assert result.code == 1 and len(list((tmp_path / "rb").glob("*.json"))) == 1


def test_ab_with_counts_names_a_side_command_that_does_not_exist(run_cli, tmp_path):
    result = run_cli("ab", "--a", str(tmp_path / "no-such-cifar-bench"), "--b", "x", "--results-a", tmp_path / "ra",
                     "--results-b", tmp_path / "rb", "--", "run", "baseline", "--measure", "instructions")  # fmt: skip
    assert result.code == 2 and result.err.count("\n") == 1 and "--a" in result.err
