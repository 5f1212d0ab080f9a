"""``cifar-bench suite FILE``: many runs from one TOML file, in order, resumable.

A suite file lists groups of runs; each group is recipes x devices x
variants x seeds, and ``[defaults]`` holds what the groups share::

    name = "cpu-sweep"              # optional, shown in the output
    results_dir = "results/sweep"   # optional, relative to this file; --results-dir wins

    [defaults]                      # every key a [[runs]] entry can have; the entry's own win
    seeds = [0, 1, 2]
    epochs = 1
    data_dir = "/data/cifar10-jpeg" # relative paths are relative to this file

    [[runs]]
    recipes = ["baseline", "airbench_narrow"]
    variants = [{}, { precision = "bf16", channels_last = true }]

    [[runs]]
    recipes = "baseline"
    batch_size = 32
    set = { lr = 0.01 }             # any hyperparameter, as run's --set
    nproc = 2                       # data-parallel, as run's --nproc

Every run gets a *suite key*: a hash of all that decides what it computes
(recipe, device, variant, seed and every option, paths as written). The key
is stored in the run's record, so a suite started again skips each run that
already has an ``ok`` record in the results folder: a killed suite resumes
where it stopped, and runs that failed are tried again. A run that fails is
recorded with ``status: failed`` and its error, and the suite goes on. The
last thing a suite prints is the table of all its runs, read back from the
records, so it covers runs from earlier, interrupted attempts too.

Single-process runs run in this process (data decoded once is reused);
runs with ``nproc`` start torchrun, as ``run --nproc`` does. With
``--executor ray`` the runs are tasks on a Ray cluster instead
(``ray_executor.py``); records still come back here and are written here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

# torch, and the modules that need it, are imported inside the functions that run things:
# building the command line (every cifar-bench command does) must not load torch.
from . import manager, variants
from .components import SWAPPABLE_KINDS
from .console import Console
from .devices import parse_devices, unavailable_reason
from .errors import PluginError, UsageError, unknown_name
from .records import (
    RecordError,
    RunRecord,
    prepare_results_dir,
    read_record,
)
from .report import run_table, warn
from .variants import LOADERS, PRECISIONS

if TYPE_CHECKING:
    from .runner import RunConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOP_KEYS = ("name", "results_dir", "defaults", "runs")

#: What each variant table may set, with its default.
VARIANT_KEYS: dict[str, Any] = {"loader": "tensor", "precision": "fp32", "channels_last": False, "compile": False}

#: Keys crossed into separate runs; every other key is an option shared by the group's runs.
CROSSED = ("recipes", "devices", "variants", "seeds")

#: Option key -> ``run`` flag. Options are passed to ``run`` as these flags, so both check them alike.
FLAGS: dict[str, str] = {
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "dataset": "--dataset",
    "data_dir": "--data-dir",
    "data_root": "--data-root",
    "limit_train": "--limit-train",
    "limit_test": "--limit-test",
    "target_acc": "--target-acc",
    "stop_at_target": "--stop-at-target",
    "deterministic": "--deterministic",
    "no_cache": "--no-cache",
    "threads": "--threads",
    "nproc": "--nproc",
}
POSITIVE_INTS = ("epochs", "batch_size", "limit_train", "limit_test", "threads", "nproc")
STRINGS = ("dataset", "data_dir", "data_root")
BOOLS = ("stop_at_target", "deterministic", "no_cache")
PATHS = ("data_dir", "data_root")  # relative to the suite file
RUN_KEYS = (*CROSSED, *FLAGS, "set", "components")


@dataclass(frozen=True)
class SuiteRun:
    """One run of a suite: what ``cifar-bench run`` would be told, and the key that names it."""

    recipe: str
    device: str
    seed: int
    variant: Mapping[str, Any]  # every key of VARIANT_KEYS
    options: Mapping[str, Any]  # FLAGS keys, "set" and "components", as written in the file
    base: Path = Path(".")  # the suite file's folder: where relative paths start
    repeat: int = 0  # which of the group's seeds this is, from 0
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)  # resolved by validate()

    @property
    def key(self) -> str:
        """A stable name for what this run computes (paths as written, so a moved suite keeps its keys)."""
        what = {
            "recipe": self.recipe,
            "device": self.device,
            "seed": self.seed,
            "variant": dict(self.variant),
            "options": dict(self.options),
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def variant_label(self) -> str:
        """As ``report`` labels variants: ``tensor fp32``, ``tensor bf16 channels_last`` ..."""
        flags = {"deterministic": self.options.get("deterministic"), "world_size": self.options.get("nproc", 1)}
        return variants.label({**self.variant, **flags})

    def settings(self) -> dict[str, Any]:
        """The options flattened to ``name: value`` (hyperparameters and components by their own names)."""
        flat = {k: v for k, v in self.options.items() if k not in ("set", "components")}
        return {**flat, **self.options.get("set", {}), **self.options.get("components", {})}

    def config(self) -> RunConfig:
        """This run as the harness runs it: the same RunConfig that ``cifar-bench run``'s flags would give."""
        from .cache import default_cache_dir
        from .components import DataSource
        from .runner import RunConfig
        from .variants import Variant

        option, v = self.options.get, self.variant
        path = {key: str(self.base / option(key)) for key in PATHS if option(key) is not None}
        lengths = {key: option(key) for key in ("epochs", "batch_size") if option(key) is not None}
        return RunConfig(
            recipe=self.recipe,
            device=self.device,
            seed=self.seed,
            loader=v["loader"],
            variant=Variant(precision=v["precision"], channels_last=v["channels_last"], compile=v["compile"]),
            hyperparameters={**option("set", {}), **lengths},
            components=dict(option("components", {})),
            dataset=option("dataset"),
            source=DataSource(root=path.get("data_root", "./data"), data_dir=path.get("data_dir")),
            limit_train=option("limit_train"),
            limit_test=option("limit_test"),
            cache_dir=None if option("no_cache") else default_cache_dir(),
            target_acc=option("target_acc"),
            stop_at_target=bool(option("stop_at_target", False)),
            deterministic=bool(option("deterministic", False)),
            threads=option("threads"),
            repeat=self.repeat,
        )

    def argv(self, results_dir: Path, *, quiet: bool) -> list[str]:
        """This run as ``cifar-bench run`` arguments: how a data-parallel run starts its ranks under torchrun."""
        v = self.variant
        args = [
            "run",
            self.recipe,
            "--device",
            self.device,
            "--seed",
            str(self.seed),
            "--loader",
            v["loader"],
            "--precision",
            v["precision"],
        ]
        args += ["--channels-last"] * v["channels_last"] + ["--compile"] * v["compile"]
        for key, flag in FLAGS.items():
            value = self.options.get(key)
            if isinstance(value, bool):
                args += [flag] * value
            elif value is not None:
                args += [flag, str(self.base / value) if key in PATHS else str(value)]
        for name, value in self.options.get("set", {}).items():
            args += ["--set", f"{name}={json.dumps(value)}"]
        for kind, name in self.options.get("components", {}).items():
            args += [f"--{kind}", name]
        return [*args, "--results-dir", str(results_dir), "--suite-key", self.key] + ["--quiet"] * quiet


