"""benchmarks/changepoint_accuracy.py on instruction counts: the counts are read as regressions reads them.

The benchmark's figures for counted histories are only worth quoting if it searches them with the settings
``regressions`` uses for counts (on values, changes under the counts' resolution not reported), and reads
every counted process of the identical installs as one invocation.
"""

from __future__ import annotations

import json
import sys

from cifar_bench.results.changepoints import MEASURES
from tests.conftest import ROOT


def test_counts_are_read_one_process_a_block_and_searched_as_regressions_searches_them(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("changepoint_accuracy", None)
    import changepoint_accuracy as bench

    counts = {f"{kind}-{n:02d}": {"per_step": 7_663_841 + 2_000 * (n % 3) + (500_000 if kind == "p" else 0)}
              for kind in "abp" for n in range(6)}  # fmt: skip
    path = tmp_path / "counts.json"
    path.write_text(json.dumps({"counts": counts, "machine": "AMD EPYC", "valgrind": "3.19.0", "steps": 5}))
    blocks, about = bench.count_blocks(path)
    assert len(blocks) == 12 and all(len(b) == 1 for b in blocks)  # a and b only: p is planted
    assert max(b[0] for b in blocks) < 7_663_841 + 5_000 and about["valgrind"] == "3.19.0"

    args = bench.parse_args(["--noise-counts", str(path)])
    how = MEASURES["instructions_per_step"]
    assert (args.min_change, args.ranks) == (how.resolution, how.ranks) == (how.resolution, False)
    timed = bench.parse_args(["--noise-json", str(path)])
    assert (timed.min_change, timed.ranks) == (0.0, True)

    output = tmp_path / "out.json"
    code = bench.main(["--noise-counts", str(path), "--series", "10", "--flat-series", "20", "--after-steps",
                       "0.05", "--after-runs", "3", "--output", str(output)])  # fmt: skip
    saved = json.loads(output.read_text())
    flat = next(row for row in saved["table"] if row["case"] == "flat")
    step = next(row for row in saved["table"] if row["case"] == "step 5%")
    assert flat["with a change point"] == "0" and float(step["F1"]) == 1.0 and code == 0
