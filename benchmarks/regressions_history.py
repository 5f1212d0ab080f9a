"""A real history with a slowdown planted from one commit on: does ``cifar-bench regressions`` find it there?

Clones this repository's HEAD into a temporary folder and makes ``--commits`` commits there, each a harmless
change, except that from commit ``--plant-at`` on every training step also spins for ``--spin-ms``
milliseconds (in ``TrainStep.__call__``, harness/training/step.py): a slowdown that stays, as a regression
does until someone notices. Then, commit by commit, oldest first (as a nightly job would), one invocation of
short synthetic baseline runs with ``--repeats`` at each commit, each run made by its own commit's code; then
``cifar-bench regressions --last K`` (K = the commits from the plant on) and, with ``--site``, ``publish``.

    python benchmarks/regressions_history.py                        # 10 commits, the plant at the 6th
    python benchmarks/regressions_history.py --spin-ms 0.1 --site /tmp/history-site
    python benchmarks/regressions_history.py --count                # counted in instructions instead

With ``--count`` every run is ``run --measure instructions`` (5 counted steps on 16 synthetic images, under
valgrind: a minute and a half each on a 2-core VM) and the plant is extra work instead of a spin (a spin's
instructions depend on how long it waits): ``--plant-loops`` iterations of an empty Python loop per step,
8,300 by default, about 8% of the baseline's step (74 instructions an iteration, as instructions_gate.py
counted it). Each run is its own process (a count is), one a commit unless ``--repeats`` says more.

Prints each invocation's median train seconds, the load average before it, the regressions table, whether
the regression was found at the planted commit, and the machine. Exit code 0 when it was found there and
nothing else was called a regression, 1 if not.
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
from pathlib import Path

from publish_history_demo import check_out, git, harmless_commit

from cifar_bench.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
STEP_FILE = Path("harness") / "training" / "step.py"
STEP = "        self.optimizer.zero_grad()\n"  # the first line of this in step.py is in TrainStep.__call__
RUN = ["run", "baseline", "--dataset", "synthetic", "--limit-train", "1000", "--limit-test", "200", "--epochs", "1",
       "--quiet", "--threads", "1", "--no-cpu-tune"]  # fmt: skip
COUNTED_RUN = ["run", "baseline", "--dataset", "synthetic", "--limit-train", "16", "--limit-test", "8", "--quiet",
               "--measure", "instructions", "--steps", "5"]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=10, help="commits in the history [10]")
    parser.add_argument("--plant-at", type=int, default=6, help="the first slow commit, from 1 [6]")
    parser.add_argument("--spin-ms", type=float, default=0.2, help="milliseconds each training step spins [0.2]")
    parser.add_argument("--repeats", type=int, help="runs per commit [3 in one invocation; with --count 1]")
    parser.add_argument("--count", action="store_true", help="count instructions (run --measure instructions)")
    parser.add_argument("--plant-loops", type=int, default=8_300,
                        help="with --count: empty loop iterations planted per step [8,300: about 8%%]")  # fmt: skip
    parser.add_argument("--site", type=Path, help="also publish the history into this folder")
    parser.add_argument("--keep", action="store_true", help="keep the scratch repository and records")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.count else 3
    return args


def plant_work(checkout: Path, loops: int) -> None:
    """Make every training step run ``loops`` iterations of an empty loop first: work a count sees exactly."""
    path = checkout / STEP_FILE
    loop = f"        for _ in itertools.repeat(None, {loops}):  # planted extra work\n            pass\n"
    path.write_text(path.read_text().replace(STEP, loop + STEP, 1))


def plant(checkout: Path, spin_ms: float) -> None:
    """Make every training step spin for ``spin_ms`` ms: a busy wait, steadier than a sleep this short."""
    path = checkout / STEP_FILE
    text = path.read_text()
    spin = (f"        _until = time.perf_counter() + {spin_ms / 1000!r}  # planted slowdown\n"
            "        while time.perf_counter() < _until:\n            pass\n")  # fmt: skip
    text = text.replace("import itertools\n", "import itertools\nimport time\n", 1)
    path.write_text(text.replace(STEP, spin + STEP, 1))


def make_history(work: Path, args: argparse.Namespace) -> list[tuple[str, Path, Path]]:
    """The scratch repository's commits, oldest first: (hash, checkout, import path) each."""
    clone = work / "clone"
    git(work, "clone", "-q", str(ROOT), str(clone))
    git(clone, "config", "user.email", "bench@example.com")
    git(clone, "config", "user.name", "bench")
    commits = []
    for i in range(1, args.commits + 1):
        if i == args.plant_at and args.count:
            plant_work(clone, args.plant_loops)
            git(clone, "commit", "-qam", f"Planted work: each training step loops {args.plant_loops} times")
        elif i == args.plant_at:
            plant(clone, args.spin_ms)
            git(clone, "commit", "-qam", f"Planted slowdown: each training step spins {args.spin_ms} ms")
        else:
            harmless_commit(clone, i)
        commits.append((git(clone, "rev-parse", "HEAD"), *check_out(clone, work, i)))
    return commits


