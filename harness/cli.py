"""The ``cifar-bench`` command.

Exit codes: 0 done, 1 a run failed, 2 bad input (unknown name, bad flag,
missing data, broken plugin). Errors are one line on stderr; ``--traceback``
shows the full Python traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tabulate import tabulate

from . import __version__, distributed, lockstep, manager
from .components import DataSource
from .console import Console
from .data import default_cache_dir
from .devices import parse_devices
from .errors import RunFailed, UsageError
from .records import RunRecord, write_record
from .registry import collect
from .runner import RunConfig, Session, resolve_hyperparameters
from .variants import PRECISIONS, Variant


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


def _key_value(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)  # numbers, true/false, lists ...
    except json.JSONDecodeError:
        value = raw  # anything else is a string
    return key.strip(), value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"is a fraction of the test set: between 0 and 1, got {value}")
    return value


COMPONENT_FLAGS = ("model", "loss", "optimizer", "transform", "scheduler")


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
    run.add_argument("--repeats", type=_positive_int, default=1, help="run N times with seeds SEED..SEED+N-1 [1]")
    run.add_argument(
        "--threads", type=_positive_int, help="CPU threads for torch (recorded) [tuned: see --no-cpu-tune]"
    )
    run.add_argument("--no-cpu-tune", dest="cpu_tune", action="store_false",
                     help="train with torch's CPU defaults instead of the fastest measured in the warm-up")  # fmt: skip
    run.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32", help="autocast precision [fp32]")
    run.add_argument("--channels-last", action="store_true", help="NHWC memory format for model and data")
    run.add_argument("--compile", action="store_true", help="torch.compile the model (timed as its own phase)")
    run.add_argument(
        "--cuda-graph",
        action="store_true",
        help="replay each step's forward and backward as CUDA graphs (CUDA only; captured in the warm-up)",
    )
    run.add_argument("--target-acc", type=_fraction, metavar="FRACTION",
                     help="evaluate after each epoch; record train seconds to reach this test accuracy")  # fmt: skip
    run.add_argument("--stop-at-target", action="store_true", help="stop training once --target-acc is reached")
    run.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms (recorded)")
    run.add_argument("--reference", metavar="RECIPE",
                     help="interleave RECIPE with each run; store time ratios to it (noise-aware gating)")  # fmt: skip
    run.add_argument("--interleave", choices=("step", "run"),
                     help="with --reference: take turns step by step (one process), or run by run "
                          "[step; run under --nproc]")  # fmt: skip
    for kind in COMPONENT_FLAGS:
        run.add_argument(f"--{kind}", dest=f"component_{kind}", metavar="NAME", help=f"override the recipe's {kind}")
    run.add_argument("--nproc", type=_positive_int, metavar="N",
                     help="data-parallel on N processes (starts torchrun); the batch size is global")  # fmt: skip
    run.add_argument("--dist-timeout", type=float, default=distributed.DEFAULT_TIMEOUT_S, metavar="S",
                     help="data-parallel: seconds a rank waits for the others before failing [600]")  # fmt: skip
    run.add_argument("--suite-key", help=argparse.SUPPRESS)  # set by 'suite': stored in the record
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
COMMAND_MODULES: tuple[str, ...] = ("report", "compare", "plot", "plugin_list", "suite")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    traceback = "--traceback" in argv
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv  # for a command that starts itself again (run --nproc)
        return args.func(args)
    except (UsageError, RunFailed) as exc:
        if traceback:
            raise
        print(f"cifar-bench: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cifar-bench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if traceback:
            raise
        print(f"cifar-bench: error: {type(exc).__name__}: {_one_line(exc)} (run again with --traceback for details)",
              file=sys.stderr)  # fmt: skip
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _load(args) -> tuple[manager.Plugins, Session]:
    plugins = manager.build([*args.plugins_global, *args.plugins_sub])
    return plugins, Session(plugins, collect(plugins.pm))


def cmd_run(args) -> int:
    """Runs in this process; ``--nproc N`` starts N ranks under torchrun, and a rank under torchrun joins them."""
    if not distributed.launched_by_torchrun():
        return launch_run(args) if args.nproc is not None else run_runs(args)
    world = distributed.init(parse_devices(args.device), args.dist_timeout)
    try:
        if args.nproc is not None and args.nproc != world.size:
            raise UsageError(f"--nproc {args.nproc} under a torchrun of {world.size} processes: leave --nproc out")
        with contextlib.nullcontext() if world.main else contextlib.redirect_stdout(io.StringIO()):
            return run_runs(args)  # only rank 0 speaks
    except Exception as exc:
        raise distributed.rank_failure(world, exc, traceback=args.traceback) from exc
    finally:
        distributed.shutdown()


def launch_run(args) -> int:
    """``run --nproc N``: check what can be checked here, then this same command as N ranks under torchrun."""
    devices = parse_devices(args.device)
    if len(devices) != 1:
        raise UsageError(f"--nproc runs on one device, got {args.device}")
    distributed.backend_for(devices[0])
    interleave_mode(args, across_processes=True)  # refuse a bad --interleave before starting the ranks
    if devices[0] == "cuda" and torch.cuda.device_count() < args.nproc:
        raise UsageError(f"--nproc {args.nproc} needs {args.nproc} GPUs; this machine has {torch.cuda.device_count()}")
    _, session = _load(args)
    runs = [(args.recipe, run_config(args).hyperparameters)]
    if args.reference:  # the reference keeps its own batch size (see run_runs)
        runs.append((args.reference, {"epochs": args.epochs} if args.epochs is not None else {}))
    for recipe, overrides in runs:
        hp = resolve_hyperparameters(session.registry.recipe(recipe), overrides)
        distributed.World(size=args.nproc).per_rank_batch(hp["batch_size"])
    code, error = distributed.launch(getattr(args, "argv", None) or sys.argv[1:], args.nproc)
    if error:
        raise (UsageError if code == UsageError.exit_code else RunFailed)(error)
    return code


def run_config(args) -> RunConfig:
    """The run that ``run``'s flags describe (device, seed and repeat are set per run)."""
    overrides = dict(args.settings)
    for key in ("epochs", "batch_size"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    components = {
        kind: getattr(args, f"component_{kind}") for kind in COMPONENT_FLAGS if getattr(args, f"component_{kind}")
    }
    return RunConfig(
        recipe=args.recipe,
        seed=args.seed,
        loader=args.loader,
        variant=Variant(
            precision=args.precision, channels_last=args.channels_last, compile=args.compile, cuda_graph=args.cuda_graph
        ),
        hyperparameters=overrides,
        components=components,
        dataset=args.dataset,
        source=DataSource(root=args.data_root, data_dir=args.data_dir),
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        target_acc=args.target_acc,
        stop_at_target=args.stop_at_target,
        deterministic=args.deterministic,
        cpu_tune=args.cpu_tune,
        threads=args.threads,
    )


def run_runs(args) -> int:
    """The runs ``run`` asked for, devices x repeats, each with its reference if one is given."""
    plugins, session = _load(args)
    plugins.check_broken()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    base = run_config(args)
    world = distributed.current()
    # The reference shares the candidate's data, device, variant, seed and length, not its recipe changes.
    reference, interleave = None, interleave_mode(args, across_processes=world.distributed)
    if args.reference:
        length = {"epochs": args.epochs} if args.epochs is not None else {}
        reference = replace(base, recipe=args.reference, components={}, hyperparameters=length)
    manager.register_inline(plugins, Console(progress=not args.quiet and world.main), "console")

    records: list[RunRecord] = []
    for device in parse_devices(args.device):
        for repeat in range(args.repeats):
            candidate = replace(base, device=device, seed=args.seed + repeat, repeat=repeat)
            ref = None
            if reference is None:
                record = session.run(candidate)
            else:
                ref, record = run_with_reference(session, replace(reference, device=device, seed=candidate.seed,
                                                                  repeat=repeat), candidate, interleave)  # fmt: skip
            if ref is not None:
                records.append(ref)
                if world.main:  # rank 0 writes for all ranks
                    write_record(ref, args.results_dir)
            if record is None:  # interrupted before the candidate started
                print(run_table(records))
                return 130
            records.append(record)
            record.suite_key = args.suite_key
            path = write_record(record, args.results_dir) if world.main else None
            if not args.quiet or args.repeats == 1:
                print(f"record: {path}")
            if "interrupted" in (record.status, ref.status if ref else None):
                print(run_table(records))
                return 130
            if record.status == "skipped":
                break  # the device is absent: its other repeats would say the same
    print(run_table(records))
    return 1 if any(r.status in ("failed", "diverged") for r in records) else 0


def interleave_mode(args, *, across_processes: bool) -> str | None:
    """How a --reference run is interleaved (None without one): step by step in one process, else run by run."""
    if not args.reference:
        if args.interleave:
            raise UsageError("--interleave says how a --reference run takes turns: add --reference RECIPE or drop it")
        return None
    if args.interleave == "step" and across_processes:
        raise UsageError("--interleave step takes turns within one process: use --interleave run with --nproc")
    return args.interleave or ("run" if across_processes else "step")


def run_with_reference(
    session: Session, reference: RunConfig, candidate: RunConfig, interleave: str
) -> tuple[RunRecord | None, RunRecord | None]:
    """The reference run and the candidate run, one after the other or taking turns step by step.

    The reference is marked as such, and the candidate, when both ended ok,
    carries its time ratios to it. Either is None only if Ctrl-C came before
    it started.
    """
    if interleave == "run":
        ref, record = session.run(reference), session.run(candidate)
    else:  # CPU settings are the process's: runs taking turns share one set, untuned
        both = (replace(reference, cpu_tune=False), replace(candidate, cpu_tune=False))
        core = lockstep.shared_core(candidate.loader)
        ref, record = lockstep.run_lockstep(lambda i, turn: session.run(both[i], turn=turn), len(both), core)
    if ref is not None:
        ref.role = "reference"
        if record is not None and ref.status == record.status == "ok":
            link_reference(record, ref, interleave)
    return ref, record


def link_reference(record: RunRecord, ref: RunRecord, interleave: str = "run") -> None:
    """Store the reference's times and this run's ratios to them (noise-aware gating)."""
    record.reference = {
        "recipe": ref.recipe,
        "run_id": ref.run_id,
        "train_s": ref.timings.train_s,
        "total_s": ref.timings.total_s,
        "interleave": interleave,
    }
    record.timings_ratio = {
        "train_s": record.timings.train_s / ref.timings.train_s if ref.timings.train_s else None,
        "total_s": record.timings.total_s / ref.timings.total_s if ref.timings.total_s else None,
    }


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def run_table(records: Sequence[RunRecord | Mapping[str, Any]], settings: Sequence[str] | None = None) -> str:
    """Median [IQR] per recipe, device and variant; runs that did not finish, with their reason.

    ``records`` are records or their dicts (as read back from files); ``settings``, one label per record,
    also splits the groups (a suite's runs of one recipe may differ in more than device and variant).
    """
    from .report import MEASURES, flatten, summarize

    dicts = [r.to_dict() if isinstance(r, RunRecord) else r for r in records]
    runs = pd.DataFrame([flatten(r, Path(str(r.get("run_id")))) for r in dicts])
    keys = ["recipe", "device", "variant", *(["setting"] if settings is not None else [])]
    if settings is not None:
        runs["setting"] = list(settings)
    rows = []
    ok = runs[runs["status"] == "ok"]
    if len(ok):
        for _, group in summarize(ok, keys).iterrows():
            row = {k: group[k] for k in (*keys, "runs")}
            row["status"] = "ok"
            for label in MEASURES.values():
                spread = f" [{_number(group[label + ' IQR'])}]" if group["runs"] > 1 else ""
                row[label] = f"{_number(group[label])}{spread}"
            rows.append(row)
    for _, run in runs[runs["status"] != "ok"].iterrows():
        rows.append({k: run[k] for k in keys} | {"runs": 1, "status": f"{run['status']}: {run['error']}"})
    note = "median [IQR] over repeats" if any(r.get("runs", 1) > 1 for r in rows) else ""
    return tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True) + (f"\n({note})" if note else "")


def cmd_list(args) -> int:
    plugins, session = _load(args)
    rows = [
        {"kind": e.kind, "name": e.name, "plugin": e.plugin, "description": e.description} for e in session.registry
    ]
    print(tabulate(rows, headers="keys", tablefmt="simple"))
    for name, error in plugins.broken.items():
        print(f"broken plugin {name!r}: {error}")
    return 0
