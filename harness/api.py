"""cifar-bench from Python: run recipes, read records, compare them. The command line calls these same functions.

::

    import cifar_bench

    record = cifar_bench.run("baseline", dataset="synthetic", epochs=1, limit_train=256, limit_test=128)
    record.metrics.test_accuracy                # a RunRecord; nothing is written unless results_dir is given
    runs = cifar_bench.load_runs("results")     # one row per run, the columns `report` uses
    verdicts = cifar_bench.compare("base/", "pr/", max_slowdown=0.05)

Options are named as ``cifar-bench run``'s flags, with underscores (``limit_train``, ``no_cpu_tune``,
``set={"lr": 0.01}``, ``plugins=["my_plugin"]`` for ``-p``). Two differ from the command line on purpose:
``results_dir`` is None (write nothing) and ``quiet`` is True (print nothing) unless given.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import default_cache_dir
from .console import Console
from .errors import RunFailed, UsageError
from .hooks.components import SWAPPABLE_KINDS, DataSource
from .hooks.evaluations import evaluation_names
from .hooks.manager import register_inline
from .results.schema import RunRecord
from .results.store import read_record
from .results.variant import Variant
from .training.config import MAX_SEED, RunConfig

# What runs (execution/, training/session, world) imports torch: 2-4 s. The reading half of this module
# (load_runs, compare; the commands report, compare, plot, publish) must not pay for it, so the running
# half imports it where it runs.

if TYPE_CHECKING:
    import pandas as pd

    from .execution.plan import Execution, Written
    from .execution.request import RunRequest
    from .results.compare import Comparison
    from .training.world import World


@dataclass(frozen=True)
class RunOptions:
    """Every option of a run, as ``cifar-bench run``'s flags name them (``--limit-train`` is ``limit_train``)."""

    device: str = "cpu"  # cpu, cuda, cuda:N, mps, a list (cpu,cuda) or all
    seed: int = 0
    repeats: int = 1  # runs with seeds seed, seed+1, ...
    seeds: Sequence[int] | None = None  # the seeds themselves (instead of seed and repeats)
    epochs: int | None = None
    batch_size: int | None = None
    set: Mapping[str, Any] = field(default_factory=dict)  # any hyperparameter
    dataset: str | None = None
    data_dir: str | None = None
    data_root: str = "./data"
    limit_train: int | None = None
    limit_test: int | None = None
    loader: str = "tensor"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    cuda_graph: bool = False
    deterministic: bool = False
    cache_dir: Path | None = None  # the decoded-data cache [~/.cache/cifar-bench]
    no_cache: bool = False
    results_dir: Path | None = None  # None: write nothing
    quiet: bool = True  # no progress, loss log or results printed
    threads: int | None = None
    no_cpu_tune: bool = False
    retune: bool = False
    target_acc: float | None = None
    stop_at_target: bool = False
    reference: str | None = None
    interleave: str | None = None
    transform: str | None = None
    model: str | None = None
    loss: str | None = None
    optimizer: str | None = None
    scheduler: str | None = None
    nproc: int | None = None
    dist_timeout: float | None = None
    plugins: Sequence[str] = ()  # -p: module.path, path/to/file.py or no:NAME
    # Experiment trackers (--track NAME[=ARGUMENT], see execution/tracking.py): ["mlflow", "tensorboard=runs"].
    track: Sequence[str] = ()
    mlflow_experiment: str | None = None  # --mlflow-experiment: the experiment of the mlflow tracker
    # --measure instructions: this many training steps counted under valgrind (see training/instructions.py);
    # the process must already run under valgrind, as 'cifar-bench run --measure instructions' makes sure.
    count_steps: int | None = None
    # Evaluations after training: "corruptions,calibration" or a list; "none" for none; None: the recipe's.
    evaluate: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "limit_train", "limit_test", "repeats", "threads", "nproc", "count_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UsageError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.threads is not None and self.threads > (os.cpu_count() or 1):
            raise UsageError(f"threads {self.threads} is more than this machine's {os.cpu_count()} CPU cores")
        for seed in (self.seed, *(self.seeds or ())):
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
                raise UsageError(f"a seed must be a whole number between 0 and 2**63-1, got {seed!r}")
        if self.seeds is not None and (self.repeats != 1 or not len(self.seeds)):  # seeds name every run
            raise UsageError(f"seeds lists every run (got {len(self.seeds)}): leave repeats out, or give seeds")

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> RunOptions:
        """The options, refusing a name that is no option with the closest one (``limit_trian``: limit_train?)."""
        known = [f.name for f in fields(cls)]
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                raise UsageError(f"unknown run option {name!r}" + (f": did you mean {close[0]!r}?" if close else ""))
        return cls(**options)

    def request(self, recipe: str) -> RunRequest:
        """The runs these options ask for."""
        from .execution.request import RunRequest, seeds_from

        overrides = dict(self.set)
        overrides.update({k: getattr(self, k) for k in ("epochs", "batch_size") if getattr(self, k) is not None})
        base = RunConfig(
            recipe=recipe,
            variant=Variant(loader=self.loader, precision=self.precision, channels_last=self.channels_last,
                            compile=self.compile, cuda_graph=self.cuda_graph, deterministic=self.deterministic),
            hyperparameters=overrides,
            components={kind: getattr(self, kind) for kind in SWAPPABLE_KINDS if getattr(self, kind)},
            dataset=self.dataset,
            source=DataSource(root=self.data_root, data_dir=self.data_dir),
            limit_train=self.limit_train,
            limit_test=self.limit_test,
            cache_dir=None if self.no_cache else (self.cache_dir or default_cache_dir()),
            target_acc=self.target_acc,
            stop_at_target=self.stop_at_target,
            cpu_tune=not self.no_cpu_tune,
            retune=self.retune,
            threads=self.threads,
            processes=self.nproc or 1,
            count_steps=self.count_steps,
            evaluations=evaluation_names(self.evaluate),
        )  # fmt: skip
        seeds = tuple(self.seeds) if self.seeds is not None else seeds_from(self.seed, self.repeats)
        return RunRequest(base, self.device, seeds, self.reference, self.interleave, self.epochs, self.results_dir)


