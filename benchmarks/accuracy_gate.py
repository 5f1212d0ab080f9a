"""How often does the accuracy gate cry wolf, and how often does it catch a real loss of accuracy?

Trains pools of runs of one workload on the real data (CIFAR-10, JPEG
copy): a **plain** pool, and one **planted** pool per ``--noise`` level
whose training labels are partly redrawn at random
(``noisy_labels_plugin.py``, sized through the environment, so that every
pool is the same work to ``compare``: one loss component,
``cross_entropy_planted``, on all sides, as two commits of one recipe
would be; the script checks that all records share one workload key).
Then it draws comparisons of n seeds a side from the pools and applies the
accuracy gate exactly as ``compare`` does (:func:`cifar_bench.results.compare_accuracy.judge`,
its default threshold and alpha):

* **A/A**: two disjoint draws from the plain pool. Any regression is false.
* **Shifted**: a draw from the plain pool against another from it, shifted
  down by the median detectable drop the gate printed for the A/A
  comparisons at that n: if the printed figure is right, about 80% are
  caught (the real run-to-run noise, a known loss).
* **A/B**: a draw from the plain pool against one from a planted pool. The
  share caught is the power for that planted loss, printed beside the
  power that the pools' SDs predict and the detectable drop printed.

Size 1 (one seed a side, in the default ``--sizes 1,5,10``) measures the
single-run rule: no test is possible, and only a drop beyond the single-run
threshold (5 points) is a regression; its prediction is the normal one,
``P(difference < -threshold)`` with the two pools' SDs.

The workload (default): the baseline recipe (the tutorial's Net, SGD,
batch 4) for 1 epoch on a class-balanced 20,000 of the 50,000 training
images, tested on all 10,000 test images; one torch thread and no CPU
tuning, so that a seed's record does not depend on the machine's load or on
tuning decisions (a seed's record repeats to the last digit, in this
process or in a fresh ``cifar-bench run``). About 12 s a run on a quiet
2-core EPYC VM (the defaults, 50 plain and 30 per plant, about 22 minutes),
25-35 s at load average 4-6: there, shared with other work, 50 plain + 50
at 3% took 46 minutes and 30 at 10% another 17.

Draws from finite pools are not independent comparisons: 2,000 A/A draws
of 10 + 10 from 50 seeds use every seed about 800 times, and only 2 disjoint
comparisons of 10 + 10 fit in 50 seeds. The Wilson intervals printed assume
independent comparisons, so they measure how well the draws pin down the
rate *for these pools*, not the recipe's: the pools' own means and spreads
are one sample of the recipe's (the planted loss, estimated from the whole
pools, is printed with its own 95% interval for that reason).

The pools' records stay in ``--pool-dir`` (``plain/``, ``planted-<noise>/``)
and are reused: seeds already there are not trained again, so the analysis
can be re-run (other sizes, thresholds, draws) in seconds.

    python benchmarks/accuracy_gate.py                        # train what is missing, then analyse
    python benchmarks/accuracy_gate.py --pool-dir pools/ --no-train --comparisons 2000 --max-drop 0.25

Exit code 0 when the A/A false regression rate is not above 1 in 20 at any size, 1 otherwise. "Not above"
is judged by the rate's Wilson interval: its lower end must be at most 5%. Where the threshold does not bind
(the baseline's spread, 5-10 seeds a side), the test's false rate is alpha itself, exactly 1 in 20 at the
default 0.05 (20,000 draws from the plain pool: 4.9% at 5 seeds a side, 5.2% at 10), so a point estimate
from 2,000 draws lands above 5% about half the time; only an interval wholly above 5% shows the gate crying
wolf more often than its design allows.
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
from cifar_bench.machine import cpu_model
from cifar_bench.results.accuracy_stats import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_DROP,
    DEFAULT_POWER,
    DEFAULT_SINGLE_RUN_MAX_DROP,
    AccuracyVerdict,
    detectable_difference,
    power_at,
    welch_test,
)
from cifar_bench.results.compare_accuracy import judge

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
    parser.add_argument("--noise", default="0.03,0.1",
                        help="the plants: shares of training labels redrawn, a pool each [0.03,0.1]")  # fmt: skip
    parser.add_argument("--planted-seeds", type=int, default=30, help="runs in each planted pool [30]")
    parser.add_argument("--sizes", default="1,5,10", help="seeds a side of the comparisons drawn [1,5,10]")
    parser.add_argument("--comparisons", type=int, default=2000, help="comparisons of each kind per row [2000]")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help=f"the gate's alpha [{DEFAULT_ALPHA}]")
    parser.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP,
                        help=f"the gate's threshold, points [{DEFAULT_MAX_DROP}]")  # fmt: skip
    parser.add_argument("--draw-seed", type=int, default=0, help="seed of the draws [0]")
    parser.add_argument("--train-only", action="store_true", help="fill the pools, skip the analysis")
    parser.add_argument("--no-train", action="store_true", help="analyse the runs the pools hold, train none")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.noise = [float(f) for f in args.noise.split(",")]
    if 2 * max(args.sizes) > args.seeds or max(args.sizes) > args.planted_seeds:
        parser.error(f"comparisons of {max(args.sizes)} seeds a side need {2 * max(args.sizes)} plain seeds "
                     f"and {max(args.sizes)} planted")  # fmt: skip
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


def planted_dir(args: argparse.Namespace, noise: float) -> Path:
    return args.pool_dir / f"planted-{noise:g}"


def fill_pools(args: argparse.Namespace) -> float:
    """Train the runs missing from any pool, taking the pools in turn; returns the minutes taken."""
    pools = [(args.pool_dir / "plain", 0, 0.0, args.seeds)]
    pools += [(planted_dir(args, f), PLANTED_SEED_OFFSET, f, args.planted_seeds) for f in args.noise]
    have = {folder: pool_records(folder) for folder, *_ in pools}
    jobs = [(folder, offset + i, noise) for i in range(max(args.seeds, args.planted_seeds))
            for folder, offset, noise, size in pools if i < size and offset + i not in have[folder]]  # fmt: skip
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


def draws(rng: random.Random, plain: list[float], planted: list[float] | None, n: int) -> tuple[list, list]:
    """One comparison's (baseline, current) values: n seeds a side, disjoint (A/A when ``planted`` is None)."""
    if planted is not None:
        return rng.sample(plain, n), rng.sample(planted, n)
    both = rng.sample(plain, 2 * n)
    return both[:n], both[n:]


