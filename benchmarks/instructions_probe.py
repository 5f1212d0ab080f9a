"""Counting the tutorial Net's training step in instructions under valgrind: exact, and how fast?

Runs itself under valgrind (the parent checks valgrind, builds the command and
reads the counts; the child, started with ``--child``, does the work). The child
builds the tutorial's Net, CrossEntropyLoss and SGD(lr 0.001, momentum 0.9),
trains ``--warmup`` steps uncounted, then counts ``--steps`` training steps
(batch 4, random data from a fixed seed) and one evaluation pass over
``--eval-images`` images, ``--repeats`` times, restoring the model and optimizer
before each repeat so that every repeat is the same work. With ``--plant`` as
many processes again count the same steps with an extra in-place add per step
(as a second install with a regression would), sized by counting it to cost that
fraction of a step.

Three ways to delimit what is counted (``--mechanism``):

* ``requests`` (default, cifar_bench.training.callgrind): callgrind client requests through a compiled helper;
* ``control``: ``callgrind_control -i on|off|-z|-d`` run from the process itself;
* ``difference``: whole processes under cachegrind with N and 2N steps; the count is the difference
  (one count per pair of processes, so ``--repeats`` pairs are run).

Prints instructions per step per repeat, their spread, instructions per evaluated
image, the planted increase, and where the process's wall time went.

    python benchmarks/instructions_probe.py [--steps 20] [--repeats 5] [--plant 0.005] [--mechanism requests]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from cifar_bench.execution import valgrind
from cifar_bench.training import callgrind

BATCH_SIZE = 4  # images per step, the tutorial's
LR, MOMENTUM = 0.001, 0.9  # the tutorial's SGD
SEED = 0  # weights and data
DATA_BATCHES = 16  # distinct random batches the steps cycle through
EVAL_BATCH = 4  # images per evaluation batch, as the tutorial's test loader
CALIBRATION_SIZES = (1_000, 200_000)  # elements of the planted add, counted to fit cost = a + b * n
REGION_KINDS = ("train", "eval", "plant")  # the counted regions' label prefixes
PAD_ENV, PAD_BYTES = "INSTRUCTIONS_PROBE_PAD", 97  # --pad-env: process i gets i * 97 bytes more environment
LAUNCH_ENV = "INSTRUCTIONS_PROBE_LAUNCHED"  # the parent's time.time() at launch, for start-up time


# --- the child: the work, under valgrind ----------------------------------------------------------


def build(torch):
    """The tutorial's Net (copied from plugins/baseline.py, not imported: importing the plugin brings torchvision
    and the harness into the counted process, whose heap history the counts depend on), loss, optimizer and fixed
    random batches."""
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 5)
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = torch.flatten(x, 1)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    torch.manual_seed(SEED)
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    generator = torch.Generator().manual_seed(SEED)
    images = torch.randn(DATA_BATCHES, BATCH_SIZE, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (DATA_BATCHES, BATCH_SIZE), generator=generator)
    return net, nn.CrossEntropyLoss(), optimizer, images, labels


def train(net, loss_fn, optimizer, images, labels, steps: int, extra=None) -> float:
    """``steps`` tutorial steps over the fixed batches; ``extra`` (a tensor) gets one in-place add per step."""
    running = 0.0
    for i in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(net(images[i % DATA_BATCHES]), labels[i % DATA_BATCHES])
        loss.backward()
        optimizer.step()
        if extra is not None:
            extra.add_(1.0)
        running += loss.item()
    return running


def evaluate(torch, net, images, count: int) -> int:
    """Predicts ``count`` images in batches of EVAL_BATCH, as the tutorial's test loop; returns the correct ones."""
    flat = images.reshape(-1, 3, 32, 32)
    correct = 0
    with torch.no_grad():
        for start in range(0, count, EVAL_BATCH):
            batch = flat[start % len(flat) : start % len(flat) + EVAL_BATCH]
            correct += int((net(batch).argmax(1) == 0).sum())
    return correct


