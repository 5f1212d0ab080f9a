"""What running a suite through Ray costs against the local executor: per run, and once per suite.

Runs one 8-run suite (synthetic data, short runs, one thread each) with
``cifar-bench suite`` both ways, alternated over ``--rounds`` rounds:

* **local**: ``cifar-bench suite FILE`` (each run in turn in the driver's process);
* **ray**: ``cifar-bench suite FILE --executor ray --address ...`` against a
  local Ray instance this script starts beforehand with 1 CPU, so that Ray
  too runs one run at a time and the two compare like with like, as a user
  with a running cluster would.

Each suite is its own process; the script stamps each line it prints as it
arrives. Per executor it reports the wall time, the runs' own time (the sum
of the records' ``total_s``), the **start-up** (from launching the command to
its first record, less that run's own time: imports, connecting, decoding
and shipping the data, starting a worker) and the **per-run overhead** in
steady state (the gap between consecutive records less the later run's own
time: handing out the task, bringing the record back, writing it).

    python benchmarks/ray_overhead.py [--rounds 2] [--runs 8]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """
name = "ray-overhead"
[defaults]
dataset = "synthetic"
limit_train = 500
limit_test = 100
epochs = 1
threads = 1

[[runs]]
recipes = "baseline"
seeds = {seeds}
"""


def measure(command: list[str], results: Path, marker: str) -> dict[str, float]:
    """Run one suite; stamp each line that says a record was written."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "CIFAR_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    stamps, lines = [], []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            stamps.append(time.perf_counter() - start)
    wall = time.perf_counter() - start
    if process.wait() != 0:
        sys.exit("".join(lines[-30:]))
    found = sorted((json.loads(p.read_text()) for p in results.glob("*.json")), key=lambda r: r["started_at"])
    own = [r["timings"]["total_s"] for r in found]
    if len(stamps) != len(own):
        sys.exit(f"{len(stamps)} record lines for {len(own)} records:\n" + "".join(lines[-30:]))
    # One run at a time (a 1-CPU Ray instance), so records come back in the order the runs started: the time from
    # the first record to the last, less the runs between, is what each later run cost beyond its own time.
    return {
        "wall_s": wall,
        "runs_own_s": sum(own),
        "startup_s": stamps[0] - own[0],
        "per_run_overhead_s": (stamps[-1] - stamps[0] - sum(own[1:])) / (len(own) - 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.WARNING)
    address = ray.get_runtime_context().gcs_address
    rows = []
    with tempfile.TemporaryDirectory(prefix="ray-overhead-") as folder:
        suite = Path(folder) / "suite.toml"
        suite.write_text(SUITE.format(seeds=list(range(args.runs))))
        base = [sys.executable, "-m", "cifar_bench", "suite", str(suite), "--quiet"]
        for r in range(args.rounds):
            for executor in ("local", "ray") if r % 2 == 0 else ("ray", "local"):
                results = Path(folder) / f"{executor}-{r}"
                extra = ["--executor", "ray", "--address", address] if executor == "ray" else []
                marker = "record: " if executor == "local" else ": ok, "
                row = measure([*base, *extra, "--results-dir", str(results)], results, marker)
                rows.append({"executor": executor, "round": r + 1, **row})
                print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()

    machine = platform.processor() or platform.machine()
    print(f"\n{args.runs} runs per suite, one at a time; {machine}")
    print("| executor | wall s | runs' own s | start-up s | per-run overhead ms |")
    print("| --- | --- | --- | --- | --- |")
    for executor in ("local", "ray"):
        mine = [row for row in rows if row["executor"] == executor]
        wall, own, startup, per_run = (statistics.median(row[k] for row in mine) for k in
                                       ("wall_s", "runs_own_s", "startup_s", "per_run_overhead_s"))  # fmt: skip
        print(f"| {executor} | {wall:.1f} | {own:.1f} | {startup:.1f} | {1e3 * per_run:.1f} |")
    print(f"(medians over {args.rounds} rounds; load average at the end: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
