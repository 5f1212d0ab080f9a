"""``cifar-bench regressions``: change points of every series, newest first, and an exit code to gate on."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from record_factory import counted, record, write

from cifar_bench.commands.cli import main
from cifar_bench.results.reader import load_runs
from cifar_bench.results.regressions import Settings, find_regressions, table, window_start

# Quiet noise as measured on this machine (benchmarks/changepoint_noise/epyc-quiet-10.json): each commit's runs
# share a level 1.5% (SD) from commit to commit (the median absolute deviation of the measured invocations'
# levels), and its runs differ by 0.4% (their IQR of 0.6% within an invocation).
COMMIT_SD, RUN_SD = 0.015, 0.004


def commit_hash(c: int) -> str:
    return f"{c:02d}" + "c0ffee" * 6 + "ab"


def history(levels: list[float], *, seed: int = 0, runs: int = 3, accuracy: list[float] | None = None,
            commits: bool = True, cpu: str = "AMD EPYC") -> list[dict]:  # fmt: skip
    """Records of ``runs`` runs at each level (10 s times the level), one commit per level, oldest first."""
    rng = np.random.default_rng(seed)
    records = []
    for c, level in enumerate(levels):
        shared = rng.normal(0, COMMIT_SD)  # the machine's mood while this commit's runs ran
        for s in range(runs):
            train_s = 10.0 * level * float(np.exp(shared + rng.normal(0, RUN_SD)))
            r = record(train_s=train_s, seed=s, accuracy=0.5 if accuracy is None else accuracy[c])
            r["environment"].update(git_commit=commit_hash(c) if commits else None, cpu=cpu, device_name=cpu)
            r["started_at"] = f"2026-03-{c + 1:02d}T02:00:{s:02d}+00:00"
            records.append(r)
    return records


STEP = [1.0] * 5 + [1.08] * 5  # 8% slower from the sixth of ten commits
FLAT = [1.0] * 10


def regressions(tmp_path: Path, records: list[dict], *args: str) -> tuple[int, list[dict]]:
    """Exit code and rows of ``cifar-bench regressions --format json`` on these records."""
    folder = write(tmp_path / "records", *records)
    out = tmp_path / "out.json"
    code = main(["regressions", str(folder), "--format", "json", "--output", str(out), *args])
    return code, json.loads(out.read_text())


@pytest.mark.parametrize("seed", range(3))
def test_a_planted_step_is_one_regression_at_its_commit_and_fails_the_last_five(tmp_path, seed):
    code, rows = regressions(tmp_path, history(STEP, seed=seed), "--last", "5")
    assert code == 1
    (row,) = rows  # train time and images/s moved together: one change, not two
    assert (row["#"], row["commit"], row["regression"]) == (6, commit_hash(5), "REGRESSION")
    assert row["measure"] == "train s, train img/s" and row["could have begun"] == commit_hash(5)[:8]
    assert row["low"] > 0 and 4 < row["change"] < 12 and row["p"] <= 0.001  # +8% planted, in %
    # A window that starts after the change: nothing begins in it.
    assert regressions(tmp_path, history(STEP, seed=seed), "--last", "4") == (0, [])


@pytest.mark.parametrize("seed", range(5))
def test_a_flat_history_lists_none_and_passes(tmp_path, seed, capsys):
    folder = write(tmp_path / "records", *history(FLAT, seed=seed))
    assert main(["regressions", str(folder), "--last", "5"]) == 0
    assert capsys.readouterr().out.startswith("0 change(s), 0 regression(s), beginning in the newest 5")


def test_since_a_commit_looks_after_it(tmp_path):
    records = history(STEP)
    assert regressions(tmp_path, records, "--since", commit_hash(4)[:7])[0] == 1  # commits 6-10: the step is in
    assert regressions(tmp_path, records, "--since", commit_hash(5))[0] == 0  # commits 7-10: it began before


def test_a_step_within_the_threshold_is_listed_but_passes(tmp_path):
    code, rows = regressions(tmp_path, history(STEP), "--max-slowdown", "10")
    assert code == 0
    assert [(r["#"], r["regression"]) for r in rows] == [(6, "")]


def test_a_faster_commit_is_a_change_but_not_a_regression(tmp_path):
    code, rows = regressions(tmp_path, history([1.0] * 5 + [0.9] * 5))
    assert code == 0 and [(r["#"], r["regression"]) for r in rows] == [(6, "")] and rows[0]["change"] < 0


def test_an_accuracy_drop_is_a_regression_beyond_its_threshold(tmp_path):
    accuracy = [0.50] * 6 + [0.47] * 4  # 3 points lower from the seventh commit; time flat
    code, rows = regressions(tmp_path, history(FLAT, accuracy=accuracy))
    assert code == 1
    assert [(r["#"], r["measure"], r["change"], r["unit"]) for r in rows] == [(7, "test acc %", pytest.approx(-3.0),
                                                                                 "pts")]  # fmt: skip
    assert regressions(tmp_path, history(FLAT, accuracy=accuracy), "--max-accuracy-drop", "5")[0] == 0


def test_newest_first_and_machines_apart(tmp_path):
    # Two steps on one machine; the other machine's history is flat and gets none.
    records = history([1.0] * 6 + [1.15] * 6 + [1.35] * 6) + history([1.0] * 18, cpu="Intel Xeon", seed=1)
    code, rows = regressions(tmp_path, records)
    assert code == 1
    assert [(r["#"], r["machine"]) for r in rows] == [(13, "AMD EPYC"), (7, "AMD EPYC")]


def test_runs_without_a_commit_are_placed_by_start_time_and_searched(tmp_path, capsys):
    records = history(STEP, commits=False, runs=1, seed=3)  # one run a day, outside any repository
    folder = write(tmp_path / "records", *records)
    code = main(["regressions", str(folder)])
    out = capsys.readouterr()
    assert "10 run(s) record no git commit" in out.err
    assert code == 1
    lines = out.out.splitlines()
    (row,) = [line for line in lines if "REGRESSION" in line]
    assert " 6  no commit" in row and "2026-03-06T02:00:00+00:00" in row  # the sixth run, by start time


def test_the_table_in_every_format(tmp_path):
    folder = write(tmp_path / "records", *history(STEP))
    for fmt in ("text", "github", "markdown", "html", "latex"):
        out = tmp_path / f"out.{fmt}"
        assert main(["regressions", str(folder), "--format", fmt, "--output", str(out)]) == 1
        text = out.read_text()
        assert "REGRESSION" in text and commit_hash(5)[:8] in text, fmt
    out = tmp_path / "out.csv"
    main(["regressions", str(folder), "--format", "csv", "--output", str(out)])
    (row,) = csv.DictReader(io.StringIO(out.read_text()))
    assert row["commit"] == commit_hash(5) and float(row["p"]) <= 0.001


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "ffff"], "no run records that commit"),
    (["--since", "05"], "at least 4 characters"),
    (["--last", "0"], "must be at least 1"),
    (["--since", commit_hash(1), "--last", "3"], "not allowed with argument"),
    (["--max-slowdown", "fast"], "expected a percentage"),
    (["--method", "bayes"], "unknown method"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    folder = write(tmp_path / "records", *history(FLAT))
    assert main(["regressions", str(folder), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_no_ok_run_is_bad_input(tmp_path, capsys):
    failed = record(status="failed")
    assert main(["regressions", str(write(tmp_path / "r", failed))]) == 2
    assert "no run finished ok" in capsys.readouterr().err
    assert main(["regressions", str(tmp_path / "nothing")]) == 2


def test_the_library_window(tmp_path):
    runs = load_runs([write(tmp_path / "r", *history(STEP))], report=None).runs
    found = find_regressions(runs, Settings(method="t"))
    assert window_start(found.order) == 0 and window_start(found.order, last=3) == 7
    assert window_start(found.order, since=commit_hash(2)) == 3
    assert len(table(found, 0)) == 1 and table(found, 6).empty


# --- counted runs (run --measure instructions) -------------------------------------------------------


def counted_history(per_step: list[float], train_s: list[float], runs: int = 3) -> list[dict]:
    """Records of counted runs: one count per commit (every run of it the same, as counts are), valgrind's times."""
    records = []
    for c, (count, seconds) in enumerate(zip(per_step, train_s, strict=True)):
        for s in range(runs):
            r = counted(count, train_s=seconds * (1 + 0.01 * s), seed=s)
            r["environment"].update(git_commit=commit_hash(c), cpu="AMD EPYC", device_name="AMD EPYC")
            r["started_at"] = f"2026-03-{c + 1:02d}T02:00:{s:02d}+00:00"
            records.append(r)
    return records