@dataclass
class Suite:
    path: Path
    name: str
    runs: list[SuiteRun]
    results_dir: Path | None  # from the file; None: the command's default
    duplicates: int = 0  # runs listed twice, run once


# -- reading the file -------------------------------------------------------------------


def load(path: Path) -> Suite:
    """Read and check a suite file; every problem is a one-line UsageError naming where it is."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no such suite file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read suite file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    _known(data, TOP_KEYS, f"{path}")
    name = data.get("name", Path(path).stem)
    if not isinstance(name, str):
        raise UsageError(f"{path}: name must be a string")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise UsageError(f"{path}: [defaults] must be a table")
    groups = data.get("runs")
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        raise UsageError(f"{path}: needs at least one [[runs]] table (recipes x devices x variants x seeds)")
    base = Path(path).resolve().parent
    results_dir = data.get("results_dir")
    if results_dir is not None and not isinstance(results_dir, str):
        raise UsageError(f"{path}: results_dir must be a string")
    _check(defaults, f"{path}: [defaults]")
    runs: list[SuiteRun] = []
    for i, group in enumerate(groups):
        where = f"{path}: [[runs]] #{i + 1}"
        _check(group, where)
        merged = {**defaults, **group}
        for table in ("set", "components"):  # tables merge key by key
            merged[table] = {**defaults.get(table, {}), **group.get(table, {})}
        runs.extend(_expand(merged, where, base))
    unique = list({run.key: run for run in reversed(runs)}.values())[::-1]  # the first of each key, in order
    return Suite(Path(path), name, unique, base / results_dir if results_dir else None, len(runs) - len(unique))


def _known(table: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    for key in table:
        if key not in known:
            raise UsageError(f"{where}: {unknown_name('key', key, known)}")


def _check(table: Mapping[str, Any], where: str) -> None:
    """Types of one [defaults] or [[runs]] table, each key as the file spells it."""
    _known(table, RUN_KEYS, where)
    for key, value in table.items():
        if key in POSITIVE_INTS and not (_is_int(value) and value >= 1):
            raise UsageError(f"{where}: {key} must be a whole number of at least 1, got {value!r}")
        if key in STRINGS and not (isinstance(value, str) and value):
            raise UsageError(f"{where}: {key} must be a non-empty string, got {value!r}")
        if key in BOOLS and not isinstance(value, bool):
            raise UsageError(f"{where}: {key} must be true or false, got {value!r}")
    target = table.get("target_acc", 1)  # its range is checked with the rest of each run (runner.check)
    if isinstance(target, bool) or not isinstance(target, (int, float)):
        raise UsageError(f"{where}: target_acc must be a number, got {target!r}")
    for key, kind in (("recipes", str), ("devices", str), ("seeds", int), ("variants", dict)):
        if key in table:
            values = _listed(table[key])
            if not values or not all(isinstance(v, kind) and not isinstance(v, bool) and v != "" for v in values):
                what = {str: "strings", int: "whole numbers", dict: "tables"}[kind]
                raise UsageError(f"{where}: {key} must be one or a list of {what}, got {table[key]!r}")
    for variant in _listed(table.get("variants", [])):
        _known(variant, tuple(VARIANT_KEYS), f"{where}: variants")
        if variant.get("loader", "tensor") not in LOADERS:
            raise UsageError(f"{where}: variants: loader must be one of {', '.join(LOADERS)}")
        if variant.get("precision", "fp32") not in PRECISIONS:
            raise UsageError(f"{where}: variants: precision must be one of {', '.join(PRECISIONS)}")
        for flag in ("channels_last", "compile"):
            if not isinstance(variant.get(flag, False), bool):
                raise UsageError(f"{where}: variants: {flag} must be true or false")
    settings = table.get("set", {})
    if not isinstance(settings, dict):
        raise UsageError(f"{where}: set must be a table of hyperparameters, e.g. set = {{ lr = 0.01 }}")
    for name, value in settings.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise UsageError(f"{where}: set.{name} must be a number, string, boolean or array") from None
    components = table.get("components", {})
    if not isinstance(components, dict):
        raise UsageError(f"{where}: components must be a table, e.g. components = {{ model = 'resnet18' }}")
    _known(components, SWAPPABLE_KINDS, f"{where}: components")
    for kind, name in components.items():
        if not isinstance(name, str) or not name:
            raise UsageError(f"{where}: components.{kind} must be a component name")


def _expand(group: Mapping[str, Any], where: str, base: Path) -> list[SuiteRun]:
    """One group's runs. Seeds are the outer loop, so that the repeats of each recipe spread over
    the suite's time instead of running back to back: a slow spell of the machine hits all alike."""
    if "recipes" not in group:
        raise UsageError(f"{where}: needs recipes (in the table or in [defaults])")
    devices: list[str] = []
    for spec in _listed(group.get("devices", "cpu")):
        devices += [d for d in parse_devices(spec) if d not in devices]
    variants = [{**VARIANT_KEYS, **v} for v in _listed(group.get("variants", {}))]
    options = {k: v for k, v in group.items() if k not in CROSSED and v != {}}
    return [
        SuiteRun(recipe, device, seed, variant, options, base, repeat)
        for repeat, seed in enumerate(_listed(group.get("seeds", 0)))
        for recipe in _listed(group["recipes"])
        for device in devices
        for variant in variants
    ]


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(suite: Suite, registry) -> None:
    """What can be known before anything runs: recipes, components, hyperparameters, data-parallel splits.

    Resolves each run's hyperparameters on the way (kept for records of runs that cannot start).
    """
    from . import distributed, runner

    for i, run in enumerate(suite.runs):
        try:
            for kind, name in run.options.get("components", {}).items():
                registry.get(kind, name)
            hp = runner.check(run.config(), registry.recipe(run.recipe), run.options.get("nproc", 1))
            if "nproc" in run.options:
                distributed.backend_for(run.device)
        except UsageError as exc:
            raise UsageError(f"{suite.path}: {run.recipe} on {run.device} (seed {run.seed}): {exc}") from None
        suite.runs[i] = replace(run, hyperparameters=hp)


