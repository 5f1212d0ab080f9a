"""The same command three times: are the epoch losses and the test accuracy identical, bit for bit?

    python benchmarks/same_command.py --data-dir DIR [--runs 3] [-- extra run flags]

Runs ``cifar-bench run baseline --data-dir DIR --quiet`` (plus any extra
flags) ``--runs`` times one after the other, each a new process, into one
temporary results folder, then prints each run's test accuracy, epoch losses
(all digits), CPU settings and how they were chosen, and train seconds, and
whether every run gave the same numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cifar_bench.training.environment import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the extracted ImageFolder copy of CIFAR-10")
    parser.add_argument("--runs", type=int, default=3, help="how many times to run the command [3]")
    parser.add_argument("extra", nargs="*", help="more flags for cifar-bench run (after --)")
    args = parser.parse_args()
    exe = shutil.which("cifar-bench") or sys.exit("cifar-bench is not on PATH: pip install -e . first")
    with tempfile.TemporaryDirectory() as tmp:
        command = [exe, "run", "baseline", "--data-dir", args.data_dir, "--quiet", "--results-dir", tmp, *args.extra]
        print("command:", " ".join(command[1:]))
        print(f"machine: {cpu_model()}")
        records = []
        for i in range(args.runs):
            before = set(Path(tmp).glob("*.json"))
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            (path,) = set(Path(tmp).glob("*.json")) - before
            records.append(json.loads(path.read_text()))
            r = records[-1]
            cpu = r.get("cpu") or {}
            print(
                f"run {i + 1}: test accuracy {100 * r['metrics']['test_accuracy']:.2f}%, "
                f"epoch losses {r['metrics']['epoch_loss']}, train {r['timings']['train_s']:.1f} s, "
                f"CPU {cpu.get('threads')} thread(s), oneDNN {cpu.get('onednn')} ({cpu.get('decision')})",
                flush=True,
            )
    same = all(
        (r["metrics"]["epoch_loss"], r["metrics"]["test_accuracy"])
        == (records[0]["metrics"]["epoch_loss"], records[0]["metrics"]["test_accuracy"])
        for r in records
    )
    print(f"identical losses and accuracy in all {len(records)} runs: {same}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
