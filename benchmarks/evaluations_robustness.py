"""The baseline with its evaluations, twice: identical numbers? How long do the corruptions take, first and later?

    python benchmarks/evaluations_robustness.py --data-dir /tmp/cifar10/cifar10-jpeg [--runs 2] [--markdown]

Runs ``cifar-bench run baseline --data-dir DIR --evaluate corruptions,calibration --quiet`` ``--runs`` times,
each a new process, into one temporary results folder, with a cache folder of its own that starts without
any corrupted set (the decoded dataset and this machine's CPU-tuning decision are copied in from the usual
cache when there, so that only the evaluations start cold). The first run generates the default subset
(1,000 test images x 18 corruptions x 5 severities) and keeps it; later runs read it back. Prints, per run,
the test accuracy, the corruption evaluation's seconds (generating, evaluating, in all), the calibration
evaluation's seconds and the headline metrics; then whether every run gave the same numbers (all metrics,
tables and the set's digest), the corruption x severity table and the calibration figures of the first run,
and the machine: CPU model and load average before and after.

    python benchmarks/evaluations_robustness.py --data-dir DIR --timing-only [--threads 1]

times the corruption evaluation alone, without training (a freshly initialized baseline ``Net``: the work
per image is the same), twice in this process with a cold and then a warm cache folder, in wall seconds and
in this process's CPU seconds: on a shared machine the CPU seconds say what a quiet one would take.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tabulate import tabulate

from cifar_bench.cache import default_cache_dir
from cifar_bench.training.environment import cpu_model

COMMAND = ["run", "baseline", "--evaluate", "corruptions,calibration", "--quiet"]


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def seed_cache(folder: Path) -> None:
    """The usual cache's decoded datasets and CPU-tuning decision, copied in; no evaluation cache."""
    source = default_cache_dir()
    for path in [*source.glob("*.pt"), source / "cpu-tuning.json"]:
        if path.is_file():
            shutil.copy2(path, folder / path.name)


def run_once(exe: str, data_dir: str, results: Path, cache: Path, extra: list[str]) -> dict:
    """One run in a new process; its record."""
    before = set(results.glob("*.json"))
    command = [exe, *COMMAND, "--data-dir", data_dir, "--results-dir", str(results), "--cache-dir", str(cache)]
    subprocess.run([*command, *extra], check=True, stdout=subprocess.DEVNULL)
    (path,) = set(results.glob("*.json")) - before
    return json.loads(path.read_text())


def row(i: int, record: dict) -> dict:
    corruptions, calibration = record["evaluations"]["corruptions"], record["evaluations"]["calibration"]
    details = corruptions["details"]
    return {
        "run": i + 1,
        "test acc %": f"{100 * record['metrics']['test_accuracy']:.2f}",
        "train s": f"{record['timings']['train_s']:.1f}",
        "corruptions s": f"{corruptions['seconds']:.1f}",
        "generating s": f"{details['generated_s']:.1f}",
        "corruptions generated": len(details["generated"]),
        "evaluating s": f"{details['evaluated_s']:.1f}",
        "calibration s": f"{calibration['seconds']:.2f}",
        "mean corruption acc %": f"{100 * corruptions['metrics']['mean_accuracy']:.2f}",
        "ECE": f"{calibration['metrics']['ece']:.4f}",
        "digest": details["digest"][:12],
    }


def measured(record: dict) -> dict:
    """Everything that must be identical across runs: the accuracy, and every evaluation's numbers and digest."""
    keep = {name: {k: r[k] for k in ("metrics", "tables", "settings")} for name, r in record["evaluations"].items()}
    keep["corruptions"]["digest"] = record["evaluations"]["corruptions"]["details"]["digest"]
    return {"test_accuracy": record["metrics"]["test_accuracy"], "evaluations": keep}