# -- records ------------------------------------------------------------------------------


def records_by_key(
    results_dir: Path, keys: set[str], report: Callable[[str], None] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The records in ``results_dir`` of the runs named by ``keys``, oldest first per key.

    A file that is no sane record is skipped, and named to ``report`` if given.
    """
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(results_dir.rglob("*.json")) if results_dir.is_dir() else []:
        try:
            data = read_record(path)
        except RecordError as exc:
            if report:  # not a record, or a newer schema: nothing a resume could use
                report(f"skipped {exc}")
            continue
        if data.get("suite_key") in keys:
            found.setdefault(data["suite_key"], []).append(data)
    for records in found.values():
        records.sort(key=lambda r: (str(r.get("started_at", "")), str(r.get("run_id", ""))))
    return found


def done(records: Sequence[Mapping[str, Any]]) -> bool:
    return any(r.get("status") == "ok" for r in records)


def shown(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The record that stands for a run in the table: its latest ok one, else its latest attempt."""
    ok = [r for r in records if r.get("status") == "ok"]
    return (ok or list(records) or [None])[-1]


def failed_record(run: SuiteRun, error: str, seconds: float, session) -> RunRecord:
    """The record of a run that could not make its own (its data missing, its torchrun or worker dead)."""
    record = session.unstarted(run.config(), "failed", error, seconds, processes=run.options.get("nproc", 1))
    record.suite_key = run.key
    return record


# -- the command --------------------------------------------------------------------------


def add_command(commands, plugin_flag) -> None:
    parser = commands.add_parser("suite", help="run a TOML suite of runs in order; resumes where it stopped")
    parser.add_argument("file", type=Path, help="the suite file (see docs/distributed-and-suites.md)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and which are done; run nothing")
    parser.add_argument("--results-dir", type=Path, help="where records go [the file's results_dir, or results/]")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or loss log within runs")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: each run in turn, here [default]; ray: as tasks on a Ray cluster")  # fmt: skip
    parser.add_argument("--address", help="with --executor ray: the cluster's head (HOST:PORT, ray://..., auto) "
                        "[RAY_ADDRESS, else a Ray instance started for this suite]")  # fmt: skip
    parser.add_argument("--max-retries", type=_non_negative_int, metavar="N",
                        help="with --executor ray: runs again a run whose worker died, up to N times [1]")  # fmt: skip
    plugin_flag(parser, "plugins_sub")
    parser.set_defaults(func=cmd_suite)


