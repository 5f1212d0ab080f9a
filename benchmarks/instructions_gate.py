"""Does the gate on instruction counts stay quiet for identical code and catch a 0.5% increase?

Three copies of the project's source are made, as ``gate_false_alarms.py --installs`` makes two:
``a`` (the base), ``b`` (identical) and ``p`` (planted): in ``p``'s copy the harness's own training step
(``TrainStep.__call__`` in training/step.py) first runs a plain Python loop of as many iterations as
the environment variable ``CIFAR_BENCH_PLANTED_LOOPS`` says. Every run of every copy gets the same
environment (the variable included, and install paths of equal length), so the only difference between
``a`` and ``b`` is where they are, and between ``a`` and ``p`` the loop.

The plant is sized by counting: one run of ``a`` counts a step (S instructions), one run of ``p`` with a
large loop counts the loop's cost per iteration; the loop is then set to ``--plant`` (0.5%) of S. Each
comparison is one run of each side, ``cifar-bench run baseline --measure instructions`` (synthetic data,
``--steps`` counted steps, each its own process under valgrind, installs run through ``python -m
cifar_bench`` with the copy on ``PYTHONPATH``), gated by ``cifar-bench compare`` at its default 1%
threshold and, since a 0.5% plant sits below 1%, also at ``--threshold`` (0.25%): the identical
comparisons must pass at both, the planted ones must fail at 0.25%. Measured figures (10 + 10 on the
2-core AMD EPYC VM): docs/comparing.md, "Counting instructions".

    python benchmarks/instructions_gate.py                     # 20 + 20 comparisons
    python benchmarks/instructions_gate.py --comparisons 5     # a quick look

Prints each comparison's counts and verdicts, the spread of each install's counts over its runs, the
planted increase as measured, and a table. Exit code 0 when no identical comparison was called a
regression and every planted one was, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tabulate import tabulate

from cifar_bench.commands.cli import main as cli
from cifar_bench.machine import cpu_model
from cifar_bench.training import callgrind

SOURCE = Path(__file__).resolve().parents[1]
PLANT_ENV = "CIFAR_BENCH_PLANTED_LOOPS"
CALIBRATION_LOOPS = 200_000  # iterations of the loop counted once to learn its cost per iteration
STEP_CALL = "    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:\n"
# The loop iterates over itertools.repeat: every iteration costs the same (a range past 256 would allocate
# its ints, so a loop calibrated long costs more per iteration than the short one planted). Its length is
# read once, when the module is imported.
PLANTED_LOOPS = f"""
_PLANTED_LOOPS = int(os.environ.get("{PLANT_ENV}", "0"))
"""
PLANTED_CALL = """    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        for _ in itertools.repeat(None, _PLANTED_LOOPS):
            pass
        return self._unplanted_call(x, y)

    def _unplanted_call(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comparisons", type=int, default=20, help="comparisons of each kind [20]")
    parser.add_argument("--steps", type=int, default=5, help="training steps counted per run [5]")
    parser.add_argument("--plant", type=float, default=0.005, help="planted increase, a fraction of a step [0.005]")
    parser.add_argument("--threshold", default="0.25", help="the lower threshold the plant must cross, %% [0.25]")
    parser.add_argument("--jobs", type=int, default=2, help="counted runs at once [2]")
    parser.add_argument("--limit-train", type=int, default=16, help="training images (batch 4) [16]")
    parser.add_argument("--limit-test", type=int, default=8, help="test images evaluated [8]")
    parser.add_argument("--output", type=Path, help="write every count (per install and comparison) here as JSON")
    return parser.parse_args(argv)


def make_install(root: Path, planted: bool) -> Path:
    """A copy of the project's source as an importable ``cifar_bench`` under ``root``."""
    package = root / "cifar_bench"
    shutil.copytree(SOURCE / "harness", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SOURCE / "plugins", package / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    if planted:
        step = package / "training" / "step.py"
        text = step.read_text()
        if text.count(STEP_CALL) != 1:
            raise SystemExit("cannot find TrainStep.__call__ in training/step.py to plant the loop in")
        text = text.replace(STEP_CALL, PLANTED_CALL).replace("\nimport copy\n", "\nimport copy\nimport os\n", 1)
        step.write_text(text.replace("\nclass TrainStep:", PLANTED_LOOPS + "\n\nclass TrainStep:", 1))
    return root


def count(args: argparse.Namespace, install: Path, out: Path, loops: int) -> dict:
    """One counted run of ``install``; its record's instructions section."""
    env = {**os.environ, "PYTHONPATH": str(install), PLANT_ENV: str(loops)}
    command = [sys.executable, "-m", "cifar_bench", "run", "baseline", "--dataset", "synthetic", "--no-cache",
               "--limit-train", str(args.limit_train), "--limit-test", str(args.limit_test), "--measure",
               "instructions", "--steps", str(args.steps), "--results-dir", str(out)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"counted run of {install.name} failed ({done.returncode}): {done.stderr[-1500:]}")
    (path,) = out.glob("*.json")
    data = json.loads(path.read_text())
    return {**data["instructions"], "wall_s": seconds}


def gate(base: Path, current: Path, report: Path, threshold: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return cli(["compare", str(base), str(current), "--format", "json", "--output", str(report),
                    "--max-instructions-increase", threshold])  # fmt: skip


def compare_one(args: argparse.Namespace, root: Path, folder: dict, counts: dict, n: int) -> tuple[dict, tuple]:
    """Comparison ``n``: a against b (identical) and against p (planted), each at 1% and at the lower threshold."""
    codes = {}
    for kind in "bp":
        for threshold in ("1", args.threshold):
            report = root / f"report-{kind}-{n}-{threshold}.json"
            codes[kind, threshold] = gate(folder["a", n], folder[kind, n], report, threshold)
    false_alarm = any(codes["b", t] != 0 for t in ("1", args.threshold))
    caught = codes["p", args.threshold] == 1
    a, b, p = (counts[k, n]["per_step"] for k in "abp")
    low = args.threshold + "%"
    row = {"#": n + 1, "a instr/step": f"{a:,.0f}", "b / a − 1": f"{b / a - 1:+.4%}", "p / a − 1": f"{p / a - 1:+.4%}",
           f"identical: exit at 1% / {low}": f"{codes['b', '1']} / {codes['b', args.threshold]}",
           f"planted: exit at 1% / {low}": f"{codes['p', '1']} / {codes['p', args.threshold]}"}  # fmt: skip
    print(f"{n + 1:2d}: a {a:,.0f}, b {b / a - 1:+.4%}, p {p / a - 1:+.4%}; exits identical "
          f"{codes['b', '1']}/{codes['b', args.threshold]}, planted {codes['p', '1']}/{codes['p', args.threshold]}; "
          f"a's run {counts['a', n]['wall_s']:.0f} s; load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    return row, (false_alarm, caught)


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_before = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="instructions-gate-") as tmp:
        root = Path(tmp)
        installs = {kind: make_install(root / f"install-{kind}", kind == "p") for kind in "abp"}
        with ThreadPoolExecutor(2) as pool:
            calibration = [pool.submit(count, args, installs[k], root / f"calibrate-{k}", loops)
                           for k, loops in (("a", 0), ("p", CALIBRATION_LOOPS))]  # fmt: skip
            base_step, loop_step = (c.result()["per_step"] for c in calibration)
        per_loop = (loop_step - base_step) / CALIBRATION_LOOPS
        loops = round(args.plant * base_step / per_loop)
        print(f"a step: {base_step:,.0f} instructions; the loop: {per_loop:.1f} per iteration; planted: {loops:,} "
              f"iterations ({loops * per_loop / base_step:.3%} of a step)", flush=True)  # fmt: skip
        jobs = [(kind, n) for n in range(args.comparisons) for kind in "abp"]
        folder = {job: root / f"{job[0]}-{job[1]:02d}" for job in jobs}
        counts: dict[tuple[str, int], dict] = {}
        rows, outcomes = [], []
        with ThreadPoolExecutor(args.jobs) as pool:  # results in order: each comparison is gated once it is whole
            for job, counted in zip(jobs, pool.map(lambda j: count(args, installs[j[0]], folder[j], loops), jobs),
                                    strict=True):  # fmt: skip
                counts[job] = counted
                if job[0] == "p":
                    row, outcome = compare_one(args, root, folder, counts, job[1])
                    rows.append(row)
                    outcomes.append(outcome)
    elapsed = time.perf_counter() - started
    print(tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True))
    done = len(rows)
    false_alarms, caught = sum(o[0] for o in outcomes), sum(o[1] for o in outcomes)
    for kind in "abp":
        values = [counts[kind, n]["per_step"] for n in range(done)]
        evals = [counts[kind, n]["per_eval_image"] for n in range(done)]
        print(f"install {kind}: instructions per step median {statistics.median(values):,.0f}, spread (max-min)/median "
              f"{spread(values):.4%}; per evaluated image median {statistics.median(evals):,.0f}, spread "
              f"{spread(evals):.4%}")  # fmt: skip
    walls = [counts[k, n]["wall_s"] for k in "abp" for n in range(done)]
    print(f"a whole counted run (two at a time): median {statistics.median(walls):.0f} s, fastest {min(walls):.0f} s")
    planted = [counts["p", n]["per_step"] / counts["a", n]["per_step"] - 1 for n in range(done)]
    print(f"planted increase as counted: median {statistics.median(planted):.3%} (range {min(planted):.3%}-"
          f"{max(planted):.3%})")  # fmt: skip
    print(f"false regressions (identical installs, at 1% or {args.threshold}%): {false_alarms} of {done}")
    print(f"planted {args.plant:.1%} caught at {args.threshold}%: {caught} of {done}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, valgrind {callgrind.valgrind_version()}; {args.steps} "
          f"steps counted per run, {3 * done + 2} counted runs, {args.jobs} at a time, {elapsed / 60:.1f} min; "
          f"load average {load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")  # fmt: skip
    if args.output:
        saved = {f"{kind}-{n:02d}": counts[kind, n] for kind in "abp" for n in range(done)}
        about = {"plant_loops": loops, "machine": cpu_model(), "valgrind": callgrind.valgrind_version()}
        args.output.write_text(json.dumps({"counts": saved, "steps": args.steps, **about}, indent=1))
    return 0 if false_alarms == 0 and caught == done == args.comparisons else 1


if __name__ == "__main__":
    sys.exit(main())
