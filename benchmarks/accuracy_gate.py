"""How often does the accuracy gate cry wolf, and how often does it catch a real loss of accuracy?

Trains two pools of runs of one workload on the real data (CIFAR-10, JPEG
copy): a **plain** pool, and a **planted** pool whose training labels are
partly redrawn at random (``noisy_labels_plugin.py``, sized through the
environment, so both pools are the same work to ``compare``: one loss
component, ``cross_entropy_planted``, on both sides, as two commits of one
recipe would be). Then it draws comparisons of n seeds a side from the
pools and applies the accuracy gate (:func:`cifar_bench.accuracy_stats.judge_accuracy`,
its default threshold and alpha):

* **A/A**: two disjoint draws from the plain pool. Any regression is false.
* **A/B**: a draw from the plain pool against one from the planted pool.
  The share caught is the power for the planted loss.
* **Shifted**: a draw from the plain pool against another from it, shifted
  down by the median detectable drop the gate printed for the A/A
  comparisons at that n: if the printed figure is right, about 80% are
  caught (the real run-to-run noise, with a known loss).

The workload (default): the baseline recipe (the tutorial's Net, SGD,
batch 4) for 1 epoch on a class-balanced 20,000 of the 50,000 training
images, tested on all 10,000 test images; one torch thread and no CPU
tuning, so that a seed's record does not depend on the machine's load or on
tuning decisions (runs of one seed repeat to the last digit). About 12 s a
run on a 2-core EPYC VM; 50 + 50 seeds take about 20 minutes.

The pools' records stay in ``--pool-dir`` (``plain/`` and ``planted/``) and
are reused: seeds already there are not trained again, so the analysis can
be re-run (other sizes, thresholds, draws) in seconds.

    python benchmarks/accuracy_gate.py                        # train what is missing, then analyse
    python benchmarks/accuracy_gate.py --pool-dir pools/ --comparisons 1000 --max-drop 0.25

Exit code 0 when the A/A false regression rate is at most 1 in 20 at every size, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

import cifar_bench
from cifar_bench.accuracy_stats import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_DROP,
    detectable_difference,
    judge_accuracy,
    power_at,
    welch_test,
)

HERE = Path(__file__).resolve().parent
PLUGIN = HERE / "noisy_labels_plugin.py"
PLANT_ENV = "CIFAR_BENCH_PLANTED_LABEL_NOISE"  # read by noisy_labels_plugin.py when its loss is built
ARCHIVE = HERE.parent.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"  # beside the checkout
PLANTED_SEED_OFFSET = 1000  # planted seeds are 1000, 1001, ...: no seed (weights, batch order) shared with plain
Z_95 = 1.959963984540054  # two-sided 95% normal quantile, for Wilson intervals
TARGET_FALSE_RATE = 0.05  # the target: at most 1 in 20 identical comparisons called a regression


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool-dir", type=Path, default=Path("accuracy-gate-pools"),
                        help="where the pools' records are kept and reused [accuracy-gate-pools/]")  # fmt: skip
    parser.add_argument("--data-dir", type=Path,
                        help="an extracted CIFAR-10 ImageFolder copy [extract ../shared/datasets/cifar10-jpeg.tar.gz "
                             "to a temporary folder, only when runs are missing]")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=50, help="runs (seeds) in each pool [50]")
    parser.add_argument("--limit-train", type=int, default=20000, help="class-balanced training images [20000]")
    parser.add_argument("--limit-test", type=int, help="class-balanced test images [all 10,000]")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run [1]")
    parser.add_argument("--noise", type=float, default=0.03,
                        help="the plant: share of training labels redrawn at random, planted pool [0.03]")  # fmt: skip
    parser.add_argument("--sizes", default="5,10", help="seeds a side of the comparisons drawn [5,10]")
    parser.add_argument("--comparisons", type=int, default=400, help="comparisons of each kind per size [400]")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help=f"the gate's alpha [{DEFAULT_ALPHA}]")
    parser.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP,
                        help=f"the gate's threshold, points [{DEFAULT_MAX_DROP}]")  # fmt: skip
    parser.add_argument("--draw-seed", type=int, default=0, help="seed of the draws [0]")
    parser.add_argument("--train-only", action="store_true", help="fill the pools, skip the analysis")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if 2 * max(args.sizes) > args.seeds:
        parser.error(f"A/A comparisons of {max(args.sizes)} seeds a side need at least {2 * max(args.sizes)} seeds")
    return args


# -- the pools -------------------------------------------------------------------------------------------------


def pool_records(folder: Path) -> dict[int, dict]:
    """seed -> record, for the ok records in a pool's folder."""
    records = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("status") == "ok":
            records[record["seed"]] = record
    return records