#: Where a suite's runs run: ``local`` in this process; ``ray`` as tasks on a Ray cluster (ray_executor.py).
EXECUTORS = ("local", "ray")


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text!r}")
    return int(text)


def cmd_suite(args) -> int:

    from . import orchestration

    if args.executor != "ray" and (args.address is not None or args.max_retries is not None):
        raise UsageError("--address and --max-retries are for --executor ray: add it, or drop them")
    suite = load(args.file)
    plugins, session = orchestration.load(args)
    plugins.check_broken()
    validate(suite, session.registry)
    results_dir = args.results_dir or suite.results_dir or Path("results")
    labels = _settings_labels(suite.runs)
    keys = [run.key for run in suite.runs]
    before = records_by_key(results_dir, set(keys), report=warn)
    todo = [run for run in suite.runs if not done(before.get(run.key, []))]
    extra = f"; {suite.duplicates} listed twice, run once" if suite.duplicates else ""
    print(
        f"suite {suite.name}: {len(suite.runs)} runs, {len(suite.runs) - len(todo)} done before, "
        f"{len(todo)} to run; records in {results_dir}{extra}"
    )
    if args.dry_run:
        rows = [
            {
                "#": i,
                "state": _state(before.get(run.key, [])),
                "recipe": run.recipe,
                "device": run.device,
                "variant": run.variant_label,
                "seed": run.seed,
                "setting": label,
                "key": run.key,
            }
            for i, (run, label) in enumerate(zip(suite.runs, labels, strict=True), 1)
        ]
        print(tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True))
        return 0

    if args.executor == "ray":  # an optional extra: Ray missing, or a run it cannot name, before anything is touched
        from . import ray_executor

        ray_executor.check(todo)
    prepare_results_dir(results_dir)  # a folder that cannot take records is refused before the first run
    plugin_args = [arg for plugin in (*args.plugins_global, *args.plugins_sub) for arg in ("-p", plugin)]
    start = time.perf_counter()
    if args.executor == "ray":  # imported only here: Ray is an optional extra
        from . import ray_executor

        status = ray_executor.run_suite(suite, labels, todo, args, session, plugin_args, results_dir)
    else:
        manager.register_inline(plugins, Console(progress=not args.quiet), "console")
        status = _run_local(suite, labels, before, todo, args, session, plugin_args, results_dir)
    after = records_by_key(results_dir, set(keys))
    table = [(shown(after[key]), label) for key, label in zip(keys, labels, strict=True) if key in after]
    print(
        f"suite {suite.name}: {sum(done(after.get(k, [])) for k in keys)} of {len(keys)} runs ok, "
        f"{_duration(time.perf_counter() - start)} this time"
    )
    if table:
        settings = [label for _, label in table] if any(labels) else None
        print(run_table([record for record, _ in table], settings))
    if status == "interrupted":
        return 130
    return 1 if any(record.get("status") in ("failed", "diverged") for record, _ in table) else 0


