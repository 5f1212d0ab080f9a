"""What building the command line imports: it happens before every command, ``--help`` included.

``publish`` and ``report`` read records with pandas, ``plot`` draws with matplotlib, ``run`` trains
with torch: each imports them when it runs, never while the parser is built.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "torchvision", "pandas", "matplotlib", "numpy")


def test_building_the_command_line_imports_nothing_heavy():
    probe = (
        "import json, sys\nfrom cifar_bench.commands.cli import build_parser\nbuild_parser()\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_console_command_keeps_exit_code_output_and_exit_handlers(tmp_path):
    """``console()`` skips the last garbage sweep at exit, nothing else: code, flushed output and atexit stand."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('exit handler ran', flush=True))\n"
        "from cifar_bench.commands.cli import console\n"
        f"sys.argv = ['cifar-bench', 'report', {str(tmp_path / 'nothing-here')!r}]\n"
        "console()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2  # a folder that does not exist: bad input
    assert done.stderr.startswith("cifar-bench: error:") and "nothing-here" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "exit handler ran"


def test_reading_commands_never_import_torch(tmp_path):
    """report, compare and regressions read JSON: torch would add 2-4 s to each (and CI gates run compare often)."""
    from record_factory import record, write

    base = write(tmp_path / "base", record(train_s=10.0), record(train_s=10.1), record(train_s=10.2))
    pr = write(tmp_path / "pr", record(train_s=10.0), record(train_s=10.3), record(train_s=10.1))
    for argv in (["compare", str(base), str(pr)], ["report", str(base)], ["regressions", str(base)]):
        probe = (
            "import json, sys\nfrom cifar_bench.commands.cli import main\n"
            f"code = main({argv!r})\n"
            "print(json.dumps([code, [m for m in ('torch', 'torchvision') if m in sys.modules]]))"
        )
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        code, imported = json.loads(done.stdout.strip().splitlines()[-1])
        assert code == 0 and imported == [], (argv, code, imported)
