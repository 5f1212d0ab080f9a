"""The ``cifar-bench`` command.

Exit codes: 0 done, 1 a run failed, 2 bad input (unknown name, bad flag,
missing data, broken plugin, a results folder that cannot take records), 130
interrupted by Ctrl-C, 143 by SIGTERM. Errors are one line on stderr; ``--traceback``
shows the full Python traceback instead.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__, signals
from .cache import default_cache_dir
from .components import SWAPPABLE_KINDS
from .errors import RunFailed, UsageError, first_line, one_line
from .variants import LOADERS, PRECISIONS


class Parser(argparse.ArgumentParser):
    """argparse, with its errors raised as one-line UsageErrors."""

    def error(self, message: str):
        # One line, whatever the user typed: argparse quotes arguments as given, newlines included.
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _plugin_flag(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument(
        "-p",
        dest=dest,
        action="append",
        default=[],
        metavar="PLUGIN",
        help="load a plugin: module.path or path/to/file.py; -p no:NAME disables one (repeatable)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


#: Seeds torch accepts for every generator a run seeds (weights, batch order, augmentation per rank).
MAX_SEED = 2**63 - 1


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63-1, got {value}")
    return value


def _threads(text: str) -> int:
    value = _positive_int(text)
    cores = os.cpu_count() or 1
    if value > cores:  # more threads than cores only take turns on them, and slow every step down
        raise argparse.ArgumentTypeError(f"{value} is more than this machine's {cores} CPU cores: use at most {cores}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _key_value(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)  # numbers, true/false, lists ...
    except json.JSONDecodeError:
        value = raw  # anything else is a string
    return key.strip(), value


def lazy(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A command that imports its module only when it runs: ``--help`` and ``--version`` stay instant."""

    def command(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(args)

    command.target = (module, function)  # type: ignore[attr-defined]
    return command


def build_parser() -> Parser:
    parser = Parser(prog="cifar-bench", description="Time and compare CIFAR-10 training recipes.")
    parser.add_argument("--version", action="version", version=f"cifar-bench {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    _plugin_flag(parser, "plugins_global")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    run = commands.add_parser("run", help="train and evaluate a recipe, write its result")
    run.add_argument("recipe", help="recipe name (see 'cifar-bench list')")
    run.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps, a list (cpu,cuda) or all [cpu]")
    run.add_argument("--epochs", type=_positive_int, help="override the recipe's epochs")
    run.add_argument("--batch-size", type=_positive_int, help="override the recipe's batch size")
    run.add_argument("--set", dest="settings", type=_key_value, action="append", default=[],
                     metavar="KEY=VALUE", help="override any hyperparameter, e.g. --set lr=0.01")  # fmt: skip
    run.add_argument("--seed", type=_seed, default=0, help="seed for weights, batch order and augmentation [0]")
    run.add_argument("--dataset", help="override the recipe's dataset (e.g. synthetic)")
    run.add_argument("--data-dir", help="read an ImageFolder copy: DIR/train/<class>/*, DIR/test/<class>/*")
    run.add_argument("--data-root", default="./data", help="where torchvision downloads CIFAR-10 [./data]")
    run.add_argument("--limit-train", type=_positive_int, metavar="N", help="class-balanced training subset")
    run.add_argument("--limit-test", type=_positive_int, metavar="N", help="class-balanced test subset")
    run.add_argument("--loader", choices=LOADERS, default="tensor",
                     help="tensor: decoded once, kept on the device [default]; dataloader: the tutorial's")  # fmt: skip
    run.add_argument("--cache-dir", type=Path, default=None, help=f"decoded-data cache [{default_cache_dir()}]")
    run.add_argument("--no-cache", action="store_true", help="decode the data afresh and cache nothing")
    run.add_argument("--results-dir", type=Path, default=Path("results"), help="where records go [results/]")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no loss log")
    run.add_argument("--repeats", type=_positive_int, default=1, help="run N times with seeds SEED..SEED+N-1 [1]")
    run.add_argument("--threads", type=_threads, help="CPU threads for torch (recorded) [tuned: see --no-cpu-tune]")
    run.add_argument("--no-cpu-tune", dest="cpu_tune", action="store_false",
                     help="train with torch's CPU defaults, not the fastest measured on this machine")  # fmt: skip
    run.add_argument("--retune", action="store_true",
                     help="measure the CPU settings again, not keeping this machine's earlier choice")  # fmt: skip
    run.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast precision [fp32]")
    run.add_argument("--channels-last", action="store_true", help="NHWC memory format for model and data")
    run.add_argument("--compile", action="store_true", help="torch.compile the model (timed as its own phase)")
    run.add_argument(
        "--cuda-graph",
        action="store_true",
        help="replay each step's forward and backward as CUDA graphs (CUDA only; captured in the warm-up)",
    )
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
        run.add_argument(f"--{kind}", dest=f"component_{kind}", metavar="NAME", help=f"override the recipe's {kind}")
    run.add_argument("--nproc", type=_positive_int, metavar="N",
                     help="data-parallel on N processes (starts torchrun); the batch size is global")  # fmt: skip
    run.add_argument("--dist-timeout", type=_positive_seconds, metavar="S",  # default: distributed.DEFAULT_TIMEOUT_S
                     help="data-parallel: seconds a rank waits for the others before failing [600]")  # fmt: skip
    run.add_argument("--suite-key", help=argparse.SUPPRESS)  # set by 'suite': stored in the record
    _plugin_flag(run, "plugins_sub")
    run.set_defaults(func=lazy("orchestration", "cmd_run"))

    lst = commands.add_parser("list", help="list registered components and the plugin of each")
    _plugin_flag(lst, "plugins_sub")
    lst.set_defaults(func=lazy("plugin_list", "cmd_list"))

    # Commands kept in their own modules, each with add_command(commands, plugin_flag).
    for module in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{module}").add_command(commands, _plugin_flag)
    return parser


#: Modules that add a subcommand; imported when the parser is built.
COMMAND_MODULES: tuple[str, ...] = ("report", "compare", "plot", "publish", "plugin_list", "suite", "ab")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    traceback = "--traceback" in argv
    try:
        # SIGTERM is recorded as Ctrl-C is, then exits 143 (a rank under torchrun puts the default back:
        # see orchestration.cmd_run).
        with signals.sigterm_as_interrupt():
            args = build_parser().parse_args(argv)
            args.argv = argv  # for a command that starts itself again (run --nproc)
            return signals.exit_code(args.func(args))
    except (UsageError, RunFailed) as exc:
        if traceback:
            raise
        print(f"cifar-bench: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"cifar-bench: {'terminated' if signals.terminated() else 'interrupted'}", file=sys.stderr)
        return signals.exit_code(signals.INTERRUPTED)
    except Exception as exc:
        if traceback:
            raise
        print(f"cifar-bench: error: {type(exc).__name__}: {first_line(exc)} (run again with --traceback for details)",
              file=sys.stderr)  # fmt: skip
        return 1


def console() -> None:
    """The ``cifar-bench`` command and ``python -m cifar_bench``: :func:`main`, then exit without a last sweep.

    With torch imported, the interpreter's final garbage collections at exit
    took 0.6-0.9 s on the 2-core machine: a tenth of the baseline's seconds
    outside training. By now every record is written and flushed, and exit
    handlers still run as usual; only the sweep for objects that die with the
    process anyway is skipped. (Not in :func:`main`, which tests call in-process.)
    """
    code = main()
    gc.freeze()  # every object alive now is left out of the collections made at exit
    sys.exit(code)