def _run_local(suite: Suite, labels, before, todo, args, session, plugin_args, results_dir: Path) -> str:
    """The local executor: each run in turn, in this process (or under torchrun); returns the last status."""
    import torch

    default_threads = torch.get_num_threads()
    start, ran, status = time.perf_counter(), 0, "ok"
    for i, (run, label) in enumerate(zip(suite.runs, labels, strict=True), 1):
        name = f"[{i}/{len(suite.runs)}] {run_name(run, label)}"
        if done(before.get(run.key, [])):
            print(f"{name}: done before, skipped")
            continue
        left = len(todo) - ran
        eta = f", about {_duration((time.perf_counter() - start) / ran * left)} left" if ran else ""
        print(f"{name}: running ({left} to run{eta})", flush=True)
        argv = [*plugin_args, *run.argv(results_dir, quiet=args.quiet)]
        if "nproc" in run.options and unavailable_reason(run.device) is None:
            status = _run_distributed(run, argv, session, results_dir)
        else:
            torch.set_num_threads(run.options.get("threads", default_threads))
            status = _run_here(run, session, results_dir)
        torch.set_num_threads(default_threads)
        ran += 1
        if status == "interrupted":
            break
    return status


def run_name(run: SuiteRun, label: str) -> str:
    """How progress lines name a run: ``baseline cpu tensor fp32 seed 0 batch_size=16``."""
    name = f"{run.recipe} {run.device} {run.variant_label} seed {run.seed}"
    return f"{name} {label}" if label else name


def _run_here(run: SuiteRun, session, results_dir: Path) -> str:
    """One run in this process, with the suite's session (decoded data is reused); returns its status.

    (A data-parallel run whose device is missing comes here too, to be recorded as skipped.)
    """
    record = record_here(run, session)
    print(f"record: {session.finish(record, results_dir)}")
    return record.status


def record_here(run: SuiteRun, session) -> RunRecord:
    """One run in this process with ``session``; its record, not yet written."""
    start = time.perf_counter()
    try:
        record = session.run(run.config())
    except (UsageError, PluginError) as exc:  # data missing, say: this run fails, the suite goes on
        record = failed_record(run, str(exc), time.perf_counter() - start, session)
    record.suite_key = run.key
    return record


def _run_distributed(run: SuiteRun, argv: list[str], session, results_dir: Path) -> str:
    """One data-parallel run under torchrun; a run that died without a record gets a failed one."""
    from . import distributed

    start = time.perf_counter()
    before = {r["run_id"] for r in records_by_key(results_dir, {run.key}).get(run.key, [])}
    try:
        code, error = distributed.launch(argv, run.options["nproc"])
    except KeyboardInterrupt:  # torchrun had Ctrl-C too and stops its ranks; the suite stops after its table
        return "interrupted"
    written = [r for r in records_by_key(results_dir, {run.key}).get(run.key, []) if r["run_id"] not in before]
    if written:
        return str(written[-1].get("status"))
    if code == 130:
        return "interrupted"
    message = error or f"exited with code {code} and wrote no record"
    record = failed_record(run, message, time.perf_counter() - start, session)
    print(f"cifar-bench: error: {message}", file=sys.stderr)
    print(f"record: {session.finish(record, results_dir)}")
    return "failed"


def _settings_labels(runs: Sequence[SuiteRun]) -> list[str]:
    """Per run, the options that differ between the suite's runs (``batch_size=32 nproc=2``); shared ones go."""
    flat = [run.settings() for run in runs]
    names = sorted({name for settings in flat for name in settings})
    varying = [n for n in names if len({json.dumps(s.get(n), sort_keys=True) for s in flat}) > 1]
    return [" ".join(f"{n}={s[n]}" for n in varying if n in s) for s in flat]


def _state(records: Sequence[Mapping[str, Any]]) -> str:
    if done(records):
        return "done"
    return f"to run (last: {records[-1].get('status')})" if records else "to run"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
