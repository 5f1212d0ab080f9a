"""How long the light commands take, whole process: ``cifar-bench --version`` and a ``compare`` of 10 vs 10 records.

Neither imports torch or torchvision (see cli.py), so each should finish
well within a second. Each command is started ``--rounds`` times as a new
process (as a user or a CI step starts it); the median and the range are
printed, with the machine.

    python benchmarks/command_speed.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cifar_bench.results.schema import ComponentRef, DatasetInfo, Environment, Metrics, RunRecord, Throughput, Timings
from cifar_bench.training.environment import cpu_model


def records(folder: Path, times: list[float]) -> Path:
    """One baseline-shaped record per time, as the runner writes them."""
    folder.mkdir(parents=True)
    for i, train_s in enumerate(times):
        record = RunRecord(
            run_id=f"{folder.name}-{i}",
            status="ok",
            recipe="baseline",
            components={"model": ComponentRef("net", "baseline")},
            hyperparameters={"epochs": 2, "batch_size": 4, "lr": 0.001},
            seed=i,
            device="cpu",
            loader="tensor",
            dataset=DatasetInfo("cifar10", "f00d", 50_000, 10_000, [f"c{k}" for k in range(10)]),
            metrics=Metrics(test_accuracy=0.53, epoch_loss=[1.7, 1.4]),
            timings=Timings(train_s=train_s, eval_s=0.4, total_s=train_s + 8),
            throughput=Throughput(train_img_s=100_000 / train_s, eval_img_s=25_000.0),
            environment=Environment("3.11", "2.14.1", "0.29.1", "Linux", cpu_model(), 1, cpu_model()),
        )
        (folder / f"{record.run_id}.json").write_text(json.dumps(record.to_dict()))
    return folder


def timed(command: list[str], rounds: int) -> list[float]:
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="processes started per command [15]")
    args = parser.parse_args()
    exe = shutil.which("cifar-bench") or sys.exit("cifar-bench is not on PATH: pip install -e . first")
    with tempfile.TemporaryDirectory() as tmp:
        base = records(Path(tmp) / "base", [40.0 + 0.3 * i for i in range(10)])
        pr = records(Path(tmp) / "pr", [40.5 + 0.3 * i for i in range(10)])
        commands = {
            "cifar-bench --version": [exe, "--version"],
            "cifar-bench compare base/ pr/ (10 vs 10 records)": [exe, "compare", str(base), str(pr)],
        }
        print(f"machine: {cpu_model()}; python {sys.version.split()[0]}; {args.rounds} processes each")
        for label, command in commands.items():
            seconds = timed(command, args.rounds)
            print(
                f"{label}: median {statistics.median(seconds):.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f})"
            )


if __name__ == "__main__":
    main()