# Counts as measured (benchmarks/instructions_gate.py): one step of the baseline counted 7,663,841, 7,669,079 or
# 7,667,714 instructions with nothing changed but the results folder's name; valgrind's times wander widely.
COUNTS = [7_663_841, 7_669_079, 7_667_714, 7_663_841, 7_667_714, 7_669_079, 7_663_841, 7_667_714, 7_669_079, 7_667_714]
VALGRIND_S = [80.0, 82.0, 250.0, 81.0, 79.0, 240.0, 255.0, 83.0, 80.0, 81.0]  # a busy neighbour on three nights


def test_counted_runs_are_searched_on_their_counts_not_valgrinds_times(tmp_path):
    stepped = [c * (1.02 if i >= 5 else 1.0) for i, c in enumerate(COUNTS)]  # 2% more work from commit 6
    code, rows = regressions(tmp_path, counted_history(stepped, VALGRIND_S), "--last", "5")
    assert code == 1
    (row,) = rows  # nothing of valgrind's tripled times
    assert (row["#"], row["measure"], row["regression"]) == (6, "instr/step", "REGRESSION")
    assert 1.9 < row["change"] < 2.1 and row["low"] > 1.5
    folder = write(tmp_path / "text", *counted_history(stepped, VALGRIND_S))
    assert main(["regressions", str(folder), "--output", str(tmp_path / "out.txt")]) == 1
    assert "more instructions per step (counted runs) by more than 1%" in (tmp_path / "out.txt").read_text()
    # Below --max-instructions-increase it is listed, not a regression.
    code, rows = regressions(tmp_path, counted_history(stepped, VALGRIND_S), "--max-instructions-increase", "3")
    assert code == 0 and [(r["#"], r["regression"]) for r in rows] == [(6, "")]


def test_counts_that_only_move_with_the_folder_name_are_no_change_at_all(tmp_path):
    # Moves of up to 0.07% are under the counts' resolution (0.2%): not listed, however significant.
    assert regressions(tmp_path, counted_history(COUNTS, VALGRIND_S)) == (0, [])


def test_counted_and_timed_runs_of_one_recipe_are_separate_series(tmp_path):
    stepped = [c * (1.02 if i >= 5 else 1.0) for i, c in enumerate(COUNTS)]
    code, rows = regressions(tmp_path, counted_history(stepped, VALGRIND_S) + history(FLAT, seed=2))
    assert code == 1 and [(r["#"], r["measure"]) for r in rows] == [(6, "instr/step")]