def run_history(work: Path, commits: list[tuple[str, Path, Path]], repeats: int, count: bool) -> Path:
    """``repeats`` runs at each commit, oldest first (timed: one invocation; counted: one process each, all with
    the same results folder name); prints the median and the load before."""
    records = work / "records"
    for i, (sha, checkout, path) in enumerate(commits, 1):
        load = os.getloadavg()[0]
        folder = records / f"commit{i:02d}"
        env = {**os.environ, "PYTHONPATH": str(path)}
        if count:
            for _ in range(repeats):  # staged under one name, so that only the code differs between commits
                staged = work / "counted"
                command = [sys.executable, "-m", "cifar_bench", *COUNTED_RUN, "--results-dir", str(staged)]
                subprocess.run(command, cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL)
                folder.mkdir(parents=True, exist_ok=True)
                for record in staged.glob("*.json"):
                    record.rename(folder / record.name)
            values = [json.loads(p.read_text())["instructions"]["per_step"] for p in folder.glob("*.json")]
            shown = f"median {statistics.median(values):,.0f} instructions per step"
        else:
            command = [sys.executable, "-m", "cifar_bench", *RUN, "--repeats", str(repeats), "--results-dir",
                       str(folder), "--cache-dir", str(work / "cache")]  # fmt: skip
            subprocess.run(command, cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL)
            values = [json.loads(p.read_text())["timings"]["train_s"] for p in folder.glob("*.json")]
            shown = f"median train {statistics.median(values):.3f} s"
        print(f"commit {i:2d} {sha[:8]}: {shown} over {len(values)} runs (load average {load:.2f} before)",
              flush=True)  # fmt: skip
    return records


def cifar_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_bench", *args], capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 1 < args.plant_at <= args.commits:
        raise SystemExit("--plant-at must be a commit after the first")
    work = Path(tempfile.mkdtemp(prefix="regressions-history-"))
    load_start = os.getloadavg()[0]
    commits = make_history(work, args)
    records = run_history(work, commits, args.repeats, args.count)
    window = str(args.commits - args.plant_at + 1)
    shown = cifar_bench("regressions", str(records), "--last", window)
    print(shown.stdout + shown.stderr)
    found = cifar_bench("regressions", str(records), "--last", window, "--format", "json")
    rows = json.loads(found.stdout)
    planted = commits[args.plant_at - 1][0]
    regressions = [r for r in rows if r["regression"]]
    measure = "instr/step" if args.count else "train s"
    hit = [r for r in regressions if r["commit"] == planted and r["measure"].startswith(measure)]
    ok = found.returncode == 1 and len(hit) == 1 and len(regressions) == len(hit)
    print(f"planted at commit {args.plant_at} ({planted[:8]}): {'found there' if hit else 'NOT found there'}; "
          f"exit code {found.returncode}; {len(regressions)} regression(s) listed in the newest {window} "
          "commits")  # fmt: skip
    if args.site:
        title = f"cifar-bench: a slowdown planted at commit {args.plant_at} of {args.commits}"
        published = cifar_bench("publish", str(records), "--output", str(args.site), "--title", title)
        print(published.stdout.strip() or published.stderr.strip())
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; load average "
          f"{load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1 min)")  # fmt: skip
    print(f"records and checkouts in {work}" if args.keep else "")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
