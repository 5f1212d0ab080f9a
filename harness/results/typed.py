"""Records as JSON and back, driven by the schema's own dataclasses: checking, building, filling in.

``schema.py`` writes the layout down once, as dataclasses with type hints. Everything else about it is
derived here from those hints, for any dataclass it is given:

* :func:`problem` says what makes a JSON value no sane instance (``"timings.train_s: expected a number"``);
* :func:`build` turns a JSON value back into the dataclass, sections and all;
* :func:`fill_defaults` adds the fields an older layout lacked, with their defaults.

What a hint allows: ``str``, ``bool``, ``int`` (not a bool, within 64 bits), ``float`` (any finite number),
``list[X]``, ``dict[str, X]``, ``Any`` (any JSON), another dataclass (a table), and ``X | None``. None is
allowed everywhere (a skipped run measured nothing) and a missing field reads as None. A section that is
not a table at all reads as absent, as in records of older layouts that lack it; a table whose fields have
the wrong kinds makes the whole value a bad one. Fields the schema does not know are left alone: readers do
not look into them.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any

#: Integers beyond 64 bits are no count, size or seed cifar-bench writes.
INT_LIMIT = 2**63


@cache
def hints(cls: type) -> dict[str, Any]:
    """Each field of a dataclass with its type, resolved."""
    return typing.get_type_hints(cls)


def _unwrap(hint: Any) -> Any:
    """``X | None`` -> ``X``; anything else as it is."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        others = [a for a in typing.get_args(hint) if a is not type(None)]
        return others[0] if len(others) == 1 else Any
    return hint


def _kind_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` is not of a plain (non-table) kind ``hint``, or None."""
    hint = _unwrap(hint)
    if value is None or hint is Any:
        return None
    origin = typing.get_origin(hint)
    if hint is str:
        return None if isinstance(value, str) else "expected a str"
    if hint is bool:
        return None if isinstance(value, bool) else "expected a bool"
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and -INT_LIMIT <= value < INT_LIMIT
        return None if ok else "expected a int"
    if hint is float:
        return None if is_number(value) else "expected a number"
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list) or any(_kind_problem(v, item) for v in value):
            return f"expected {_plural(item)}"
        return None
    if origin in (dict, Mapping) or dataclasses.is_dataclass(hint):
        return None if isinstance(value, dict) else "expected a section"
    return None


def _plural(item: Any) -> str:
    item = _unwrap(item)
    return {float: "numbers", str: "strings", int: "whole numbers"}.get(item, "a list")


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what a measurement may be."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer too big for a float
        return False


def problem(cls: type, data: Mapping[str, Any], known: Mapping[str, Mapping[str, Any]] | None = None) -> str | None:
    """What makes ``data`` no sane ``cls`` (``"metrics.epoch_loss: expected numbers"``), or None.

    ``known`` adds kinds for entries of free-form sections (``{"hyperparameters": {"epochs": int}}``).
    """
    for name, hint in hints(cls).items():
        found = _field_problem(data.get(name), hint, (known or {}).get(name, {}))
        if found is not None:
            where, message = found
            return f"{name}{where}: {message}"
    return None


def _field_problem(value: Any, hint: Any, known: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(where below the field, why)`` when ``value`` is not a ``hint``, else None."""
    section = _unwrap(hint)
    if dataclasses.is_dataclass(section):
        if not isinstance(value, dict):
            return None  # a section that is not a table reads as absent
        found = problem(section, value)
        return None if found is None else ("." + found.split(": ", 1)[0], found.split(": ", 1)[1])
    if typing.get_origin(section) is dict:
        if not isinstance(value, dict):
            return None
        item = typing.get_args(section)[1]
        for key, entry in value.items():
            found = _field_problem(entry, known.get(key, item), {})
            if found is not None:
                return (f".{key}{found[0]}", found[1])
        return None
    message = _kind_problem(value, hint)
    return None if message is None else ("", message)


def build(cls: type, data: Mapping[str, Any]) -> Any:
    """``cls`` from its JSON form; sections become their dataclasses, unknown fields are dropped."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _value(hints(cls)[f.name], data[f.name])
    return cls(**values)


def _value(hint: Any, value: Any) -> Any:
    hint = _unwrap(hint)
    if value is None:
        return None
    if dataclasses.is_dataclass(hint):
        return build(hint, value)
    if typing.get_origin(hint) is dict and dataclasses.is_dataclass(_unwrap(typing.get_args(hint)[1])):
        return {key: _value(typing.get_args(hint)[1], item) for key, item in value.items()}
    return value


def fill_defaults(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every field it lacks that has a default, in sections too (a migration only adds)."""
    data = dict(data)
    for f in dataclasses.fields(cls):
        section = _unwrap(hints(cls)[f.name])
        if f.name not in data:
            if f.default is not dataclasses.MISSING:
                data[f.name] = _json(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                data[f.name] = _json(f.default_factory())
        elif dataclasses.is_dataclass(section) and isinstance(data[f.name], dict):
            data[f.name] = fill_defaults(section, data[f.name])
    return data


def _json(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
