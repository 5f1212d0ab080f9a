"""``cifar-bench run RECIPE``: its flags, and one call of the Python API (``cifar_bench.api``).

In this process (devices x seeds, each beside its reference); ``--nproc N`` starts N ranks under torchrun
(``api.launch``); and under a torchrun the user started, this process joins the others as one rank.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..cache import default_cache_dir
from ..hooks.components import SWAPPABLE_KINDS
from ..results.variant import LOADERS, PRECISIONS
from . import arguments as types

if TYPE_CHECKING:
    from ..api import RunOptions
    from ..execution.plan import Execution


def add_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("recipe", help="recipe name (see 'cifar-bench list')")
    run.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps, a list (cpu,cuda) or all [cpu]")
    run.add_argument("--epochs", type=types.positive_int, help="override the recipe's epochs")
    run.add_argument("--batch-size", type=types.positive_int, help="override the recipe's batch size")
    run.add_argument("--set", dest="settings", type=types.key_value, action="append", default=[],
                     metavar="KEY=VALUE", help="override any hyperparameter, e.g. --set lr=0.01")  # fmt: skip
    run.add_argument("--seed", type=types.seed, help="seed for weights, batch order and augmentation [0]")
    run.add_argument("--dataset", help="override the recipe's dataset (e.g. synthetic)")
    run.add_argument("--data-dir", help="read an ImageFolder copy: DIR/train/<class>/*, DIR/test/<class>/*")
    run.add_argument("--data-root", default="./data", help="where torchvision downloads CIFAR-10 [./data]")
    run.add_argument("--limit-train", type=types.positive_int, metavar="N", help="class-balanced training subset")
    run.add_argument("--limit-test", type=types.positive_int, metavar="N", help="class-balanced test subset")
    run.add_argument("--loader", choices=LOADERS, default="tensor",
                     help="tensor: decoded once, kept on the device [default]; dataloader: the tutorial's")  # fmt: skip
    run.add_argument("--cache-dir", type=Path, default=None, help=f"decoded-data cache [{default_cache_dir()}]")
    run.add_argument("--no-cache", action="store_true", help="decode the data afresh and cache nothing")
    run.add_argument("--results-dir", type=Path, default=Path("results"), help="where records go [results/]")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no loss log")
    run.add_argument("--repeats", type=types.positive_int, help="run N times with seeds SEED..SEED+N-1 [1]")
    run.add_argument("--seeds", type=types.seed_list, metavar="LIST",
                     help="run once per seed: a range 0-9, a list 0,2,5 or both (0-4,10); instead of --seed and "
                          "--repeats")  # fmt: skip
    run.add_argument(
        "--threads", type=types.threads, help="CPU threads for torch (recorded) [tuned: see --no-cpu-tune]"
    )
    run.add_argument("--no-cpu-tune", action="store_true",
                     help="train with torch's CPU defaults, not the fastest measured on this machine")  # fmt: skip
    run.add_argument("--retune", action="store_true",
                     help="measure the CPU settings again, not keeping this machine's earlier choice")  # fmt: skip
    run.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast precision [fp32]")
    run.add_argument("--channels-last", action="store_true", help="NHWC memory format for model and data")
    run.add_argument("--compile", action="store_true", help="torch.compile the model (timed as its own phase)")
    run.add_argument("--cuda-graph", action="store_true",
                     help="replay each step's forward and backward as CUDA graphs (CUDA only; captured in the "
                          "warm-up)")  # fmt: skip
    run.add_argument("--target-acc", type=float, metavar="FRACTION",
                     help="evaluate after each epoch; record train seconds to reach this test accuracy")  # fmt: skip
    run.add_argument("--stop-at-target", action="store_true", help="stop training once --target-acc is reached")
    run.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms (recorded)")
    run.add_argument("--reference", metavar="RECIPE",
                     help="interleave RECIPE with each run; store time ratios to it (noise-aware gating)")  # fmt: skip
    run.add_argument("--interleave", choices=("step", "run"),
                     help="with --reference: take turns step by step (one process), or run by run "
                          "[step; run under --nproc]")  # fmt: skip
    for kind in SWAPPABLE_KINDS:
        run.add_argument(f"--{kind}", metavar="NAME", help=f"override the recipe's {kind}")
    run.add_argument("--nproc", type=types.positive_int, metavar="N",
                     help="data-parallel on N processes (starts torchrun); the batch size is global")  # fmt: skip
    run.add_argument("--dist-timeout", type=types.positive_seconds, metavar="S",
                     help="data-parallel: seconds a rank waits for the others before failing [600]")  # fmt: skip
    _measure_flags(run)
    types.tracking_flags(run)
    run.add_argument("--evaluate", metavar="NAME,...",
                     help="evaluations after training, e.g. corruptions,calibration (see 'cifar-bench list'); "
                          "none for none [the recipe's]")  # fmt: skip


def _measure_flags(run: argparse.ArgumentParser) -> None:
    """``--measure`` and ``--steps``: a run timed, or a few of its steps counted in instructions."""
    run.add_argument("--measure", choices=MEASURES, default="time",
                     help="time: epochs timed [default]; instructions: after the warm-up, --steps training steps "
                          "and one evaluation pass counted under valgrind (one thread, fixed seeds; see "
                          "docs/comparing.md)")  # fmt: skip
    run.add_argument("--steps", type=types.positive_int, metavar="N",
                     help=f"with --measure instructions: training steps counted [{DEFAULT_COUNT_STEPS}]")  # fmt: skip


#: What a run measures: its time, or the instructions of a few steps (``--measure``).
MEASURES = ("time", "instructions")
#: Training steps a ``--measure instructions`` run counts: enough to average the per-step overhead of
#: the counting away, few enough that valgrind's instrumented steps stay cheap.
DEFAULT_COUNT_STEPS = 5
#: Flags a counted run cannot take: each would add threads, processes or timing-only work to the count.
_NOT_COUNTED = (("nproc", "--nproc"), ("reference", "--reference"), ("repeats", "--repeats"), ("seeds", "--seeds"),
                ("target_acc", "--target-acc"), ("compile", "--compile"), ("cuda_graph", "--cuda-graph"),
                ("track", "--track"), ("evaluate", "--evaluate"))  # fmt: skip


def counted_options(args: argparse.Namespace) -> dict:
    """What ``--measure instructions`` sets (one thread, untuned, quiet), after refusing what it cannot count."""
    from ..errors import UsageError

    if args.measure != "instructions":
        if args.steps is not None:
            raise UsageError("--steps counts training steps under --measure instructions: add it or drop --steps")
        return {}
    for name, flag in _NOT_COUNTED:
        if getattr(args, name, None):
            raise UsageError(f"--measure instructions counts one run in one thread: drop {flag} (run the command "
                             f"again for another count)")  # fmt: skip
    if args.device != "cpu" or args.loader != "tensor":
        raise UsageError("--measure instructions counts CPU work without loader workers: use --device cpu and "
                         "--loader tensor")  # fmt: skip
    if args.threads not in (None, 1):
        raise UsageError("--measure instructions counts in one thread: drop --threads")
    return {"count_steps": args.steps or DEFAULT_COUNT_STEPS, "threads": 1, "no_cpu_tune": True, "quiet": True}


def options(args: argparse.Namespace) -> RunOptions:
    """The flags as the Python API's options (the same names, with underscores)."""
    from ..api import RunOptions

    if args.seeds is not None:  # one way of naming the seeds at a time
        from ..errors import UsageError

        given = [flag for flag, value in (("--seed", args.seed), ("--repeats", args.repeats)) if value is not None]
        if given:
            raise UsageError(f"--seeds lists every seed to run: drop {' and '.join(given)}")
    return RunOptions(
        device=args.device, seed=args.seed or 0, repeats=args.repeats or 1, seeds=args.seeds, epochs=args.epochs,
        batch_size=args.batch_size,
        set=dict(args.settings), dataset=args.dataset, data_dir=args.data_dir, data_root=args.data_root,
        limit_train=args.limit_train, limit_test=args.limit_test, loader=args.loader, precision=args.precision,
        channels_last=args.channels_last, compile=args.compile, cuda_graph=args.cuda_graph,
        deterministic=args.deterministic, cache_dir=args.cache_dir, no_cache=args.no_cache,
        results_dir=args.results_dir,
        retune=args.retune, target_acc=args.target_acc, stop_at_target=args.stop_at_target,
        reference=args.reference, interleave=args.interleave, nproc=args.nproc, dist_timeout=args.dist_timeout,
        plugins=[*args.plugins_global, *args.plugins_sub], **{kind: getattr(args, kind) for kind in SWAPPABLE_KINDS},
        track=args.track, mlflow_experiment=args.mlflow_experiment,
        **{"quiet": args.quiet, "threads": args.threads, "no_cpu_tune": args.no_cpu_tune, **counted_options(args)},
        evaluate=args.evaluate,
    )  # fmt: skip


