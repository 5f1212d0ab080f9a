"""A five-commit history with a planted slowdown, published: the site shown in docs/publishing.md.

Clones this repository's HEAD into a temporary folder, makes five commits there (two harmless
ones, then a ``time.sleep`` in each training step, then its revert, then one more harmless one),
runs short synthetic baseline runs at each commit, and publishes them:

    python benchmarks/publish_history_demo.py --output /tmp/history-site [--rounds 5] [--sleep 0.01]

The runs take turns across the commits (one run of each per round), so that a shared machine's
load drifts over all of them alike and only the plant stands out. Each run uses the code of its
own commit: the run's process imports ``cifar_bench`` from that commit's checkout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP = "        self.optimizer.zero_grad()\n"  # the first line of this in harness/training/step.py is in TrainStep
RUN = ["run", "baseline", "--dataset", "synthetic", "--limit-train", "400", "--limit-test", "200", "--epochs", "1",
       "--quiet", "--threads", "1", "--no-cpu-tune"]  # fmt: skip


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def package_view(checkout: Path, into: Path) -> Path:
    """A folder that makes ``import cifar_bench`` load ``checkout``'s harness/ and plugins/, as installed."""
    package = into / "cifar_bench"
    package.mkdir(parents=True)
    for entry in (checkout / "harness").iterdir():
        (package / entry.name).symlink_to(entry)
    (package / "plugins").symlink_to(checkout / "plugins")
    return into


def harmless_commit(clone: Path, i: int) -> None:
    """Commit a change that touches no code: a line appended to the README."""
    with (clone / "README.md").open("a") as readme:
        readme.write(f"\nA harmless change {i}.\n")
    git(clone, "commit", "-qam", f"A harmless change {i}")


def check_out(clone: Path, work: Path, i: int) -> tuple[Path, Path]:
    """The clone's HEAD as worktree ``commit{i}`` under ``work``, and its importable package view."""
    checkout = work / f"commit{i}"
    git(clone, "worktree", "add", "-q", "--detach", str(checkout), "HEAD")
    return checkout, package_view(checkout, work / f"path{i}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="the site's folder")
    parser.add_argument("--rounds", type=int, default=5, help="runs per commit [5]")
    parser.add_argument("--sleep", type=float, default=0.01, help="seconds the plant sleeps per step [0.01]")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="publish-demo-"))
    clone = work / "clone"
    git(work, "clone", "-q", str(ROOT), str(clone))
    git(clone, "config", "user.email", "demo@example.com")
    git(clone, "config", "user.name", "demo")
    checkouts = []
    for i in range(1, 6):
        if i == 3:
            runner = clone / "harness" / "training" / "step.py"
            text = runner.read_text().replace("import itertools\n", "import itertools\nimport time\n", 1)
            runner.write_text(text.replace(STEP, f"        time.sleep({args.sleep})  # planted slowdown\n" + STEP, 1))
            git(clone, "commit", "-qam", "Planted slowdown: a sleep in each training step")
        elif i == 4:
            git(clone, "revert", "--no-edit", "HEAD")
        else:
            harmless_commit(clone, i)
        checkouts.append(check_out(clone, work, i))
    records = work / "records"
    for seed in range(args.rounds):
        for i, (checkout, path) in enumerate(checkouts, 1):
            env = {**os.environ, "PYTHONPATH": str(path)}
            command = [sys.executable, "-m", "cifar_bench", *RUN, "--seed", str(seed),
                       "--results-dir", str(records / f"commit{i}"), "--cache-dir", str(work / "cache")]  # fmt: skip
            subprocess.run(command, cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL)
            print(f"round {seed + 1}/{args.rounds}, commit {i}/5", flush=True)
    subprocess.run([sys.executable, "-m", "cifar_bench", "publish", str(records), "--output", str(args.output),
                    "--title", "cifar-bench: the baseline at five commits"], check=True)  # fmt: skip
    print(f"records and checkouts in {work}")


if __name__ == "__main__":
    main()