class Control(AbstractContextManager):
    """A region switched by ``callgrind_control`` run from this process (mechanism ``control``)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def _call(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(os.getpid())], check=True, stdout=subprocess.DEVNULL)

    def __enter__(self):
        self._call("-i", "on")
        self._call("-z")
        return self

    def __exit__(self, *exc) -> None:
        self._call("-d", self.label)
        self._call("-i", "off")


def region(mechanism: str, label: str):
    if mechanism == "requests":
        return callgrind.counting(label)
    if mechanism == "control":
        return Control(label)
    return nullcontext()


def own_count(label: str) -> int:
    """A region's count, read back from this process's own dump (written as the region ended)."""
    for dump in callgrind.read_dumps(Path(os.environ[callgrind.OUT_DIR_ENV])):
        if dump.label == label and dump.pid == os.getpid():
            return dump.instructions
    raise LookupError(label)


def planted_size(torch, fraction: float, mechanism: str, parts) -> int:
    """Elements of a float tensor whose add_ costs ``fraction`` of one step, by counting step and adds."""
    with region(mechanism, "calibrate/step"):
        train(*parts, steps=1)
    counts = []
    for n in CALIBRATION_SIZES:
        tensor = torch.zeros(n)
        tensor.add_(1.0)  # first touch outside the count
        with region(mechanism, f"calibrate/add{n}"):
            tensor.add_(1.0)
        counts.append(own_count(f"calibrate/add{n}"))
    per_element = (counts[1] - counts[0]) / (CALIBRATION_SIZES[1] - CALIBRATION_SIZES[0])
    fixed = counts[0] - per_element * CALIBRATION_SIZES[0]
    return max(1, round((fraction * own_count("calibrate/step") - fixed) / per_element))


def child(args: argparse.Namespace) -> None:
    """The measured process: phases timed (wall and CPU), regions counted; timings to phases.PID.json."""
    times: dict[str, float | str] = {"launch_to_main_s": time.time() - float(os.environ.get(LAUNCH_ENV, time.time()))}
    mark = [time.perf_counter(), time.process_time()]

    def phase(name: str) -> None:
        now = [time.perf_counter(), time.process_time()]
        times[f"{name}_s"], times[f"{name}_cpu_s"] = now[0] - mark[0], now[1] - mark[1]
        mark[:] = now

    import torch

    torch.set_num_threads(1)
    times["torch"], times["cpu_capability"] = torch.__version__, torch.backends.cpu.get_cpu_capability()
    phase("import_torch")
    parts = build(torch)
    phase("setup")
    train(*parts, steps=args.warmup)
    evaluate(torch, parts[0], parts[3], EVAL_BATCH * 2)
    phase("warmup")
    extra = torch.zeros(planted_size(torch, args.plant, args.mechanism, parts)) if args.plant else None
    phase("calibrate")
    snapshot = copy.deepcopy((parts[0].state_dict(), parts[2].state_dict()))
    for repeat in range(args.repeats):
        counted_repeat(torch, args, parts, snapshot, repeat, extra, phase)
    with region(args.mechanism, "empty"):
        pass
    times["threads"] = callgrind.thread_count()
    times["planted_elements"] = int(extra.numel()) if extra is not None else 0
    out = Path(os.environ.get(callgrind.OUT_DIR_ENV) or args.out_dir)
    (out / f"phases.{os.getpid()}.json").write_text(json.dumps(times))


def restore(parts, snapshot) -> None:
    """Model and optimizer (momentum buffers too) back to the snapshot, so every repeat does the same work."""
    parts[0].load_state_dict(snapshot[0])
    parts[2].load_state_dict(copy.deepcopy(snapshot[1]))  # deep: SGD updates its buffers in place


def counted_repeat(torch, args, parts, snapshot, repeat: int, extra, phase) -> None:
    """One repeat: the training steps (planted ones under --plant), then the evaluation pass, each counted."""
    restore(parts, snapshot)
    kind = "train" if extra is None else "plant"
    with region(args.mechanism, f"{kind}/{repeat}"):
        train(*parts, steps=args.steps, extra=extra)
    phase(f"{kind}{repeat}")
    if args.eval_images and extra is None:
        with region(args.mechanism, f"eval/{repeat}"):
            evaluate(torch, parts[0], parts[3], args.eval_images)
        phase(f"eval{repeat}")


# --- the parent: launch, read back, print ---------------------------------------------------------


def child_argv(args: argparse.Namespace, steps: int, repeats: int, plant: float = 0.0) -> list[str]:
    return [
        sys.executable, str(Path(__file__).resolve()), "--child", "--mechanism", args.mechanism,
        "--steps", str(steps), "--repeats", str(repeats), "--warmup", str(args.warmup),
        "--eval-images", str(args.eval_images if args.mechanism != "difference" else 0),
        "--plant", str(plant), "--out-dir", str(args.out_dir),
    ]  # fmt: skip


def launch(command: list[str], env: dict[str, str], out_dir: Path) -> tuple[float, dict]:
    """Runs one child; returns its wall time in seconds and its phases. Exits with valgrind's log on failure."""
    env = {
        **env,
        LAUNCH_ENV: f"{time.time():.6f}",  # fixed length: the environment shapes the heap
        callgrind.OUT_DIR_ENV: str(out_dir),
    }
    started = time.perf_counter()
    done = subprocess.run(command, env=env)
    if done.returncode != 0:
        sys.exit(f"the child failed ({done.returncode}):\n{valgrind.valgrind_log(out_dir)}")
    wall = time.perf_counter() - started
    (path,) = out_dir.glob("phases.*.json")
    return wall, json.loads(path.read_text())


