"""Benchmark (a): the tutorial script as written versus `cifar-bench run baseline`.

Both train the same recipe on the same offline CIFAR-10 copy, one after the
other, alternating, so that drift of the machine hits both alike. Reported:
whole-process wall time of each (interpreter start to exit), their ratio,
and both test accuracies. The harness's decoded-data cache is warmed first
(the target is for a warm cache); that warm-up run is not counted.

    python benchmarks/tutorial_vs_harness.py --data-dir /tmp/cifar10-jpeg --pairs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cifar_bench.training.environment import cpu_model

HERE = Path(__file__).resolve().parent


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the extracted ImageFolder copy")
    parser.add_argument("--pairs", type=int, default=2, help="tutorial/harness pairs to run [2]")
    parser.add_argument("--harness-args", default="", help="extra flags for cifar-bench run")
    args = parser.parse_args()

    results = Path(tempfile.mkdtemp(prefix="cifar-bench-bench-"))
    harness = [sys.executable, "-m", "cifar_bench", "run", "baseline", "--data-dir", args.data_dir, "--quiet",
               "--results-dir", str(results), *args.harness_args.split()]  # fmt: skip
    tutorial = [sys.executable, str(HERE / "tutorial_script.py"), "--data-dir", args.data_dir]
    # Warm the decoded-data cache: a tiny run still decodes and caches the whole dataset.
    subprocess.run([*harness, "--limit-train", "10", "--limit-test", "10", "--epochs", "1"], check=True,
                   capture_output=True)  # fmt: skip
    for old in results.glob("*.json"):
        old.unlink()

    rows = []
    for pair in range(args.pairs):
        t_wall, t_out = timed(tutorial)
        t = json.loads(t_out.strip().splitlines()[-1])
        h_wall, _ = timed(harness)
        newest = max(results.glob("*.json"), key=os.path.getmtime)
        h = json.loads(newest.read_text())
        rows.append((t_wall, t["accuracy"], h_wall, h["metrics"]["test_accuracy"], h["timings"]["train_s"]))
        timings = h["timings"]
        startup = timings.get("startup_s") or 0.0
        accounted = startup + timings["total_s"]  # start-up, then the run itself
        print(
            f"  cifar-bench's record: start-up {startup:.2f} s, setup {timings['setup_s']:.2f} s, "
            f"warm-up {timings['warmup_s']:.2f} s, train {timings['train_s']:.2f} s, "
            f"eval {timings['eval_s']:.2f} s, run total {timings['total_s']:.2f} s; accounted {accounted:.2f} s "
            f"of the process's {h_wall:.2f} s (left: {h_wall - accounted:.2f} s: writing the record, exit); "
            f"outside training {h_wall - timings['train_s']:.2f} s",
            flush=True,
        )
        print(
            f"pair {pair + 1}: tutorial {t_wall:6.1f} s (train {t['train_s']:.1f} s, eval {t['eval_s']:.1f} s), "
            f"acc {100 * t['accuracy']:.2f}% | cifar-bench {h_wall:6.1f} s (train {h['timings']['train_s']:.1f} s, "
            f"eval {h['timings']['eval_s']:.2f} s), acc {100 * h['metrics']['test_accuracy']:.2f}% "
            f"| ratio {h_wall / t_wall:.3f}",
            flush=True,
        )
    ratio = statistics.median(r[2] / r[0] for r in rows)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"median whole-process wall-time ratio cifar-bench / tutorial: {ratio:.3f} (target <= 0.25)")


if __name__ == "__main__":
    main()