def run(recipe: str, **options: Any) -> RunRecord:
    """Train and evaluate ``recipe`` once; its record (written only when ``results_dir`` is given)."""
    records = runs(recipe, **options)
    if len(records) != 1:
        raise UsageError(f"these options make {len(records)} runs: use cifar_bench.runs(...) for several")
    return records[0]


def runs(recipe: str, **options: Any) -> list[RunRecord]:
    """Every run the options ask for (devices x seeds, each beside its reference): their records, in order."""
    options = RunOptions.of(options)
    if options.nproc is not None:
        return launch(recipe, options)[0].records
    console = None if options.quiet else Console(progress=True)
    return run_request(recipe, options, console=console).records


def run_request(recipe: str, options: RunOptions, *, world: World | None = None, written: Written | None = None,
                console: Console | None = None) -> Execution:  # fmt: skip
    """The runs ``options`` ask for, in this process (``world``: this rank of a data-parallel run; one process
    when None).

    ``written`` is told of each record as it is stored; ``console``, if given, shows the runs as they go.
    """
    from .execution import tracking
    from .execution.inprocess import InProcess
    from .execution.plan import execute
    from .execution.request import preflight, results_folder
    from .training.session import Session
    from .training.world import SINGLE

    world = SINGLE if world is None else world
    request = options.request(recipe)
    plan = request.plan(across_processes=world.distributed)
    preflight(request)
    track = tracking.parse(options.track, options.mlflow_experiment)
    with results_folder(request.results_dir, writes=world.main):
        session = Session.load(options.plugins)
        if not world.main:
            plan = replace(plan, results_dir=None)  # rank 0 writes for every rank
        with tracking.Trackers.start(session, track, world):  # closed after the last run, however it ended
            if console is not None:
                register_inline(session.plugins, console, "console")
            return execute(plan, InProcess(session, world), session, written=written)


