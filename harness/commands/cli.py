"""The ``cifar-bench`` command: start-up, the command line built from every plugin's commands, exit codes.

Exit codes: 0 done, 1 a run failed, 2 bad input (unknown name, bad flag,
missing data, broken plugin, a results folder that cannot take records), 130
interrupted by Ctrl-C, 143 by SIGTERM. Errors are one line on stderr; ``--traceback``
shows the full Python traceback instead.

The command line is built from the commands plugins register (``register_commands``): the built-in
ones (``builtin.py``) and any plugin's, loaded before parsing (installed ones, and those named with ``-p``
before the command). Only light modules are imported to build it: the component plugins, torch and
pandas load when a command needs them, so ``--version`` and ``compare`` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from .. import signals
from ..errors import RunFailed, UsageError, first_line, one_line, warn
from ..hooks import manager
from ..hooks.commands import collect_commands
from ..version import __version__
from .arguments import plugin_flag


class Parser(argparse.ArgumentParser):
    """argparse, with its errors raised as one-line UsageErrors."""

    def error(self, message: str):
        # One line, whatever the user typed: argparse quotes arguments as given, newlines included.
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser(argv: Sequence[str] = ()) -> Parser:
    """The command line: every registered command, with the ``-p`` plugins named in ``argv`` loaded first."""
    plugins = manager.build(early_plugins(argv), builtins=manager.COMMAND_PLUGINS)
    commands, problems = collect_commands(plugins)
    for problem in problems:
        warn(f"{problem}; its commands are left out")
    parser = Parser(prog="cifar-bench", description="Time and compare CIFAR-10 training recipes.")
    parser.add_argument("--version", action="version", version=f"cifar-bench {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    plugin_flag(parser, "plugins_global")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers.required = True
    for name, registered in commands.items():
        command = registered.command
        listed = {} if command.hidden else {"help": command.help}
        sub = subparsers.add_parser(name, description=command.description or command.help, **listed)
        command.add_arguments(sub)
        plugin_flag(sub, "plugins_sub")
        sub.set_defaults(func=command.run)
    return parser


def early_plugins(argv: Sequence[str]) -> list[str]:
    """The ``-p`` values of a command line (up to a ``--``): they may add commands, so they load before parsing."""
    found, args = [], list(argv)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "-p" and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith("-p") and len(arg) > 2 and not arg.startswith("--"):
            found.append(arg[2:])  # -pX, as argparse reads it
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cifar-bench`` command in this process; returns its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    traceback = "--traceback" in argv
    try:
        # SIGTERM is recorded as Ctrl-C is, then exits 143 (a rank under torchrun puts the default back).
        with signals.sigterm_as_interrupt():
            args = build_parser(argv).parse_args(argv)
            args.argv = argv  # for a command that starts itself again
            return signals.exit_code(args.func(args))
    except (UsageError, RunFailed) as exc:
        if traceback:
            raise
        print(f"cifar-bench: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"cifar-bench: {'terminated' if signals.terminated() else 'interrupted'}", file=sys.stderr)
        return signals.exit_code(signals.INTERRUPTED)
    except Exception as exc:
        if traceback:
            raise
        print(f"cifar-bench: error: {type(exc).__name__}: {first_line(exc)} (run again with --traceback for details)",
              file=sys.stderr)  # fmt: skip
        return 1


def console() -> None:
    """The ``cifar-bench`` command and ``python -m cifar_bench``: :func:`main`, then exit without a last sweep.

    With torch imported, the interpreter's final garbage collections at exit
    took 0.6-0.9 s on the 2-core machine: a tenth of the baseline's seconds
    outside training. By now every record is written and flushed, and exit
    handlers still run as usual; only the sweep for objects that die with the
    process anyway is skipped. (Not in :func:`main`, which tests call in-process.)
    """
    code = main()
    gc.freeze()  # every object alive now is left out of the collections made at exit
    sys.exit(code)