def run_argv(args: argparse.Namespace, data_dir: Path, cache: Path, folder: Path, seed: int) -> list[str]:
    """The ``cifar-bench`` command line of one pool run (the same for both pools but for the seed and folder)."""
    argv = ["-p", str(PLUGIN), "run", "baseline", "--loss", "cross_entropy_planted", "--data-dir", str(data_dir),
            "--limit-train", str(args.limit_train), "--epochs", str(args.epochs), "--threads", "1", "--no-cpu-tune",
            "--quiet", "--cache-dir", str(cache), "--results-dir", str(folder), "--seed", str(seed)]  # fmt: skip
    return argv + (["--limit-test", str(args.limit_test)] if args.limit_test else [])


def train_run(argv: list[str], noise: float, log: Path) -> None:
    """One run in this process (no start-up per run), its plant set through the environment, its output logged."""
    os.environ[PLANT_ENV] = repr(noise)
    try:
        with log.open("a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = cifar_bench.main(argv)
    finally:
        del os.environ[PLANT_ENV]
    if code != 0:
        raise SystemExit(f"a pool run failed (exit {code}); its output is in {log}")


def fill_pools(args: argparse.Namespace) -> float:
    """Train the runs missing from either pool, alternating plain and planted; returns the minutes taken."""
    plain, planted = args.pool_dir / "plain", args.pool_dir / "planted"
    have = {plain: pool_records(plain), planted: pool_records(planted)}
    jobs = [(folder, offset + i, noise) for i in range(args.seeds)
            for folder, offset, noise in ((plain, 0, 0.0), (planted, PLANTED_SEED_OFFSET, args.noise))
            if offset + i not in have[folder]]  # fmt: skip
    if not jobs:
        return 0.0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="accuracy-gate-") as scratch:
        data_dir = args.data_dir or extract(Path(scratch))
        for done, (folder, seed, noise) in enumerate(jobs, 1):
            folder.mkdir(parents=True, exist_ok=True)
            train_run(run_argv(args, data_dir, Path(scratch) / "cache", folder, seed), noise,
                      args.pool_dir / "runs.log")  # fmt: skip
            minutes = (time.perf_counter() - start) / 60
            print(f"  {done}/{len(jobs)} runs ({folder.name} seed {seed}), {minutes:.1f} min, "
                  f"load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)  # fmt: skip
    return (time.perf_counter() - start) / 60


def extract(scratch: Path) -> Path:
    """The offline CIFAR-10 copy, extracted into a scratch folder (never into shared/)."""
    if not ARCHIVE.exists():
        raise SystemExit(f"no --data-dir given and no archive at {ARCHIVE}")
    with tarfile.open(ARCHIVE) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(scratch, filter="data")
        else:  # Python before 3.11.4: the archive is the project's own
            archive.extractall(scratch)
    return scratch / "cifar10-jpeg"


def accuracies(records: dict[int, dict]) -> dict[int, float]:
    """seed -> test accuracy in percent."""
    return {seed: 100 * r["metrics"]["test_accuracy"] for seed, r in records.items()}


def check_same_work(records: list[dict]) -> str:
    """The workload key all pool runs share (the plant must not show in the work); exits if they differ."""
    keys = {r["workload"]["key"] for r in records}
    if len(keys) != 1:
        raise SystemExit(f"the pools' runs are not all the same work: workload keys {sorted(keys)}")
    return keys.pop()


# -- the analysis ----------------------------------------------------------------------------------------------


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson's 95% interval of a rate k / n (as fractions)."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = k / n, Z_95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{k}/{n} = {100 * k / n:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def draws(rng: random.Random, plain: list[float], planted: list[float], n: int, kind: str) -> tuple[list, list]:
    """One comparison's (baseline, current) values: disjoint draws of n seeds a side."""
    if kind == "A/B":
        return rng.sample(plain, n), rng.sample(planted, n)
    both = rng.sample(plain, 2 * n)
    return both[:n], both[n:]


def analyse_size(args: argparse.Namespace, plain: list[float], planted: list[float], n: int,
                 rng: random.Random) -> dict:  # fmt: skip
    """Every figure of one row of the table, for comparisons of n seeds a side."""
    gate = {"alpha": args.alpha, "max_drop": args.max_drop}
    false_alarms = significant_drops = caught = 0
    printed, printed_plain = [], []
    for _ in range(args.comparisons):
        verdict = judge_accuracy(*draws(rng, plain, planted, n, "A/A"), **gate)
        false_alarms += verdict.regression
        significant_drops += verdict.verdict in ("regression", "drop within threshold")
        printed_plain.append(verdict.detectable)
        verdict = judge_accuracy(*draws(rng, plain, planted, n, "A/B"), **gate)
        caught += verdict.regression
        printed.append(verdict.detectable)
    detectable, plain_detectable = statistics.median(printed), statistics.median(printed_plain)
    shifted = 0
    for _ in range(args.comparisons):  # the plain pool's own noise, a known loss: what A/A comparisons printed
        baseline, current = draws(rng, plain, planted, n, "A/A")
        shifted += judge_accuracy(baseline, [v - plain_detectable for v in current], **gate).regression
    sd_plain, sd_planted = statistics.stdev(plain), statistics.stdev(planted)
    loss = statistics.fmean(plain) - statistics.fmean(planted)
    predicted = power_at(loss, sd_plain, n, sd_planted, n, alpha=args.alpha, threshold=args.max_drop)
    expected = detectable_difference(sd_plain, n, sd_planted, n, alpha=args.alpha, threshold=args.max_drop)
    quartiles = statistics.quantiles(printed, n=4)
    return {
        "seeds a side": n,
        "false": false_alarms / args.comparisons,
        "A/A false regressions": rate(false_alarms, args.comparisons),
        "A/A significant drops": rate(significant_drops, args.comparisons),
        "A/B planted caught (power)": rate(caught, args.comparisons),
        "power predicted from pool SDs": f"{100 * predicted:.0f}%",
        "A/B printed detectable, median [IQR]": f"{detectable:.2f} [{quartiles[0]:.2f}, {quartiles[2]:.2f}]",
        "detectable from pool SDs": f"{expected:.2f}",
        "A/A printed detectable, median": f"{plain_detectable:.2f}",
        "plain shifted by that, caught": rate(shifted, args.comparisons),
    }


def describe_pool(name: str, values: list[float]) -> str:
    return (f"{name}: {len(values)} seeds, mean {statistics.fmean(values):.2f}%, SD {statistics.stdev(values):.2f} "
            f"points, range {min(values):.2f}-{max(values):.2f}")  # fmt: skip


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it (or the platform's guess)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = os.getloadavg()
    minutes = fill_pools(args)
    if args.train_only:
        return 0
    plain_records, planted_records = pool_records(args.pool_dir / "plain"), pool_records(args.pool_dir / "planted")
    plain_acc, planted_acc = accuracies(plain_records), accuracies(planted_records)
    plain = [plain_acc[s] for s in range(args.seeds) if s in plain_acc]
    offset = PLANTED_SEED_OFFSET
    planted = [planted_acc[offset + s] for s in range(args.seeds) if offset + s in planted_acc]
    key = check_same_work([*plain_records.values(), *planted_records.values()])
    rng = random.Random(args.draw_seed)
    rows = [analyse_size(args, plain, planted, n, rng) for n in args.sizes]
    whole = welch_test(plain, planted, alpha=0.025)  # a 95% interval of the planted loss over the whole pools
    record = next(iter(plain_records.values()))
    met = all(row.pop("false") <= TARGET_FALSE_RATE for row in rows)
    print(tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True))
    print()
    print(describe_pool("plain pool", plain))
    print(describe_pool(f"planted pool ({100 * args.noise:g}% of training labels redrawn)", planted))
    print(f"planted loss (plain minus planted mean): {-whole.difference:.2f} points, 95% CI "
          f"[{-whole.ci_high:.2f}, {-whole.ci_low:.2f}]")  # fmt: skip
    print(f"gate: regression = drop significant at alpha {args.alpha} (one-sided Welch) and larger than "
          f"{args.max_drop} points; {args.comparisons} comparisons of each kind per size, "
          f"draw seed {args.draw_seed}")  # fmt: skip
    data = record["workload"]["data"]
    print(f"workload {key}: baseline recipe (Net, SGD lr 0.001, batch 4), {args.epochs} epoch(s), "
          f"{data['train_size']:,} train / {data['test_size']:,} test images of CIFAR-10 (JPEG copy), "
          "1 thread")  # fmt: skip
    env = record["environment"]
    trained = f"pool training {minutes:.1f} min this time" if minutes else "pools reused, nothing trained"
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {env['torch']}; "
          f"load average {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end; {trained}")  # fmt: skip
    print(f"target (A/A false regressions at most 1 in 20 at every size) {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
