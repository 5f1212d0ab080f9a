"""``cifar-bench list`` (every component, by kind, with its plugin) and ``cifar-bench plugins`` (which plugins
are loaded, from where, with which hooks).

Broken plugins are listed too, with their one-line error, and do not change
the exit code: ``plugins`` is the command to run to find out what is wrong.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from tabulate import tabulate

from ..hooks import manager


def add_plugins_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list, for machines")


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    """``list`` takes no flags of its own (``-p`` is every command's)."""


def plugin_rows(plugins: manager.PluginManager) -> list[dict]:
    """One dict per plugin, in load order, broken ones included (``error`` set)."""
    rows = []
    for info in plugins.info.values():
        row = asdict(info)
        row["hooks"] = list(info.hooks)
        rows.append(row)
    return rows


def cmd_plugins(args: argparse.Namespace) -> int:
    plugins = manager.build([*args.plugins_global, *args.plugins_sub])
    rows = plugin_rows(plugins)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [
        {
            "name": r["name"],
            "version": r["version"] or "-",
            "source": r["source"],
            "status": "broken" if r["error"] else "ok",
            "hooks": ", ".join(r["hooks"]) or "-",
            "location": r["location"],
        }
        for r in rows
    ]
    print(tabulate(table, headers="keys", tablefmt="simple"))
    for r in rows:
        if r["error"]:
            print(f"broken plugin {r['name']!r}: {r['error']}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Every registered component, by kind, with the plugin that provided it."""
    from ..hooks.registry import collect

    plugins = manager.build([*args.plugins_global, *args.plugins_sub])
    registry = collect(plugins)
    rows = [{"kind": e.kind, "name": e.name, "plugin": e.plugin, "description": e.description} for e in registry]
    print(tabulate(rows, headers="keys", tablefmt="simple"))
    for name, error in plugins.broken.items():
        print(f"broken plugin {name!r}: {error}")
    return 0
