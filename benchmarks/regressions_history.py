"""A real history with a slowdown planted from one commit on: does ``cifar-bench regressions`` find it there?

Clones this repository's HEAD into a temporary folder and makes ``--commits`` commits there, each a harmless
change, except that from commit ``--plant-at`` on every training step also spins for ``--spin-ms``
milliseconds (in ``TrainStep.__call__``, harness/training/step.py): a slowdown that stays, as a regression
does until someone notices. Then, commit by commit, oldest first (as a nightly job would), one invocation of
short synthetic baseline runs with ``--repeats`` at each commit, each run made by its own commit's code; then
``cifar-bench regressions --last K`` (K = the commits from the plant on) and, with ``--site``, ``publish``.

    python benchmarks/regressions_history.py                        # 10 commits, the plant at the 6th
    python benchmarks/regressions_history.py --spin-ms 0.1 --site /tmp/history-site

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

from publish_history_demo import git, package_view

from cifar_bench.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
STEP_FILE = Path("harness") / "training" / "step.py"
STEP = "        self.optimizer.zero_grad()\n"  # the first line of this in step.py is in TrainStep.__call__
RUN = ["run", "baseline", "--dataset", "synthetic", "--limit-train", "1000", "--limit-test", "200", "--epochs", "1",
       "--quiet", "--threads", "1", "--no-cpu-tune"]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=10, help="commits in the history [10]")
    parser.add_argument("--plant-at", type=int, default=6, help="the first slow commit, from 1 [6]")
    parser.add_argument("--spin-ms", type=float, default=0.2, help="milliseconds each training step spins [0.2]")
    parser.add_argument("--repeats", type=int, default=3, help="runs per commit, one invocation [3]")
    parser.add_argument("--site", type=Path, help="also publish the history into this folder")
    parser.add_argument("--keep", action="store_true", help="keep the scratch repository and records")
    return parser.parse_args(argv)


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
        if i == args.plant_at:
            plant(clone, args.spin_ms)
            git(clone, "commit", "-qam", f"Planted slowdown: each training step spins {args.spin_ms} ms")
        else:
            with (clone / "README.md").open("a") as readme:
                readme.write(f"\nA harmless change {i}.\n")
            git(clone, "commit", "-qam", f"A harmless change {i}")
        checkout = work / f"commit{i}"
        git(clone, "worktree", "add", "-q", "--detach", str(checkout), "HEAD")
        commits.append((git(clone, "rev-parse", "HEAD"), checkout, package_view(checkout, work / f"path{i}")))
    return commits


def run_history(work: Path, commits: list[tuple[str, Path, Path]], repeats: int) -> Path:
    """One invocation of ``repeats`` runs at each commit, oldest first; prints its median and the load before it."""
    records = work / "records"
    for i, (sha, checkout, path) in enumerate(commits, 1):
        load = os.getloadavg()[0]
        folder = records / f"commit{i:02d}"
        command = [sys.executable, "-m", "cifar_bench", *RUN, "--repeats", str(repeats), "--results-dir", str(folder),
                   "--cache-dir", str(work / "cache")]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(path)}
        subprocess.run(command, cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL)
        times = [json.loads(p.read_text())["timings"]["train_s"] for p in folder.glob("*.json")]
        print(f"commit {i:2d} {sha[:8]}: median train {statistics.median(times):.3f} s over {len(times)} runs "
              f"(load average {load:.2f} before)", flush=True)  # fmt: skip
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
    records = run_history(work, commits, args.repeats)
    window = str(args.commits - args.plant_at + 1)
    shown = cifar_bench("regressions", str(records), "--last", window)
    print(shown.stdout + shown.stderr)
    found = cifar_bench("regressions", str(records), "--last", window, "--format", "json")
    rows = json.loads(found.stdout)
    planted = commits[args.plant_at - 1][0]
    regressions = [r for r in rows if r["regression"]]
    hit = [r for r in regressions if r["commit"] == planted and r["measure"].startswith("train s")]
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
