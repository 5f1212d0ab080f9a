"""Subcommands of ``cifar-bench`` as plugins register them (the ``register_commands`` hook).

The built-in commands are registered the same way, by an ordinary plugin (``cifar_bench.commands.builtin``),
so ``cifar-bench --help`` lists a plugin's commands beside them and a plugin's command runs exactly as a
built-in one does: its arguments parsed, its errors turned into one line and an exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import pluggy

from ..errors import PluginError


@dataclass(frozen=True)
class Command:
    """One subcommand: ``cifar-bench NAME [flags]``."""

    name: str
    help: str  # one line, shown by cifar-bench --help
    add_arguments: Callable[[argparse.ArgumentParser], None]  # adds the command's flags
    run: Callable[[argparse.Namespace], int]  # does the work; returns the exit code
    description: str = ""  # shown by cifar-bench NAME --help (the help line when empty)
    hidden: bool = False  # started by cifar-bench itself (an ab side), not listed


@dataclass(frozen=True)
class Registered:
    command: Command
    plugin: str  # the plugin that registered it


def collect_commands(pm: pluggy.PluginManager) -> tuple[dict[str, Registered], list[str]]:
    """Every plugin's commands by name, in registration order (built-ins first), and one line per problem.

    A plugin whose ``register_commands`` raises, registers something other than a Command, or takes a name
    already taken, has that registration left out and named in the problems: the other commands (``plugins``
    among them, which says what is broken) still work.
    """
    found: dict[str, Registered] = {}
    problems: list[str] = []
    for impl in pm.hook.register_commands.get_hookimpls():
        plugin = impl.plugin_name

        def register(command: Command, plugin: str = plugin) -> None:
            if not isinstance(command, Command) or not command.name or not callable(command.run):
                raise PluginError(f"plugin {plugin!r}: register_commands must call register(cifar_bench.Command(...)), "
                                  f"got register({command!r})")  # fmt: skip
            if command.name in found:
                raise PluginError(
                    f"command {command.name!r} is registered by both plugin {found[command.name].plugin!r} and "
                    f"plugin {plugin!r}: rename one, or disable one with -p no:{plugin}"
                )
            found[command.name] = Registered(command, plugin)

        try:
            impl.function(*(register for _ in impl.argnames))  # its one argument, if it takes it
        except PluginError as exc:
            problems.append(str(exc))
        except Exception as exc:
            problems.append(f"plugin {plugin!r}: register_commands failed: {type(exc).__name__}: {exc}")
    return found, problems
