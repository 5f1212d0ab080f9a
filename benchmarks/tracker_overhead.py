"""What the MLflow and TensorBoard trackers cost a run, hook by hook.

``train_progress`` is called inside the timed training phase (every 50
steps), so its cost is paid in train time; ``run_start``, ``epoch_end`` and
``run_end`` are outside it (in the run's total time). Each tracker is driven
through ``--epochs`` simulated epochs of ``--events`` progress events (the
full CIFAR-10 baseline: 12,500 steps / 50 = 250 per epoch), with a real back
end: MLflow's local SQLite store in a temporary folder (or ``--mlflow-uri``,
a server), TensorBoard event files in a temporary folder. A do-nothing
observer's method call is the floor. Each is also driven as ``--track`` makes it, inside the guard that
keeps a tracker's failure from failing a run (``cifar_bench.execution.tracking.Guarded``): rows marked
``(--track)``. Prints a table and the machine.

    python benchmarks/tracker_overhead.py [--epochs 5] [--events 250] [--mlflow-uri URI]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from cifar_bench import EpochResult, RunInfo, RunRecord, TrainProgress
from cifar_bench.execution.tracking import Guarded, TrackSpec
from cifar_bench.machine import cpu_model
from cifar_bench.plugins.mlflow_tracker import MlflowTracker
from cifar_bench.plugins.tensorboard_tracker import TensorboardTracker

STEPS_PER_EVENT = 50  # the harness's progress interval, in training steps
BASELINE_STEPS_PER_EPOCH = 12_500  # CIFAR-10's 50,000 images in batches of 4


class Floor:
    """An observer that does nothing: what any method call costs."""

    name = "(no-op observer)"
    problem = None

    def run_start(self, run):
        pass

    def train_progress(self, run, progress):
        pass

    def epoch_end(self, run, epoch):
        pass

    def run_end(self, run, record):
        pass

    def close(self):
        pass


def fake_record(run: RunInfo, epochs: int) -> RunRecord:
    """A finished record of ``run``'s shape (what run_end gets), built from its JSON form."""
    return RunRecord.from_dict({
        "run_id": run.run_id, "status": "ok", "recipe": run.recipe, "seed": 0, "device": "cpu", "loader": "tensor",
        "components": {"model": {"name": "net", "plugin": "baseline"}}, "hyperparameters": dict(run.hyperparameters),
        "dataset": None, "environment": {"python": "3", "torch": "2", "torchvision": "0", "platform": "linux",
                                         "cpu": cpu_model(), "threads": 1, "device_name": cpu_model()},
        "metrics": {"test_accuracy": 0.5, "per_class_accuracy": {f"c{i}": 0.5 for i in range(10)},
                    "epoch_loss": [2.0] * epochs},
        "timings": {"train_s": 1.0}, "throughput": {"train_img_s": 1000.0}, "memory": {},
    })  # fmt: skip


def drive(tracker, epochs: int, events: int) -> dict[str, list[float]]:
    """One run through every hook; seconds per call of each hook."""
    steps = events * STEPS_PER_EVENT
    run = RunInfo(f"bench-{time.time_ns()}", "baseline", "cpu", "tensor", {"lr": 0.001, "batch_size": 4},
                  "synthetic", 4 * steps, 10_000, steps, epochs)  # fmt: skip
    seconds: dict[str, list[float]] = {"run_start": [], "train_progress": [], "epoch_end": [], "run_end": []}
    clock = time.perf_counter
    t = clock()
    tracker.run_start(run)
    seconds["run_start"].append(clock() - t)
    for epoch in range(1, epochs + 1):
        for event in range(1, events + 1):
            progress = TrainProgress(
                epoch, event * STEPS_PER_EVENT, steps, 4 * event * STEPS_PER_EVENT, 0.1 * event, 2.0
            )
            t = clock()
            tracker.train_progress(run, progress)
            seconds["train_progress"].append(clock() - t)
        t = clock()
        tracker.epoch_end(run, EpochResult(epoch, 2.0, 10.0, 4 * steps))
        seconds["epoch_end"].append(clock() - t)
    record = fake_record(run, epochs)
    t = clock()
    tracker.run_end(run, record)
    seconds["run_end"].append(clock() - t)
    tracker.close()
    if tracker.problem:
        raise SystemExit(f"{tracker.name} failed: {tracker.problem}")
    return seconds


def as_tracked(tracker) -> Guarded:
    """``tracker`` as ``--track`` registers it: inside the guard, which calls its hooks."""
    guarded = Guarded(TrackSpec(tracker.name), "trackers", tracker)
    guarded.name = f"{tracker.name} (--track)"
    return guarded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run [5]")
    parser.add_argument("--events", type=int, default=250, help="progress events per epoch [250, baseline's]")
    parser.add_argument("--mlflow-uri", help="an MLflow tracking URI [a SQLite store in a temporary folder]")
    args = parser.parse_args()
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # MLflow's local store puts artifacts in ./mlruns
        try:
            uri = args.mlflow_uri or f"sqlite:///{tmp}/mlflow.db"
            makers = [Floor, lambda: MlflowTracker("tracker-overhead", tracking_uri=uri),
                      lambda: TensorboardTracker("tb")]  # fmt: skip
            rows = []
            for make in makers:
                tracker = make()
                rows.append((tracker.name, drive(tracker, args.epochs, args.events)))
                rows.append((f"{tracker.name} (--track)", drive(as_tracked(make()), args.epochs, args.events)))
        finally:
            os.chdir(here)
    print(f"{'tracker':<28} {'hook':<15} {'calls':>6} {'median us':>10} {'max us':>10}")
    for name, seconds in rows:
        for hook, values in seconds.items():
            print(f"{name:<28} {hook:<15} {len(values):>6} {1e6 * statistics.median(values):>10.1f} "
                  f"{1e6 * max(values):>10.1f}")  # fmt: skip
    progress_us = {name: 1e6 * statistics.median(s["train_progress"]) for name, s in rows}
    for name, us in progress_us.items():
        per_epoch_ms = us * BASELINE_STEPS_PER_EPOCH / STEPS_PER_EVENT / 1e3
        print(f"{name}: train_progress adds {per_epoch_ms:.2f} ms to a baseline CIFAR-10 epoch's train time")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {load}; MLflow store: "
          f"{'the given URI' if args.mlflow_uri else 'local SQLite'}")  # fmt: skip


if __name__ == "__main__":
    main()
