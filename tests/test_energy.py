"""Energy and utilization: NVML and RAPL through stand-ins (a fake pynvml, a fake /sys/class/powercap)."""

from __future__ import annotations

import sys
import time
import types
from dataclasses import asdict
from pathlib import Path

import pytest

from cifar_bench.hooks import manager
from cifar_bench.hooks.registry import collect
from cifar_bench.results.reader import load_runs
from cifar_bench.results.report import summarize
from cifar_bench.results.schema import EnergyInfo
from cifar_bench.training import energy
from cifar_bench.training.config import RunConfig
from cifar_bench.training.session import Session
from cifar_bench.training.timing import PhaseTimer
from tests.record_factory import record, write


class FakeNVML(types.SimpleNamespace):
    """The few pynvml calls the meter makes; energy in millijoules, utilization in percent."""

    class NVMLError(Exception):
        pass

    def __init__(self, supported: bool = True) -> None:
        super().__init__(energy_mj=1_000_000, utilization=40, supported=supported, inits=0)

    def nvmlInit(self):
        self.inits += 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("gpu", index)

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA H200"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.supported:
            raise self.NVMLError("Not Supported")
        return self.energy_mj

    def nvmlDeviceGetUtilizationRates(self, handle):
        return types.SimpleNamespace(gpu=self.utilization, memory=10)


def test_nvml_gives_joules_per_phase_mean_utilization_and_images_per_joule():
    nvml = FakeNVML()
    meter = energy.nvml_meter(0, nvml)
    meter._poll_s = 0.01
    timer = PhaseTimer(lambda: None)
    timer.observers.append(meter)
    with timer.phase("warmup"):
        nvml.energy_mj += 5_000
    with timer.phase("train"):
        nvml.utilization = 90
        time.sleep(0.05)
        nvml.energy_mj += 200_000  # 200 J
    with timer.phase("eval"):
        nvml.utilization = 30
        nvml.energy_mj += 10_000
    result = asdict(meter.record(images_trained=50_000))
    assert result["source"] == "nvml" and result["reason"] is None and "NVIDIA H200" in result["scope"]
    assert result["phase_j"] == {"warmup": 5.0, "train": 200.0, "eval": 10.0}
    assert result["run_j"] == 215.0
    assert result["train_img_per_j"] == 250.0
    assert result["mean_utilization_pct"]["train"] == 90 and result["mean_utilization_pct"]["eval"] == 30


def test_nvml_without_an_energy_counter_is_a_reason_not_a_guess():
    with pytest.raises(energy.Unavailable, match="NVML cannot read GPU 0's energy counter: Not Supported"):
        energy.nvml_meter(0, FakeNVML(supported=False))


def test_without_nvidia_ml_py_the_reason_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    reason = energy.meter_for("cuda", 0)
    assert isinstance(reason, str) and "cifar-bench[energy]" in reason


def fake_powercap(root: Path, packages: dict[int, int], max_range: int = 1_000_000) -> Path:
    for n, uj in packages.items():
        zone = root / f"intel-rapl:{n}"
        zone.mkdir(parents=True)
        (zone / "name").write_text(f"package-{n}\n")
        (zone / "energy_uj").write_text(f"{uj}\n")
        (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
        sub = root / f"intel-rapl:{n}:0"  # a core sub-zone: inside the package, never added again
        sub.mkdir()
        (sub / "name").write_text("core\n")
        (sub / "energy_uj").write_text("999999\n")
    psys = root / "intel-rapl:9"  # the platform zone: it contains the packages
    psys.mkdir()
    (psys / "name").write_text("psys\n")
    (psys / "energy_uj").write_text("5\n")
    return root


def set_uj(root: Path, n: int, uj: int) -> None:
    (root / f"intel-rapl:{n}" / "energy_uj").write_text(f"{uj}\n")


def test_rapl_sums_the_packages_and_follows_the_counter_across_its_wrap(tmp_path):
    root = fake_powercap(tmp_path, {0: 900_000, 1: 100_000})
    meter = energy.rapl_meter(root)
    meter.start("train")
    set_uj(root, 0, 950_000)  # +0.05 J
    meter._poll()  # the sampler's read, between the wraps
    set_uj(root, 0, 50_000)  # wrapped at 1,000,000: +0.1 J
    set_uj(root, 1, 400_000)  # +0.3 J
    meter.stop("train")
    result = asdict(meter.record(images_trained=45))
    assert result["source"] == "rapl" and "intel-rapl:0, intel-rapl:1" in result["scope"]
    assert result["phase_j"]["train"] == pytest.approx(0.45)
    assert result["train_img_per_j"] == pytest.approx(100)
    assert result["mean_utilization_pct"] is None


def test_rapl_absent_or_unreadable_gives_the_reason(tmp_path, monkeypatch):
    with pytest.raises(energy.Unavailable, match="no RAPL package counters"):
        energy.rapl_meter(tmp_path)
    root = fake_powercap(tmp_path / "sys", {0: 1})
    real = Path.read_text

    def root_only(self, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", root_only)
    with pytest.raises(energy.Unavailable, match="readable by root only"):
        energy.rapl_meter(root)


def test_a_cpu_run_records_energy_per_phase_from_rapl(tmp_path, monkeypatch):
    monkeypatch.setattr(energy, "RAPL_ROOT", fake_powercap(tmp_path, {0: 0}))
    plugins = manager.build()
    config = RunConfig("baseline", dataset="synthetic", limit_train=40, limit_test=20, cache_dir=None,
                       hyperparameters={"epochs": 1})  # fmt: skip
    result = Session(plugins, collect(plugins)).run(config).record
    assert result.status == "ok", result.error
    assert result.energy.source == "rapl"
    assert set(result.energy.phase_j) == {"setup", "warmup", "train", "eval"}


def test_a_cpu_run_without_rapl_records_null_and_why(tmp_path, monkeypatch):
    monkeypatch.setattr(energy, "RAPL_ROOT", tmp_path)
    plugins = manager.build()
    config = RunConfig("baseline", dataset="synthetic", limit_train=40, limit_test=20, cache_dir=None,
                       hyperparameters={"epochs": 1})  # fmt: skip
    result = Session(plugins, collect(plugins)).run(config).record
    reason = f"no RAPL package counters in {tmp_path} (not exposed on this machine, or a VM hides them)"
    assert result.energy == EnergyInfo(source=None, reason=reason)


def test_report_shows_joules_per_run_and_images_per_joule_when_measured(tmp_path):
    measured = [record(energy={"source": "nvml", "run_j": j, "train_img_per_j": 100_000 / j}) for j in (400, 500)]
    table = summarize(load_runs([write(tmp_path / "gpu", *measured)]).runs)
    assert table.loc[0, "energy J"] == 450 and table.loc[0, "train img/J"] == pytest.approx(225)
    unmeasured = record(energy={"source": None, "reason": "no counter"})
    table = summarize(load_runs([write(tmp_path / "cpu", unmeasured, record())]).runs)
    assert "energy J" not in table.columns and "train img/J" not in table.columns
