"""The built-in commands, registered as any plugin's are (``register_commands``).

An ordinary plugin (``manager.DEFAULT_PLUGINS``): each command is its module's arguments and its run
function. This module and the ones it names import nothing heavy, because every ``cifar-bench`` call,
``--version`` included, builds the command line from them.
"""

from __future__ import annotations

from ..hooks.commands import Command
from ..hooks.specs import hookimpl
from . import ab, compare, listing, plot, publish, regressions, report, run, suite


@hookimpl
def register_commands(register) -> None:
    register(Command("run", "train and evaluate a recipe, write its result", run.add_arguments, run.cmd_run))
    register(Command("list", "list registered components and the plugin of each", listing.add_list_arguments,
                     listing.cmd_list))  # fmt: skip
    register(Command("report", "summarise run records: medians and IQRs per recipe/device/variant",
                     report.add_arguments, report.cmd_report))  # fmt: skip
    register(Command("compare",
                     "gate: is CURRENT slower or less accurate than BASELINE? (exit 0 no, 1 yes, 2 bad input)",
                     compare.add_arguments, compare.cmd_compare))  # fmt: skip
    register(Command("plot", "chart run records: loss, accuracy vs time, throughput", plot.add_arguments,
                     plot.cmd_plot))  # fmt: skip
    register(Command("publish", "a static website of results over commits: index + page per workload",
                     publish.add_arguments, publish.cmd_publish))  # fmt: skip
    register(Command("regressions", "change points of every series, newest first (exit 1 if a regression begins in "
                     "the window, 0 if none, 2 bad input)", regressions.add_arguments, regressions.cmd_regressions,
                     description=regressions.DESCRIPTION))  # fmt: skip
    register(Command("plugins", "list loaded plugins: name, version, source and the hooks each implements",
                     listing.add_plugins_arguments, listing.cmd_plugins))  # fmt: skip
    register(Command("suite", "run a TOML suite of runs in order; resumes where it stopped", suite.add_arguments,
                     suite.cmd_suite))  # fmt: skip
    register(Command(
        "ab", "two installs run one workload, taking turns step by step; records carry paired time ratios",
        ab.add_arguments, ab.cmd_ab,
        description="Start 'CMD run RECIPE [flags]' for each side and let them take turns one training step "
        "each. Example: cifar-bench ab --a venv-base/bin/cifar-bench --b venv-pr/bin/cifar-bench "
        "-- run baseline --dataset synthetic --limit-train 1000 --epochs 1 --repeats 5 --threads 1",
    ))  # fmt: skip
    register(Command("ab-side", "one side of 'ab' (started by it, not by people)", ab.add_side_arguments,
                     ab.cmd_side, hidden=True))  # fmt: skip