def judge_accuracy(baseline: list[float], current: list[float], *, alpha: float, max_drop: float) -> AccuracyVerdict:
    """The accuracy verdict compare gives these two sides (points)."""
    return judge(baseline, current, max_drop=max_drop, alpha=alpha).verdict


def single_run_prediction(drop: float, sd_baseline: float, sd_current: float, max_drop: float) -> tuple[float, float]:
    """(power, detectable drop) of the single-run rule for a true ``drop``: a normal difference of one run each."""
    threshold = max(max_drop, DEFAULT_SINGLE_RUN_MAX_DROP)
    sd = math.hypot(sd_baseline, sd_current)
    normal = statistics.NormalDist()
    return normal.cdf((drop - threshold) / sd), threshold + normal.inv_cdf(DEFAULT_POWER) * sd


def identical_row(args: argparse.Namespace, plain: list[float], n: int, rng: random.Random) -> dict:
    """A/A comparisons of n seeds a side, then the plain pool against itself shifted by what they printed."""
    gate = {"alpha": args.alpha, "max_drop": args.max_drop}
    false_alarms = significant_drops = 0
    printed = []
    for _ in range(args.comparisons):
        verdict = judge_accuracy(*draws(rng, plain, None, n), **gate)
        false_alarms += verdict.regression
        significant_drops += verdict.verdict in ("regression", "drop within threshold")
        printed.append(verdict.detectable)
    if n == 1:  # no test, nothing printed as detectable: the single-run threshold alone
        return {"seeds a side": n, "false": false_alarms,
                "A/A false regressions": rate(false_alarms, args.comparisons), "A/A significant drops": "no test",
                "printed detectable, median": "none (no test)", "plain shifted down by that: caught": "–"}  # fmt: skip
    detectable = statistics.median(printed)
    shifted = 0
    for _ in range(args.comparisons):  # the plain pool's own noise, and a known loss: the printed detectable drop
        baseline, current = draws(rng, plain, None, n)
        shifted += judge_accuracy(baseline, [v - detectable for v in current], **gate).regression
    return {
        "seeds a side": n,
        "false": false_alarms,
        "A/A false regressions": rate(false_alarms, args.comparisons),
        "A/A significant drops": rate(significant_drops, args.comparisons),
        "printed detectable, median": f"{detectable:.2f}",
        "plain shifted down by that: caught": rate(shifted, args.comparisons),
    }


