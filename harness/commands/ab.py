"""``cifar-bench ab --a CMD --b CMD -- run RECIPE [flags]``: two installs taking turns one training step each,
and ``ab-side``, the hidden command each install runs as one side (see ``execution/ab.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, one_line

if TYPE_CHECKING:
    from ..execution.ab_counted import CountedSide

SIDES = ("a", "b")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--a", metavar="CMD", help="side a's cifar-bench command (the base): venv-base/bin/cifar-bench")
    parser.add_argument("--b", metavar="CMD", help="side b's cifar-bench command (the change)")
    parser.add_argument("--results-a", type=Path, default=Path("results/a"), help="side a's records [results/a]")
    parser.add_argument("--results-b", type=Path, default=Path("results/b"), help="side b's records [results/b]")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="S",
                        help="longest a side may take to answer: setup, one step, evaluation [300]")  # fmt: skip
    parser.add_argument("--protocol", action="store_true", help="print the lockstep protocol version and exit")
    parser.add_argument("run", nargs=argparse.REMAINDER, help="-- run RECIPE [flags]: the workload of both sides")


def add_side_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--side", choices=SIDES, required=True)
    parser.add_argument("run", nargs=argparse.REMAINDER)


def cmd_ab(args: argparse.Namespace) -> int:
    from ..execution.ab import coordinate
    from ..execution.ab_counted import count_sides, wants_counts
    from ..execution.ab_protocol import PROTOCOL

    if args.protocol:
        print(PROTOCOL)
        return 0
    if args.a is None or args.b is None:
        raise UsageError("ab needs both sides: --a CMD --b CMD (each a cifar-bench command, e.g. venv/bin/cifar-bench)")
    run_argv = list(args.run)
    if run_argv[:1] == ["--"]:
        run_argv = run_argv[1:]
    if run_argv[:1] != ["run"] or len(run_argv) < 2:
        raise UsageError("ab runs one workload on both sides: end with '-- run RECIPE [flags]'")
    if "--results-dir" in run_argv:
        raise UsageError("ab writes each side's records to its own folder: use --results-a/--results-b, "
                         "not --results-dir")  # fmt: skip
    results = {"a": args.results_a, "b": args.results_b}
    if wants_counts(run_argv):  # counts need no turns: each side counted in turn, on one command line
        sides = count_sides({"a": args.a, "b": args.b}, run_argv, results)
        print(counts_table(sides, results))
        return 0 if all(s.code == 0 for s in sides) else 1
    pairs = coordinate(args.a, args.b, run_argv, results, args.timeout)
    print(pairs_table(pairs))
    failed = [p for p in pairs for s in SIDES if p[s].get("status") in ("failed", "diverged")]
    return 1 if failed else 0


def cmd_side(args: argparse.Namespace) -> int:
    """One side: the runs ``run``'s flags describe, each taking turns with the other side's."""
    import socket
    from dataclasses import replace

    import torch

    from ..execution import ab_side
    from ..execution.ab_protocol import Channel
    from ..execution.request import preflight
    from ..results.store import prepare_results_dir
    from ..training.session import Session
    from . import run
    from .cli import build_parser

    channel = Channel(socket.socket(fileno=args.fd))
    run_argv = args.run[1:] if args.run[:1] == ["--"] else args.run
    try:
        run_args = build_parser(run_argv).parse_args(run_argv)
        run_args.plugins_global = [*args.plugins_global, *run_args.plugins_global]  # '-p' before 'ab-side'
        if run_args.command != "run":
            raise UsageError("ab-side runs 'run RECIPE [flags]'")
        tracked = [("--track", run_args.track or None), ("--mlflow-experiment", run_args.mlflow_experiment)]
        refused = [("--reference", run_args.reference), ("--nproc", run_args.nproc), *tracked]
        for flag, value in refused:
            if value is not None:
                raise UsageError(f"ab takes turns between two installs: {flag} cannot be used with it")
        options = run.options(run_args)
        request = options.request(run_args.recipe)
        if len(request.device_list()) != 1:
            raise UsageError(f"ab runs on one device, got {run_args.device}")
        if run_args.threads is not None:
            torch.set_num_threads(run_args.threads)
        preflight(request)  # hyperparameter names, devices: before anything trains
        prepare_results_dir(request.results_dir)  # a folder that cannot take the records, too
        session = Session.load(options.plugins)
    except UsageError as exc:
        channel.send("error", message=one_line(exc), code=exc.exit_code)
        raise
    plan = request.plan()
    # CPU settings are tuned per process: two installs taking turns keep torch's, fixed by --threads.
    plan = replace(plan, runs=tuple(replace(p, config=replace(p.config, cpu_tune=False)) for p in plan.runs))
    return ab_side.serve(channel, session, plan, loader=run_args.loader)


def pairs_table(pairs: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    from ..execution.ab_protocol import paired_ratio

    rows = []
    for p in pairs:
        a, b = p["a"], p["b"]
        ratio = paired_ratio(b.get("steps") or [], a.get("steps") or [])
        both_ok = a.get("status") == b.get("status") == "ok"
        rows.append({
            "repeat": p["repeat"],
            "first": p["first"],
            "status a/b": f"{a.get('status')}/{b.get('status')}",
            "train s a": _fmt(a.get("train_s")),
            "train s b": _fmt(b.get("train_s")),
            "b/a paired": f"{ratio.train_s:.4f}" if ratio is not None and both_ok else "–",
            "records": f"{p['paths'][0]}  {p['paths'][1]}",
        })  # fmt: skip
    return tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True)


def counts_table(sides: list[CountedSide], results: dict[str, Path]) -> str:
    """Each side's counted runs side by side: instructions per step and per evaluated image, and b over a."""
    from tabulate import tabulate

    from ..execution.ab_counted import counts_of

    rows, per_step = [], {}
    for side in sides:
        for path in side.records:
            counts = counts_of(path)
            per_step.setdefault(side.name, []).append(counts.get("per_step"))
            rows.append({
                "side": side.name,
                "status": counts.get("status"),
                "instr/step": _count(counts.get("per_step")),
                "instr/eval image": _count(counts.get("per_eval_image")),
                "record": str(path),
            })  # fmt: skip
    table = tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True)
    a, b = (_median(per_step.get(name, [])) for name in SIDES)
    if a and b:
        table += (
            f"\nb/a instructions per step: {b / a:.5f} ({b / a - 1:+.3%}); gate on it: "
            f"cifar-bench compare {results['a']} {results['b']}"
        )
    return table


def _count(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, (int, float)) else "–"


def _median(values: list[Any]) -> float | None:
    import statistics

    numbers = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(numbers) if numbers else None


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"