def cmd_run(args: argparse.Namespace) -> int:
    """Runs in this process; ``--nproc N`` starts N ranks under torchrun; a rank under torchrun joins them."""
    if counted_options(args):  # refuses what cannot be counted before valgrind starts
        from ..execution import valgrind

        if not valgrind.in_counted_process():  # this process starts the counted one and passes its exit code on;
            # it imports no torch: the counted process checks the rest of the flags, on its own start-up
            return valgrind.run_counted([sys.executable, "-m", "cifar_bench", *args.argv])
    from .. import api
    from ..execution import torchrun
    from ..training.world import launched_by_torchrun

    run_options = options(args)
    if launched_by_torchrun():
        devices = run_options.request(args.recipe).device_list()
        return torchrun.as_rank(devices, args.dist_timeout, lambda world: _as_rank(args, run_options, world),
                                traceback=args.traceback)  # fmt: skip
    if args.nproc is not None:
        return api.launch(args.recipe, run_options, traceback=args.traceback)[1]
    return in_process(args.recipe, run_options)


def in_process(recipe: str, run_options: RunOptions, world=None) -> int:
    """The runs here, the console showing them, each record's file named, and the table of them all."""
    from .. import api
    from ..console import Console
    from ..training.world import SINGLE

    world = world or SINGLE
    runs = len(run_options.seeds or ()) or run_options.repeats
    say = not run_options.quiet or runs == 1

    def written(result, path) -> None:
        if say and result.record.role != "reference":
            print(f"record: {path}")

    console = Console(progress=not run_options.quiet and world.main)
    done = api.run_request(recipe, run_options, world=world, written=written, console=console)
    return report(done)


def report(done: Execution) -> int:
    """The table a run command ends with, and its exit code: 130 interrupted, 1 a run failed, else 0."""
    from ..results.report import run_table

    print(run_table(done.records))
    if done.interrupted:
        return 130
    return 1 if done.failed else 0


def _as_rank(args: argparse.Namespace, run_options: RunOptions, world) -> int:
    if args.nproc is not None and args.nproc != world.size:
        from ..errors import UsageError

        raise UsageError(f"--nproc {args.nproc} under a torchrun of {world.size} processes: leave --nproc out")
    from dataclasses import replace

    return in_process(args.recipe, replace(run_options, nproc=world.size), world)