def launch(recipe: str, options: RunOptions, *, traceback: bool = False) -> tuple[Execution, int]:
    """The runs as one data-parallel run of ``options.nproc`` ranks under torchrun, started here.

    What can be checked here is checked first (N ranks would each refuse it). Returns the records rank 0
    wrote (read back) and torchrun's exit code; a rank's failure is raised as its one-line error.
    """
    import torch

    from .execution import torchrun, tracking
    from .execution.plan import Execution
    from .execution.request import preflight, results_folder
    from .training import evaluations
    from .training.hyperparameters import check
    from .training.session import Session
    from .training.world import backend_for

    request = options.request(recipe)
    devices = request.device_list()
    if len(devices) != 1:
        raise UsageError(f"--nproc runs on one device, got {options.device}")
    backend_for(devices[0])
    plan = request.plan(across_processes=True)
    if devices[0] == "cuda" and torch.cuda.device_count() < options.nproc:
        raise UsageError(
            f"--nproc {options.nproc} needs {options.nproc} GPUs; this machine has {torch.cuda.device_count()}"
        )
    preflight(request)
    track = tracking.parse(options.track, options.mlflow_experiment)
    with results_folder(request.results_dir), tempfile.TemporaryDirectory(prefix="cifar-bench-launch-") as folder:
        session = Session.load(options.plugins)  # a broken plugin is refused before torchrun starts
        tracking.check(session.registry, track)  # and an unknown tracker: rank 0 makes them, this process never
        for planned in plan.runs:
            for config in (planned.config, *([planned.reference] if planned.reference else [])):
                spec = session.registry.recipe(config.recipe)
                check(config, spec)
                evaluations.entries(session.registry, spec, config)  # unknown, or refused with several ranks
        manifest = Path(folder) / "written.json"
        if plan.results_dir is None:  # nothing to keep: rank 0 writes here, and the records are read back
            plan = replace(plan, results_dir=Path(folder))
        settings = torchrun.payload(plan, options.plugins, autoload=None, quiet=options.quiet,
                                    timeout_s=options.dist_timeout, traceback=traceback, manifest=manifest,
                                    track=[spec.text for spec in track])  # fmt: skip
        code, error = torchrun.launch(settings, options.nproc)
        if error:
            raise (UsageError if code == UsageError.exit_code else RunFailed)(error)
        paths = [Path(p) for p in torchrun.read_manifest(manifest)]
        done = Execution([RunRecord.from_dict(read_record(p)) for p in paths],
                         [p if request.results_dir is not None else None for p in paths])  # fmt: skip
    return done, code


def load_runs(*paths: str | Path) -> pd.DataFrame:
    """Every run record under ``paths`` (files, or folders searched recursively), one row per run.

    The columns are those ``report`` groups and summarises by; runs of every status are included.
    """
    from .results.reader import load_runs as read

    return read(list(paths) or [Path("results")], report=None).runs


def compare(baseline: str | Path | pd.DataFrame, current: str | Path | pd.DataFrame, **thresholds: Any) -> Comparison:
    """Judge ``current`` against ``baseline`` (record folders or files, or frames from :func:`load_runs`).

    ``thresholds`` are ``compare``'s options: ``max_slowdown`` (a fraction, 0.10), ``max_accuracy_drop``
    (points, 0.5), ``alpha``, ``metric``, ``ratio``, ``paired`` (None: used when the records allow),
    ``target_acc`` and ``detect`` (points), ``max_instructions_increase`` (a fraction, 0.01: pairs with
    instruction counts on both sides are judged on them). Returns the
    :class:`~cifar_bench.results.compare.Comparison`: its ``pairs`` each with a verdict, reasons and the
    statistics behind them, ``regressions``, ``warnings`` and ``notes``.
    """
    from .results.compare import compare_frames

    return compare_frames(_frame(baseline), _frame(current), **thresholds)


def _frame(runs: str | Path | pd.DataFrame) -> pd.DataFrame:
    if isinstance(runs, (str, Path)):
        from .results.reader import load_runs as read

        return read([runs]).runs
    return runs