def control_counts(out_dir: Path) -> dict[str, int]:
    """Counts of dumps written by ``callgrind_control -d LABEL`` (their trigger reads ``dump LABEL``)."""
    counts = {}
    for path in out_dir.glob("callgrind.out.*.*"):
        text = path.read_text().replace("desc: Trigger: dump ", "desc: Trigger: Client Request: ")
        if (parsed := callgrind.parse_dump(text)) is not None:
            counts[parsed[0]] = parsed[1]
    return counts


def run_regions(args: argparse.Namespace) -> tuple[list[dict[str, int]], list[tuple[float, dict]]]:
    """--processes valgrind processes counting regions (and as many planted ones with --plant, as another
    install would be); returns each one's counts, wall time and phases."""
    counts, walls = [], []
    plants = [0.0, args.plant] if args.plant else [0.0]
    for launched, (plant, index) in enumerate((p, i) for p in plants for i in range(args.processes)):
        out = args.out_dir / f"{'planted' if plant else 'process'}{index}"
        command, env = valgrind.reexec_command(child_argv(args, args.steps, args.repeats, plant), out)
        if args.glibc_tunables is not None:
            env["GLIBC_TUNABLES"] = args.glibc_tunables
        if args.pad_env:  # installs in different folders differ in their environment's and paths' lengths
            env[PAD_ENV] = "x" * (PAD_BYTES * launched)
        walls.append(launch(command, env, out))
        counts.append(control_counts(out) if args.mechanism == "control" else callgrind.read_counts(out))
    return counts, walls


def cachegrind_total(out_dir: Path) -> int:
    """The ``summary:`` Ir of the one cachegrind output file in ``out_dir``."""
    (path,) = out_dir.glob("cachegrind.out.*")
    line = next(line for line in path.read_text().splitlines() if line.startswith("summary:"))
    return int(line.split()[1])


def run_difference(args: argparse.Namespace) -> tuple[list[dict[str, int]], list[tuple[float, dict]]]:
    """--repeats pairs of whole processes under cachegrind (N and 2N steps); a count is their difference."""
    counts, walls = [], []
    _, env = valgrind.reexec_command([sys.executable], args.out_dir / "unused")
    for repeat in range(args.repeats):
        totals = []
        for steps in (args.steps, 2 * args.steps):
            out = args.out_dir / f"pair{repeat}-{steps}"
            out.mkdir(parents=True)
            command = [
                str(callgrind.valgrind_path()), "--tool=cachegrind", "--cache-sim=no",
                f"--cachegrind-out-file={out}/cachegrind.out.%p", f"--log-file={out}/valgrind.%p.log",
                *child_argv(args, steps, 1),
            ]  # fmt: skip
            walls.append(launch(command, env, out))
            totals.append(cachegrind_total(out))
        counts.append({f"train/{repeat}": totals[1] - totals[0]})
    return counts, walls


def spread_line(name: str, values: list[int], per: int, unit: str) -> str:
    """'name: median per unit, spread max-min in instructions and percent of the median'."""
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    spread = ordered[-1] - ordered[0]
    return (
        f"{name:<6} {len(values)} counts, median {median:,} = {median / per:,.0f} per {unit}; "
        f"spread {spread:,} ({100 * spread / median:.5f}%)"
    )