def tables(record: dict, fmt: str) -> str:
    corruptions, calibration = record["evaluations"]["corruptions"], record["evaluations"]["calibration"]
    table = corruptions["tables"]["accuracy"]
    columns = ["1", "2", "3", "4", "5", "mean"]
    body = [[name, *(f"{100 * cells[c]:.1f}" for c in columns)] for name, cells in table.items()]
    details, metrics = corruptions["details"], corruptions["metrics"]
    lines = [
        tabulate(body, headers=["corruption (accuracy %)", *columns], tablefmt=fmt, disable_numparse=True),
        "",
        f"clean accuracy on the same {details['images']} images: {100 * details['clean_accuracy']:.2f}%; "
        f"mean corruption accuracy ({len(details['benchmark'])} benchmark corruptions): "
        f"{100 * metrics['mean_accuracy']:.2f}%; over all 18: {100 * details['mean_accuracy_all']:.2f}%; "
        f"relative drop {100 * metrics['relative_drop']:.1f}%; left out: {', '.join(details['left_out'])}",
        f"calibration (test split, {calibration['details']['images']} images): "
        + ", ".join(f"{k} {v:.4f}" for k, v in calibration["metrics"].items()),
        f"set digest (sha256): {details['digest']}",
    ]
    return "\n".join(lines)


def timing_only(data_dir: str, threads: int | None, fmt: str) -> None:
    """The corruption evaluation of the default subset, cold then warm cache: wall and CPU seconds."""
    import time

    import torch

    from cifar_bench import read_image_folder
    from cifar_bench.plugins import baseline, corruptions
    from cifar_bench.training.config import RunConfig
    from cifar_bench.training.data import load_tensors
    from cifar_bench.training.evaluations import make_input

    if threads:
        torch.set_num_threads(threads)
    dataset = read_image_folder(data_dir)
    _, test, _ = load_tensors(dataset, default_cache_dir())
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for label in ("first (cold cache)", "later (warm cache)"):
            data = make_input(model=baseline.Net().eval(), device=torch.device("cpu"), images=test.images,
                              labels=test.labels, indices=torch.arange(len(test)),
                              normalize=baseline.tutorial_transform({}).normalize, dataset=dataset,
                              config=RunConfig("baseline", cache_dir=Path(cache)), hp={"eval_batch_size": 1000},
                              test_accuracy=None)  # fmt: skip
            wall, cpu = time.perf_counter(), time.process_time()
            out = corruptions.evaluate(data, 1000)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append({"run": label, "wall s": f"{wall:.1f}", "CPU s": f"{cpu:.1f}",
                         "generating s": f"{out.details['generated_s']:.1f}",
                         "evaluating s": f"{out.details['evaluated_s']:.1f}", "load": load_average()})  # fmt: skip
            print(f"{label} done", flush=True)
    print(f"torch threads: {torch.get_num_threads()}")
    print(tabulate(rows, headers="keys", tablefmt=fmt, disable_numparse=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the extracted ImageFolder copy of CIFAR-10")
    parser.add_argument("--runs", type=int, default=2, help="how many times to run the command [2]")
    parser.add_argument("--markdown", action="store_true", help="tables as markdown (for the README)")
    parser.add_argument("--timing-only", action="store_true", help="time the corruption evaluation alone")
    parser.add_argument("--threads", type=int, help="with --timing-only: torch threads [torch's default]")
    parser.add_argument("extra", nargs="*", help="more flags for cifar-bench run (after --)")
    args = parser.parse_args()
    fmt = "github" if args.markdown else "simple"
    if args.timing_only:
        print(f"machine: {cpu_model()}, {os.cpu_count()} cores; load average before: {load_average()}", flush=True)
        timing_only(args.data_dir, args.threads, fmt)
        return
    exe = shutil.which("cifar-bench") or sys.exit("cifar-bench is not on PATH: pip install -e . first")
    print(f"command: cifar-bench {' '.join(COMMAND)} --data-dir {args.data_dir} {' '.join(args.extra)}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; load average before: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        results, cache = Path(tmp) / "results", Path(tmp) / "cache"
        results.mkdir()
        cache.mkdir()
        seed_cache(cache)
        records = []
        for i in range(args.runs):
            records.append(run_once(exe, args.data_dir, results, cache, args.extra))
            print(f"run {i + 1} done (load average {load_average()})", flush=True)
    print(tabulate([row(i, r) for i, r in enumerate(records)], headers="keys", tablefmt=fmt, disable_numparse=True))
    same = all(measured(r) == measured(records[0]) for r in records)
    print(f"\nidentical accuracy, evaluation metrics, tables and digest in all {len(records)} runs: {same}\n")
    print(tables(records[0], fmt))
    print(f"\nload average after: {load_average()}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
