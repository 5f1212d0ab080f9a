"""benchmarks/gate_false_alarms.py's in-process plant: a slowed side and an unslowed one are the same work.

The benchmark is only worth its figures if ``compare`` judges its pairs: a plant
that showed in the records (another model, a hyperparameter) would be refused
as different work (exit 2), and no false alarm or detection would be counted.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from tests.conftest import ROOT


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gate():
    return load("gate_false_alarms")


def test_the_planted_and_the_plain_side_are_judged_not_refused(gate, tmp_path, monkeypatch):
    monkeypatch.delenv(gate.PLANT_ENV, raising=False)
    args = gate.parse_args(["--repeats", "3", "--limit-train", "40", "--reference", "none"])
    session = gate.make_session()
    base, current = tmp_path / "base", tmp_path / "current"
    gate.run_sides(session, args, False, base, current)  # identical code on both sides
    gate.run_sides(session, args, True, tmp_path / "base2", tmp_path / "slowed")
    assert gate.PLANT_ENV not in os.environ  # put back as it was

    for a, b in ((base, current), (tmp_path / "base2", tmp_path / "slowed")):
        code, report = gate.gate(a, b, tmp_path / f"{b.name}.json", ratio=False)
        assert code in (0, 1), report  # 2 would be "different work": nothing judged
        (pair,) = report["pairs"]
        assert pair["decision"]["estimate"]["ratio"] is not None
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "slowed").glob("*.json"))]
    assert len(records) == 3
    assert all(r["components"]["model"]["name"] == "net_slow" for r in records)
    assert all("slowdown" not in r["hyperparameters"] for r in records)


def test_the_environment_sizes_the_plant(gate, monkeypatch):
    slow_plugin = load("slow_plugin")
    assert slow_plugin.PLANT_ENV == gate.PLANT_ENV
    monkeypatch.setenv(gate.PLANT_ENV, "0.3")
    assert slow_plugin.slow_net({}).slowdown == 0.3
    with gate.planted(0.0):
        assert slow_plugin.slow_net({}).slowdown == 0.0
    assert os.environ[gate.PLANT_ENV] == "0.3"
    assert slow_plugin.slow_net({"slowdown": 0.05}).slowdown == 0.05  # a --set wins, and shows in the record
