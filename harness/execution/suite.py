"""``cifar-bench suite FILE``: many runs from one TOML file, in order, resumable.

A suite file lists groups of runs; each group is recipes x devices x
variants x seeds, and ``[defaults]`` holds what the groups share::

    name = "cpu-sweep"              # optional, shown in the output
    results_dir = "results/sweep"   # optional, relative to this file; --results-dir wins
    track = ["mlflow"]              # optional: experiment trackers, as run's --track; --track wins

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

A suite becomes a plan of runs (``execution/plan.py``), each a RunConfig carrying its suite key:
single-process runs run in this process (data decoded once is reused), runs with ``nproc`` start
torchrun, as ``run --nproc`` does. With ``--executor ray`` the runs are tasks on a Ray cluster instead
(``ray_cluster.py``); records still come back here and are written here.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..cache import default_cache_dir
from ..errors import UsageError, unknown_name
from ..hooks.components import SWAPPABLE_KINDS, DataSource
from ..hooks.evaluations import evaluation_names
from ..results.store import RecordError, read_record
from ..results.variant import LOADERS, PRECISIONS, Variant
from ..training import evaluations
from ..training.config import RunConfig
from ..training.devices import parse_devices
from ..training.hyperparameters import check
from ..training.session import Session
from ..training.setup import check_reads
from ..training.world import backend_for
from .plan import Plan, PlannedRun

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOP_KEYS = ("name", "results_dir", "defaults", "runs", "track", "mlflow_experiment")

#: What each variant table may set, with its default: every field of a variant, as ``run``'s flags can.
VARIANT_KEYS: dict[str, Any] = Variant().to_dict()

#: The variant keys a suite key has always hashed; the others count only when set (so older suites keep
#: their keys, and resume).
KEYED_ALWAYS = ("loader", "precision", "channels_last", "compile")

#: Keys crossed into separate runs; every other key is an option shared by the group's runs.
CROSSED = ("recipes", "devices", "variants", "seeds")

#: Options a group may set, as ``run``'s flags of the same names (with ``_`` for ``-``).
POSITIVE_INTS = ("epochs", "batch_size", "limit_train", "limit_test", "threads", "nproc")
STRINGS = ("dataset", "data_dir", "data_root")
BOOLS = ("stop_at_target", "deterministic", "no_cache")
NUMBERS = ("target_acc",)
OPTIONS = (*POSITIVE_INTS, *STRINGS, *BOOLS, *NUMBERS)
PATHS = ("data_dir", "data_root")  # relative to the suite file
RUN_KEYS = (*CROSSED, *OPTIONS, "set", "components", "evaluate")  # evaluate: as run's --evaluate (a list or "a,b")


@dataclass(frozen=True)
class SuiteRun:
    """One run of a suite: what ``cifar-bench run`` would be told, and the key that names it."""

    recipe: str
    device: str
    seed: int
    variant: Mapping[str, Any]  # every key of VARIANT_KEYS
    options: Mapping[str, Any]  # OPTIONS keys, "set" and "components", as written in the file
    base: Path = Path(".")  # the suite file's folder: where relative paths start
    repeat: int = 0  # which of the group's seeds this is, from 0
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)  # resolved by validate()

    @property
    def key(self) -> str:
        """A stable name for what this run computes (paths as written, so a moved suite keeps its keys)."""
        variant = {k: v for k, v in self.variant.items() if k in KEYED_ALWAYS or v != VARIANT_KEYS[k]}
        what = {
            "recipe": self.recipe,
            "device": self.device,
            "seed": self.seed,
            "variant": variant,
            "options": dict(self.options),
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def variant_value(self) -> Variant:
        """The variant this run computes with (``deterministic`` may also be set as a plain option)."""
        deterministic = bool(self.variant.get("deterministic") or self.options.get("deterministic", False))
        return Variant(**{**self.variant, "deterministic": deterministic})

    @property
    def variant_label(self) -> str:
        """As ``report`` labels variants: ``tensor fp32``, ``tensor bf16 channels_last`` ..."""
        return self.variant_value.label(self.options.get("nproc", 1))

    def settings(self) -> dict[str, Any]:
        """The options flattened to ``name: value`` (hyperparameters and components by their own names)."""
        flat = {k: v for k, v in self.options.items() if k not in ("set", "components")}
        return {**flat, **self.options.get("set", {}), **self.options.get("components", {})}

    def config(self) -> RunConfig:
        """This run as the harness runs it: the same RunConfig that ``cifar-bench run``'s flags would give."""
        option = self.options.get
        path = {key: str(self.base / option(key)) for key in PATHS if option(key) is not None}
        lengths = {key: option(key) for key in ("epochs", "batch_size") if option(key) is not None}
        return RunConfig(
            recipe=self.recipe,
            device=self.device,
            seed=self.seed,
            variant=self.variant_value,
            hyperparameters={**option("set", {}), **lengths},
            components=dict(option("components", {})),
            dataset=option("dataset"),
            source=DataSource(root=path.get("data_root", "./data"), data_dir=path.get("data_dir")),
            limit_train=option("limit_train"),
            limit_test=option("limit_test"),
            cache_dir=None if option("no_cache") else default_cache_dir(),
            target_acc=option("target_acc"),
            stop_at_target=bool(option("stop_at_target", False)),
            threads=option("threads"),
            repeat=self.repeat,
            processes=option("nproc", 1),
            suite_key=self.key,
            evaluations=evaluation_names(option("evaluate")),
        )