def planted_row(args: argparse.Namespace, plain: list[float], planted: list[float], noise: float, n: int,
                rng: random.Random) -> dict:  # fmt: skip
    """A/B comparisons of n seeds a side: caught, against what the pools' spreads predict."""
    gate = {"alpha": args.alpha, "max_drop": args.max_drop}
    caught, printed = 0, []
    for _ in range(args.comparisons):
        verdict = judge_accuracy(*draws(rng, plain, planted, n), **gate)
        caught += verdict.regression
        printed.append(verdict.detectable)
    sd_plain, sd_planted = statistics.stdev(plain), statistics.stdev(planted)
    loss = welch_test(plain, planted, alpha=0.025)  # a 95% interval of the planted loss over the whole pools
    if n == 1:
        predicted, expected = single_run_prediction(-loss.difference, sd_plain, sd_planted, args.max_drop)
        shown = "none (no test)"
    else:
        predicted = power_at(-loss.difference, sd_plain, n, sd_planted, n, alpha=args.alpha, threshold=args.max_drop)
        expected = detectable_difference(sd_plain, n, sd_planted, n, alpha=args.alpha, threshold=args.max_drop)
        quartiles = statistics.quantiles(printed, n=4)
        shown = f"{statistics.median(printed):.2f} [{quartiles[0]:.2f}, {quartiles[2]:.2f}]"
    return {
        "plant": f"{100 * noise:g}% labels",
        "loss (pools), 95% CI": f"{-loss.difference:.2f} [{-loss.ci_high:.2f}, {-loss.ci_low:.2f}]",
        "seeds a side": n,
        "caught (power)": rate(caught, args.comparisons),
        "power predicted from pool SDs": f"{100 * predicted:.0f}%",
        "printed detectable, median [IQR]": shown,
        "detectable from pool SDs": f"{expected:.2f}",
    }


def describe_pool(name: str, values: list[float]) -> str:
    return (f"{name}: {len(values)} seeds, mean {statistics.fmean(values):.2f}%, SD {statistics.stdev(values):.2f} "
            f"points, range {min(values):.2f}-{max(values):.2f}")  # fmt: skip


def load_pools(args: argparse.Namespace) -> tuple[list[float], dict[float, list[float]], dict]:
    """(plain accuracies, {noise: planted accuracies}, a plain record): every ok run the pools hold, all one work."""
    plain_records = pool_records(args.pool_dir / "plain")
    planted_records = {f: pool_records(planted_dir(args, f)) for f in args.noise}
    check_same_work([*plain_records.values(), *(r for pool in planted_records.values() for r in pool.values())])
    plain = list(accuracies(plain_records).values())
    planted = {noise: list(accuracies(records).values()) for noise, records in planted_records.items()}
    for name, values in (("plain", plain), *((f"planted-{f:g}", v) for f, v in planted.items())):
        if len(values) < (2 if name == "plain" else 1) * max(args.sizes):
            raise SystemExit(f"the {name} pool holds {len(values)} runs: too few for {max(args.sizes)} a side")
    return plain, planted, next(iter(plain_records.values()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = os.getloadavg()
    minutes = 0.0 if args.no_train else fill_pools(args)
    if args.train_only:
        return 0
    plain, planted, record = load_pools(args)
    rng = random.Random(args.draw_seed)
    identical = [identical_row(args, plain, n, rng) for n in args.sizes]
    counts = [row.pop("false") for row in identical]  # every row's, before the table is printed
    met = all(wilson(k, args.comparisons)[0] <= TARGET_FALSE_RATE for k in counts)
    print(tabulate(identical, headers="keys", tablefmt="github", disable_numparse=True))
    print()
    rows = [planted_row(args, plain, planted[f], f, n, rng) for f in args.noise for n in args.sizes]
    print(tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True))
    print()
    print(describe_pool("plain pool", plain))
    for noise, values in planted.items():
        print(describe_pool(f"planted pool, {100 * noise:g}% of training labels redrawn", values))
    print(f"gate: regression = drop significant at alpha {args.alpha} (one-sided Welch) and larger than "
          f"{args.max_drop} points (one seed a side: larger than {max(args.max_drop, DEFAULT_SINGLE_RUN_MAX_DROP):g}, "
          f"no test); {args.comparisons} comparisons of each kind per row, draw seed {args.draw_seed}")  # fmt: skip
    data = record["workload"]["data"]
    print(f"workload {record['workload']['key']}: baseline recipe (Net, SGD lr 0.001, batch 4), {args.epochs} "
          f"epoch(s), {data['train_size']:,} train / {data['test_size']:,} test images of CIFAR-10 (JPEG copy), "
          "1 thread")  # fmt: skip
    trained = f"pool training {minutes:.1f} min this time" if minutes else "pools reused, nothing trained"
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {record['environment']['torch']}; load average {load_start[0]:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end; {trained}")  # fmt: skip
    print(f"target (A/A false regressions not above 1 in 20 at any size: each interval's lower end at most 5%) "
          f"{'met' if met else 'NOT met'}")  # fmt: skip
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
