"""Orchestration of many runs: devices x repeats, each with its reference, in lockstep or not.

The path of one command line: :func:`cmd_run` turns ``run``'s flags into a
:class:`~cifar_bench.runner.RunConfig` (:func:`run_config`), then
:func:`run_runs` makes each run (``Session.run``: setup, warm-up, training,
evaluation, the record), completes its record (suite key, reference and
ratios) and hands it to ``Session.finish``, which shows it to ``run_end``
observers and writes it. ``run --nproc`` starts the same command under
torchrun (:func:`launch_run`), and a rank under torchrun joins the others.
Suites and benchmarks use the same functions.
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
from dataclasses import replace

import torch

from . import distributed, lockstep, manager
from .cache import default_cache_dir
from .cli import MAX_SEED
from .components import SWAPPABLE_KINDS, DataSource
from .console import Console
from .devices import parse_devices, unavailable_reason
from .errors import RunFailed, UsageError
from .records import RunRecord, prepare_results_dir
from .registry import collect
from .report import run_table
from .runner import RunConfig, Session, check
from .variants import Variant


def load(args) -> tuple[manager.PluginManager, Session]:
    """The plugins a command line names (``-p`` before and after the subcommand), and a session over them."""
    plugins = manager.build([*args.plugins_global, *args.plugins_sub])
    return plugins, Session(plugins, collect(plugins))


def cmd_run(args) -> int:
    """Runs in this process; ``--nproc N`` starts N ranks under torchrun, and a rank under torchrun joins them."""
    if not distributed.launched_by_torchrun():
        return launch_run(args) if args.nproc is not None else run_runs(args)
    # torchrun stops the other ranks with SIGTERM when one fails: that failure, not an interrupt, is what counts.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    world = distributed.init(parse_devices(args.device), args.dist_timeout or distributed.DEFAULT_TIMEOUT_S)
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
    preflight(args)
    plugins, session = load(args)
    plugins.check_broken()  # before torchrun starts: N ranks would each refuse it
    candidate, reference = run_config(args), reference_config(args)
    for config in (candidate, *([reference] if reference else [])):
        check(config, session.registry.recipe(config.recipe), args.nproc)
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
        kind: getattr(args, f"component_{kind}") for kind in SWAPPABLE_KINDS if getattr(args, f"component_{kind}")
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
        retune=args.retune,
        threads=args.threads,
    )


def reference_config(args) -> RunConfig | None:
    """The ``--reference`` run: the candidate's data, device, variant, seed and length, not its recipe changes."""
    if not args.reference:
        return None
    length = {"epochs": args.epochs} if args.epochs is not None else {}
    return replace(run_config(args), recipe=args.reference, components={}, hyperparameters=length)


def run_runs(args) -> int:
    """The runs ``run`` asked for, devices x repeats, each with its reference if one is given."""
    preflight(args)
    plugins, session = load(args)
    plugins.check_broken()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    base = run_config(args)
    world = distributed.current()
    reference, interleave = reference_config(args), interleave_mode(args, across_processes=world.distributed)
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
            results_dir = args.results_dir if world.main else None  # rank 0 writes for all ranks
            if ref is not None:
                records.append(ref)
                session.finish(ref, results_dir)
            if record is None:  # interrupted before the candidate started
                print(run_table(records))
                return 130
            records.append(record)
            record.suite_key = args.suite_key
            path = session.finish(record, results_dir)
            if not args.quiet or args.repeats == 1:
                print(f"record: {path}")
            if "interrupted" in (record.status, ref.status if ref else None):
                print(run_table(records))
                return 130
            if record.status == "skipped":
                break  # the device is absent: its other repeats would say the same
    print(run_table(records))
    return 1 if any(r.status in ("failed", "diverged") for r in records) else 0


def preflight(args) -> None:
    """What ``run`` can check before any training: the results folder, the devices, the seeds.

    Each failure is bad input (exit 2) now rather than a lost or empty run later.
    """
    if distributed.current().main:  # rank 0 writes for all ranks
        prepare_results_dir(args.results_dir)
    if args.seed + args.repeats - 1 > MAX_SEED:
        raise UsageError(f"--seed {args.seed} with --repeats {args.repeats} runs past the largest seed, 2**63-1")
    if "num_classes" in dict(args.settings):
        raise UsageError("num_classes comes from the dataset's classes: drop --set num_classes")
    if args.device.strip() != "all":  # 'all' means whatever is here
        reasons = {device: unavailable_reason(device) for device in parse_devices(args.device)}
        if all(reasons.values()):
            why = "; ".join(f"{device}: {reason}" for device, reason in reasons.items())
            raise UsageError(f"no requested device is available ({why}): use --device cpu, or --device all")


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
