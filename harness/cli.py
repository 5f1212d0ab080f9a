"""The ``cifar-bench`` command.

Exit codes: 0 done, 1 a run failed, 2 bad input (unknown name, bad flag,
missing data, broken plugin). Errors are one line on stderr; ``--traceback``
shows the full Python traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from . import __version__, manager
from .components import DataSource
from .console import Console
from .data import default_cache_dir
from .errors import RunFailed, UsageError
from .records import RunRecord, write_record
from .registry import collect
from .runner import RunConfig, Session


class Parser(argparse.ArgumentParser):
    """argparse, with its errors raised as one-line UsageErrors."""

    def error(self, message: str):
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


def _key_value(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)  # numbers, true/false, lists ...
    except json.JSONDecodeError:
        value = raw  # anything else is a string
    return key.strip(), value


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
    run.add_argument("--seed", type=int, default=0, help="seed for weights, batch order and augmentation [0]")
    run.add_argument("--dataset", help="override the recipe's dataset (e.g. synthetic)")
    run.add_argument("--data-dir", help="read an ImageFolder copy: DIR/train/<class>/*, DIR/test/<class>/*")
    run.add_argument("--data-root", default="./data", help="where torchvision downloads CIFAR-10 [./data]")
    run.add_argument("--limit-train", type=_positive_int, metavar="N", help="class-balanced training subset")
    run.add_argument("--limit-test", type=_positive_int, metavar="N", help="class-balanced test subset")
    run.add_argument("--loader", choices=("tensor", "dataloader"), default="tensor",
                     help="tensor: decoded once, kept on the device [default]; dataloader: the tutorial's")  # fmt: skip
    run.add_argument("--cache-dir", type=Path, default=None, help=f"decoded-data cache [{default_cache_dir()}]")
    run.add_argument("--no-cache", action="store_true", help="decode the data afresh and cache nothing")
    run.add_argument("--results-dir", type=Path, default=Path("results"), help="where records go [results/]")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no loss log")
    for kind in ("model", "loss", "optimizer", "transform", "scheduler"):
        run.add_argument(f"--{kind}", dest=f"component_{kind}", metavar="NAME", help=f"override the recipe's {kind}")
    _plugin_flag(run, "plugins_sub")
    run.set_defaults(func=cmd_run)

    lst = commands.add_parser("list", help="list registered components and the plugin of each")
    _plugin_flag(lst, "plugins_sub")
    lst.set_defaults(func=cmd_list)

    # Commands kept in their own modules, each with add_command(commands, plugin_flag).
    for module in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{module}").add_command(commands, _plugin_flag)
    return parser


#: Modules that add a subcommand; imported when the parser is built.
COMMAND_MODULES: tuple[str, ...] = ("report", "compare", "plot", "plugin_list")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    traceback = "--traceback" in argv
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (UsageError, RunFailed) as exc:
        if traceback:
            raise
        print(f"cifar-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cifar-bench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if traceback:
            raise
        print(f"cifar-bench: error: {type(exc).__name__}: {exc} (run again with --traceback for details)",
              file=sys.stderr)  # fmt: skip
        return 1


def _load(args) -> tuple[manager.Plugins, Session]:
    plugins = manager.build([*args.plugins_global, *args.plugins_sub])
    return plugins, Session(plugins, collect(plugins.pm))


def cmd_run(args) -> int:
    plugins, session = _load(args)
    plugins.check_broken()
    from .devices import parse_devices

    overrides = dict(args.settings)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    components = {
        kind: getattr(args, f"component_{kind}")
        for kind in ("model", "loss", "optimizer", "transform", "scheduler")
        if getattr(args, f"component_{kind}")
    }
    manager.register_inline(plugins, Console(progress=not args.quiet), "console")
    records: list[tuple[RunRecord, Path]] = []
    for device in parse_devices(args.device):
        config = RunConfig(
            recipe=args.recipe,
            device=device,
            seed=args.seed,
            loader=args.loader,
            hyperparameters=overrides,
            components=components,
            dataset=args.dataset,
            source=DataSource(root=args.data_root, data_dir=args.data_dir),
            limit_train=args.limit_train,
            limit_test=args.limit_test,
            cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        )
        record = session.run(config)
        records.append((record, write_record(record, args.results_dir)))
    print(tabulate(_summary(records), headers="keys", tablefmt="simple", floatfmt=".2f"))
    return 1 if any(r.status == "failed" for r, _ in records) else 0


def _summary(records: list[tuple[RunRecord, Path]]) -> list[dict]:
    rows = []
    for r, path in records:
        rows.append({
            "recipe": r.recipe,
            "device": r.device,
            "status": r.status if r.status != "skipped" else f"skipped: {r.error}",
            "test acc %": 100 * r.metrics.test_accuracy if r.metrics.test_accuracy is not None else None,
            "train s": r.timings.train_s,
            "train img/s": r.throughput.train_img_s,
            "eval img/s": r.throughput.eval_img_s,
            "record": str(path),
        })  # fmt: skip
    return rows


def cmd_list(args) -> int:
    plugins, session = _load(args)
    rows = [
        {"kind": e.kind, "name": e.name, "plugin": e.plugin, "description": e.description} for e in session.registry
    ]
    print(tabulate(rows, headers="keys", tablefmt="simple"))
    for name, error in plugins.broken.items():
        print(f"broken plugin {name!r}: {error}")
    return 0
