"""Phase timing waits for the device; devices resolve or are skipped with a reason."""

import pytest
import torch

from cifar_bench.errors import UsageError
from cifar_bench.training import devices
from cifar_bench.training.timing import PhaseTimer


def test_every_phase_edge_synchronizes_and_phases_add_up():
    events = []
    timer = PhaseTimer(lambda: events.append("sync"))
    with timer.phase("train"):
        events.append("work")
    with timer.phase("train"):
        events.append("work")
    with timer.phase("eval"):
        pass
    assert events == ["sync", "work", "sync", "sync", "work", "sync", "sync", "sync"]
    assert set(timer.seconds) == {"train", "eval"} and timer.seconds["train"] > 0


def test_a_failing_phase_still_synchronizes_and_counts():
    events = []
    timer = PhaseTimer(lambda: events.append("sync"))
    with pytest.raises(RuntimeError), timer.phase("train"):
        raise RuntimeError("boom")
    assert events == ["sync", "sync"] and "train" in timer.seconds


def test_synchronize_calls_the_devices_own_sync(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("cuda", str(device))))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps", None)))
    devices.synchronize(torch.device("cuda:1"))
    devices.synchronize(torch.device("mps"))
    devices.synchronize(torch.device("cpu"))
    assert calls == [("cuda", "cuda:1"), ("mps", None)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("cpu", ["cpu"]), ("cpu,cuda", ["cpu", "cuda"]), ("cuda:1", ["cuda:1"]), ("cpu, cpu", ["cpu"])],
)
def test_device_lists_parse(spec, expected):
    assert devices.parse_devices(spec) == expected


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "cpu,gpu", ""])
def test_bad_device_names_are_refused(spec):
    with pytest.raises(UsageError, match="unknown device"):
        devices.parse_devices(spec)


def test_missing_devices_have_reasons(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert devices.unavailable_reason("cpu") is None
    assert "CUDA is not available" in devices.unavailable_reason("cuda")
    assert "MPS is not available" in devices.unavailable_reason("mps")
    assert devices.parse_devices("all") == ["cpu"]


def test_cuda_index_beyond_the_count_is_explained(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert devices.unavailable_reason("cuda:0") is None
    assert "does not exist" in devices.unavailable_reason("cuda:1")


def test_absent_device_is_a_skipped_record_and_the_rest_still_run(run_cli, tmp_path, smoke, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run_cli("run", "baseline", *smoke, "--device", "cuda,cpu", "--results-dir", tmp_path)
    assert result.code == 0, result
    import json

    records = {r["device"]: r for r in (json.loads(p.read_text()) for p in tmp_path.glob("*.json"))}
    assert records["cuda"]["status"] == "skipped" and "CUDA is not available" in records["cuda"]["error"]
    assert records["cpu"]["status"] == "ok"
    assert "skipped: CUDA is not available" in result.out


def test_peak_memory_reads_cuda_allocations_on_cuda_and_rss_everywhere(monkeypatch):
    from cifar_bench.training import state

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 123_456)
    on_cuda = state._memory(torch.device("cuda:0"))
    on_cpu = state._memory(torch.device("cpu"))
    assert on_cuda.device_peak_bytes == 123_456 and on_cpu.device_peak_bytes is None
    assert on_cpu.host_peak_rss_bytes > 10_000_000  # a Python process with torch loaded: tens of MB at least
