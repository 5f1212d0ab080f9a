"""The identity of a run's work: what it computed, apart from where and when.

Two runs did like work when they used the same components (each by name
and by the plugin that provided it), the same resolved hyperparameters, the
same data (dataset fingerprint, synthetic or not, subset sizes), the same
variant (loader, precision, memory format, compile, deterministic) and the
same number of processes, made the same evaluations after training
(``run --evaluate``: each by name, plugin and settings; a run without any
keeps the key it had before evaluations existed), and were measured alike:
instruction counts (``run --measure instructions``) carry how they were
counted, and are compared only with counts made the same way, never with
times. Only like work is ever compared or summarised
together: the device is not part of it (comparing devices is the point of
running on several), and neither are the seed, the run's time or its
machine.

The description is computed from a run record, so the harness (when it
writes a record) and every reader (report, compare, plot, publish, also for
older records that predate the field) derive it the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .variant import Variant

#: Hyperparameters that change only what is shown, never what is computed.
PRESENTATION_KEYS = frozenset({"log_every"})


#: The dataset fields that identify the data a run saw.
DATA_FIELDS = ("name", "fingerprint", "synthetic", "train_size", "test_size")


def describe(record: Mapping[str, Any]) -> dict[str, Any]:
    """The work a record describes (a record as a dict, as written or read back), as plain JSON values."""
    components = _mapping(record.get("components"))
    hyperparameters = _mapping(record.get("hyperparameters"))
    dataset = _mapping(record.get("dataset"))
    world_size = _mapping(record.get("distributed")).get("world_size")
    description = {
        "components": {
            kind: _component(ref) for kind, ref in sorted(components.items(), key=_by_key) if kind != "recipe"
        },
        "hyperparameters": {
            k: v for k, v in sorted(hyperparameters.items(), key=_by_key) if k not in PRESENTATION_KEYS
        },
        "data": {name: dataset.get(name) for name in DATA_FIELDS},
        "variant": Variant.from_mapping(record).to_dict(),
        "world_size": world_size if isinstance(world_size, int) and not isinstance(world_size, bool) else 1,
    }
    evaluations = _evaluations(record)
    if evaluations:  # only then: the work of a run without evaluations keeps the key it always had
        description["evaluations"] = evaluations
    measure = measurement(record)
    if measure is not None:  # only then: the keys of timed runs stay what they were
        description["measure"] = measure
    return description


#: What must agree for two instruction counts to be compared (see schema.InstructionsInfo).
MEASURE_FIELDS = ("tool", "valgrind", "arch", "steps", "eval_images")


def measurement(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """How a record's instructions were counted (None for a timed run): counts compare only with like counts."""
    counted = _mapping(record.get("instructions"))
    if not counted:
        return None
    return {"kind": "instructions", **{name: counted.get(name) for name in MEASURE_FIELDS}}


def _evaluations(record: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluations after training (run --evaluate), by name, each with its plugin and settings.

    They are part of the work because they decide what the record measures (corruption accuracy over 1,000
    images or 10,000, say): results are compared and summarised only with runs evaluated alike. Sorted by
    name: the order they ran in measures nothing.
    """
    found = {}
    for name, result in sorted(_mapping(record.get("evaluations")).items(), key=_by_key):
        result = _mapping(result)
        found[str(name)] = {"plugin": result.get("plugin"), "settings": _mapping(result.get("settings"))}
    return found


def key(description: Mapping[str, Any]) -> str:
    """A short, stable name for a description: equal work, equal key."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def identify(record: Mapping[str, Any]) -> dict[str, Any]:
    """``{"key": ..., **description}``: what a record stores under ``workload``."""
    description = describe(record)
    return {"key": key(description), **description}


def fields(description: Mapping[str, Any]) -> dict[str, str]:
    """The description as ``label: value`` text, one entry per thing that can differ.

    Labels are what a user would call them: a component kind (``model``), a
    hyperparameter's own name (``lr``), ``data`` and ``data size``, a variant
    field (``precision``), ``processes``.
    """
    out: dict[str, str] = {}
    for kind, ref in _mapping(description.get("components")).items():
        out[kind] = str(ref)
    for name, value in _mapping(description.get("hyperparameters")).items():
        out[name] = json.dumps(value, sort_keys=True, default=str)
    data = _mapping(description.get("data"))
    synthetic = " (synthetic)" if data.get("synthetic") else ""
    fingerprint = str(data.get("fingerprint") or "?")[:12]
    out["data"] = f"{data.get('name')} {fingerprint}{synthetic}"
    out["data size"] = f"{data.get('train_size')} train / {data.get('test_size')} test"
    for name, value in _mapping(description.get("variant")).items():
        out[name] = str(value)
    out["processes"] = str(description.get("world_size", 1))
    for name, evaluation in _mapping(description.get("evaluations")).items():
        evaluation = _mapping(evaluation)
        settings = json.dumps(evaluation.get("settings"), sort_keys=True, default=str)
        out[f"evaluation {name}"] = f"{evaluation.get('plugin')} {settings}"
    measure = _mapping(description.get("measure"))
    if measure:  # a timed run has none: "absent" where it meets a count
        out["measure"] = (f"{measure.get('kind')} ({measure.get('tool')} {measure.get('valgrind')}, "
                          f"{measure.get('arch')}, {measure.get('steps')} steps, "
                          f"{measure.get('eval_images')} eval images)")  # fmt: skip
    return out


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two descriptions, as ``label: A vs B`` (``absent`` where one lacks it)."""
    fa, fb = fields(a), fields(b)
    return [
        f"{label}: {fa.get(label, 'absent')} vs {fb.get(label, 'absent')}"
        for label in sorted(fa.keys() | fb.keys(), key=_label_order)
        if fa.get(label) != fb.get(label)
    ]


def varying(descriptions: list[Mapping[str, Any]]) -> list[str]:
    """The labels whose values are not the same across ``descriptions``, in display order."""
    all_fields = [fields(d) for d in descriptions]
    labels = {label for f in all_fields for label in f}
    return sorted((lb for lb in labels if len({f.get(lb) for f in all_fields}) > 1), key=_label_order)


def label(description: Mapping[str, Any], labels: list[str]) -> str:
    """``model=resnet18 (resnet), epochs=1``: this description's values for ``labels``."""
    f = fields(description)
    return ", ".join(f"{lb}={f.get(lb, 'absent')}" for lb in labels)


# Components first, then data, then hyperparameters and the rest, alphabetically within each.
_KIND_ORDER = ("dataset", "transform", "model", "loss", "optimizer", "scheduler", "data", "data size")


def _label_order(label: str) -> tuple[int, str]:
    return (_KIND_ORDER.index(label), "") if label in _KIND_ORDER else (len(_KIND_ORDER), label)


def _component(ref: Any) -> str:
    ref = _mapping(ref)
    return f"{ref.get('name')} ({ref.get('plugin')})"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _by_key(item: tuple[Any, Any]) -> str:
    return str(item[0])
