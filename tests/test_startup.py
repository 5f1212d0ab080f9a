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
        "import json, sys\nfrom cifar_bench.cli import build_parser\nbuild_parser()\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