def summarize(args: argparse.Namespace, counts: list[dict[str, int]]) -> None:
    """The counts table: every count, then per kind its spread, the planted increase and the fixed overhead."""
    merged = [(index, label, value) for index, c in enumerate(counts) for label, value in sorted(c.items())]
    print(f"{'process':>7}  {'region':<18} {'instructions':>15}")
    for index, label, value in merged:
        print(f"{index:>7}  {label:<18} {value:>15,}")
    kinds = {kind: [v for _, label, v in merged if label.startswith(f"{kind}/")] for kind in REGION_KINDS}
    if kinds["train"]:
        print(spread_line("train", kinds["train"], args.steps, "step"))
    if kinds["eval"]:
        print(spread_line("eval", kinds["eval"], args.eval_images, "image"))
    if kinds["plant"]:
        print(spread_line("plant", kinds["plant"], args.steps, "step"))
        base, planted = sorted(kinds["train"]), sorted(kinds["plant"])
        increase = planted[len(planted) // 2] / base[len(base) // 2] - 1
        gap = (planted[0] - base[-1]) / base[len(base) // 2]
        print(f"planted: +{100 * increase:.4f}% (asked {100 * args.plant:.2f}%); smallest planted count is "
              f"{100 * gap:.4f}% above the largest unplanted one")  # fmt: skip
    empties = [v for _, label, v in merged if label == "empty"]
    if empties:
        print(f"empty region (fixed overhead): {empties}")


def times_line(wall: float, phases: dict) -> str:
    """Where one process's time went: each phase's wall and (in brackets) CPU seconds, from its child's record."""
    fixed = ("import_torch", "setup", "warmup", "calibrate")
    names = {name: [name] for name in fixed}
    for kind in REGION_KINDS:  # one phase per repeat: train0, train1 ...
        names[f"counted {kind}"] = [k[:-2] for k in phases if re.fullmatch(rf"{kind}\d+_s", k)]
    wall_of = {name: sum(phases.get(f"{p}_s", 0.0) for p in parts) for name, parts in names.items()}
    cpu_of = {name: sum(phases.get(f"{p}_cpu_s", 0.0) for p in parts) for name, parts in names.items()}
    rest = wall - phases["launch_to_main_s"] - sum(wall_of.values())
    shown = ", ".join(f"{name} {wall_of[name]:.1f} ({cpu_of[name]:.1f})" for name in names if wall_of[name] > 0.05)
    return (
        f"wall {wall:.1f} s = start-up {phases['launch_to_main_s']:.1f}, {shown}, exit {rest:.1f}; "
        f"{phases['threads']} thread(s), torch {phases['torch']} {phases['cpu_capability']}"
    )


def machine_line(load_before: tuple[float, float, float]) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"valgrind {callgrind.valgrind_version()}; "
        f"load average {load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end "
        f"(wall times are provisional on a shared machine; instruction counts are not affected by load)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per count (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="counts of the same steps per process (default 5)")
    parser.add_argument("--processes", type=int, default=1, help="valgrind processes, each --repeats counts")
    parser.add_argument("--warmup", type=int, default=20, help="uncounted steps first (default 20)")
    parser.add_argument("--eval-images", type=int, default=200, help="images in the counted evaluation pass")
    parser.add_argument(
        "--plant", type=float, default=0.0, help="also count, in as many processes, steps with this extra fraction"
    )
    parser.add_argument("--mechanism", choices=("requests", "control", "difference"), default="requests")
    parser.add_argument(
        "--glibc-tunables", help="GLIBC_TUNABLES for the child instead of the module's ('' for glibc's defaults)"
    )
    parser.add_argument("--pad-env", action="store_true", help="vary each process's environment size")
    parser.add_argument("--out-dir", type=Path, help="where dumps go (default: a temporary folder, removed)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plant and args.mechanism != "requests":
        parser.error("--plant needs --mechanism requests (it counts the planted op to size it)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    if (problem := valgrind.valgrind_problem()) is not None:
        print(problem, file=sys.stderr)
        return 2
    load_before, keep = os.getloadavg(), args.out_dir is not None
    args.out_dir = (args.out_dir or Path(tempfile.mkdtemp(prefix="instructions-probe-"))).resolve()
    try:
        runner = run_difference if args.mechanism == "difference" else run_regions
        counts, walls = runner(args)
        print(f"mechanism {args.mechanism}: {args.steps} steps per count, batch {BATCH_SIZE}, warm-up {args.warmup}")
        summarize(args, counts)
        for wall, phases in walls:
            print(times_line(wall, phases))
        print(machine_line(load_before))
    finally:
        if not keep:
            shutil.rmtree(args.out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