@dataclass
class Suite:
    path: Path
    name: str
    runs: list[SuiteRun]
    results_dir: Path | None  # from the file; None: the command's default
    duplicates: int = 0  # runs listed twice, run once
    # Experiment trackers for the suite's runs, as run's --track and --mlflow-experiment (not in any suite key:
    # where runs are logged changes nothing they compute, so a suite resumed with other trackers skips none).
    track: list[str] = field(default_factory=list)
    mlflow_experiment: str | None = None


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
    track, experiment = _tracking(data, path)
    return Suite(Path(path), name, unique, base / results_dir if results_dir else None, len(runs) - len(unique),
                 track=track, mlflow_experiment=experiment)  # fmt: skip


def _tracking(data: Mapping[str, Any], path: Path) -> tuple[list[str], str | None]:
    """The file's ``track`` (a tracker, or a list of them) and ``mlflow_experiment``, checked for type."""
    track = _listed(data.get("track", []))
    if not all(isinstance(value, str) and value for value in track):
        raise UsageError(f"{path}: track must be one or a list of trackers, e.g. track = ['mlflow', 'tensorboard=dir']")
    experiment = data.get("mlflow_experiment")
    if experiment is not None and not (isinstance(experiment, str) and experiment):
        raise UsageError(f"{path}: mlflow_experiment must be a non-empty string")
    return track, experiment


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
    target = table.get("target_acc", 1)  # its range is checked with the rest of each run (hyperparameters.check)
    if isinstance(target, bool) or not isinstance(target, (int, float)):
        raise UsageError(f"{where}: target_acc must be a number, got {target!r}")
    for key, kind in (("recipes", str), ("devices", str), ("seeds", int), ("variants", dict)):
        if key in table:
            values = _listed(table[key])
            if not values or not all(isinstance(v, kind) and not isinstance(v, bool) and v != "" for v in values):
                what = {str: "strings", int: "whole numbers", dict: "tables"}[kind]
                raise UsageError(f"{where}: {key} must be one or a list of {what}, got {table[key]!r}")
    for variant in _listed(table.get("variants", [])):
        _check_variant(variant, f"{where}: variants")
    settings = table.get("set", {})
    if not isinstance(settings, dict):
        raise UsageError(f"{where}: set must be a table of hyperparameters, e.g. set = {{ lr = 0.01 }}")
    for name, value in settings.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise UsageError(f"{where}: set.{name} must be a number, string, boolean or array") from None
    evaluation_names(table.get("evaluate"), f"{where}: evaluate")  # the names are checked against the registry later
    components = table.get("components", {})
    if not isinstance(components, dict):
        raise UsageError(f"{where}: components must be a table, e.g. components = {{ model = 'resnet18' }}")
    _known(components, SWAPPABLE_KINDS, f"{where}: components")
    for kind, name in components.items():
        if not isinstance(name, str) or not name:
            raise UsageError(f"{where}: components.{kind} must be a component name")


def _check_variant(variant: Mapping[str, Any], where: str) -> None:
    """One variants table: every key a field of the variant, of its type; loader and precision known ones."""
    _known(variant, tuple(VARIANT_KEYS), where)
    for f in fields(Variant):
        value = variant.get(f.name, f.default)
        if isinstance(f.default, bool) and not isinstance(value, bool):
            raise UsageError(f"{where}: {f.name} must be true or false")
    for name, choices in (("loader", LOADERS), ("precision", PRECISIONS)):
        if variant.get(name, VARIANT_KEYS[name]) not in choices:
            raise UsageError(f"{where}: {name} must be one of {', '.join(choices)}")


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


def validate(suite: Suite, session: Session) -> None:
    """What can be known before anything runs: recipes, components, hyperparameters (a ``set`` key no
    component reads is refused), data-parallel splits.

    Resolves each run's hyperparameters on the way (kept for records of runs that cannot start).
    """
    built: set[str] = set()  # the components of one recipe, overrides and set keys are built once
    for i, run in enumerate(suite.runs):
        try:
            config = run.config()
            recipe = session.registry.recipe(run.recipe)
            hp = check(config, recipe)
            entries = session.components(recipe, config)
            what = json.dumps([run.recipe, run.options.get("components", {}), run.options.get("set", {}),
                               config.dataset, run.options.get("evaluate")], sort_keys=True, default=str)  # fmt: skip
            if what not in built:  # the evaluations too: an unknown name is refused, their settings read
                check_reads(entries, config, recipe, hp, evaluations.entries(session.registry, recipe, config))
                built.add(what)
            if "nproc" in run.options:
                backend_for(run.device)
        except UsageError as exc:
            raise UsageError(f"{suite.path}: {run.recipe} on {run.device} (seed {run.seed}): {exc}") from None
        suite.runs[i] = replace(run, hyperparameters=hp)


def plan(runs: Sequence[SuiteRun], results_dir: Path) -> Plan:
    """The runs to make, in order: every one recorded (an absent device's too), a refused one as failed."""
    return Plan(tuple(PlannedRun(run.config()) for run in runs), results_dir, skip_absent_device=False,
                keep_going=True)  # fmt: skip


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


def run_name(run: SuiteRun, label: str) -> str:
    """How progress lines name a run: ``baseline cpu tensor fp32 seed 0 batch_size=16``."""
    name = f"{run.recipe} {run.device} {run.variant_label} seed {run.seed}"
    return f"{name} {label}" if label else name


def settings_labels(runs: Sequence[SuiteRun]) -> list[str]:
    """Per run, the options that differ between the suite's runs (``batch_size=32 nproc=2``); shared ones go."""
    flat = [run.settings() for run in runs]
    names = sorted({name for settings in flat for name in settings})
    varying = [n for n in names if len({json.dumps(s.get(n), sort_keys=True) for s in flat}) > 1]
    return [" ".join(f"{n}={s[n]}" for n in varying if n in s) for s in flat]


def duration(seconds: float) -> str:
    """``4 min 05 s``, ``12 s``: how progress lines say how long."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
