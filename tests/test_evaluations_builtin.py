"""The built-in evaluations: ``calibration`` against hand-computed values, ``corruptions`` end to end (its cache,
its digest, its determinism across processes). Corruptions on real CIFAR-10: test_offline_cifar10.py.

The corruptions themselves are tested against their definitions in test_cifar_c.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_bench import UsageError
from cifar_bench.plugins import calibration, cifar_c, corruptions
from cifar_bench.plugins.datasets import make_synthetic
from cifar_bench.training.config import RunConfig
from cifar_bench.training.evaluations import make_input

# -- calibration ---------------------------------------------------------------------------------------------


def test_calibration_against_hand_computed_values():
    # Four images, two classes; confidences 0.9, 0.65, 0.85, 0.7 fall in bins 13, 9, 12 and 10 of 15 (one each).
    p = torch.tensor([[0.9, 0.1], [0.65, 0.35], [0.85, 0.15], [0.3, 0.7]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])  # right, wrong, right, right
    metrics, bins = calibration.calibration(p.log(), labels)
    assert metrics["ece"] == pytest.approx((0.1 + 0.65 + 0.15 + 0.3) / 4)  # |accuracy - confidence|, a bin each
    assert metrics["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.35) + math.log(0.85) + math.log(0.7)) / 4)
    assert metrics["brier"] == pytest.approx((0.02 + 2 * 0.65**2 + 2 * 0.15**2 + 2 * 0.3**2) / 4)
    assert [b["images"] for b in bins] == [0] * 9 + [1, 1, 0, 1, 1, 0]
    assert bins[9]["accuracy"] == 0.0 and bins[9]["confidence"] == pytest.approx(0.65)
    assert (bins[0]["lower"], bins[-1]["upper"], len(bins)) == (0.0, 1.0, 15)


def test_calibration_weights_bins_by_their_images_and_closes_them_on_the_right():
    # Three images at confidence 0.75 (bin 11: (0.7333, 0.8]), two right: |2/3 - 0.75| for all of them;
    # one certain and right (confidence 1.0: the last bin, ECE 0).
    p = torch.tensor([[0.75, 0.25]] * 3 + [[1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 0])
    metrics, bins = calibration.calibration(torch.log(p.clamp(min=1e-300)), labels)
    assert metrics["ece"] == pytest.approx(3 / 4 * abs(2 / 3 - 0.75))
    assert bins[11]["images"] == 3 and bins[14]["images"] == 1


def test_calibration_matches_a_plain_loop_on_random_logits():
    generator = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(500, 10, generator=generator) * 3, torch.randint(0, 10, (500,), generator=generator)
    metrics, _ = calibration.calibration(logits, labels)
    p = torch.softmax(logits.double(), 1).numpy()
    confidence, right = p.max(1), p.argmax(1) == labels.numpy()
    ece = 0.0
    for b in range(15):
        lower, upper = b / 15, (b + 1) / 15
        members = (confidence > lower) & (confidence <= upper)
        if members.any():
            ece += abs(right[members].mean() - confidence[members].mean()) * members.mean()
    assert metrics["ece"] == pytest.approx(ece)
    assert metrics["nll"] == pytest.approx(torch.nn.functional.cross_entropy(logits.double(), labels).item())


# -- corruptions ----------------------------------------------------------------------------------------------


def given(cache_dir: Path | None, n: int = 12, side: int = 32, indices=None):
    """An EvaluationInput over ``n`` synthetic test images and a fixed little model."""
    dataset = make_synthetic(20, max(n, 1))
    images = torch.from_numpy(dataset.test.data[:n]).permute(0, 3, 1, 2).contiguous()
    if side != 32:
        images = images[:, :, :side, :side].contiguous()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * side * side, 10)).eval()
    indices = torch.arange(n) if indices is None else torch.as_tensor(indices)
    return make_input(model=model, device=torch.device("cpu"), images=images,
                      labels=torch.as_tensor(dataset.test.targets[:n]), indices=indices, normalize=lambda x: x - 0.5,
                      dataset=dataset, config=RunConfig("baseline", cache_dir=cache_dir), hp={"eval_batch_size": 5},
                      test_accuracy=None)  # fmt: skip


@pytest.fixture
def two_corruptions(monkeypatch):
    """Only two of the corruptions (one random, one not), so that a test generates in a fraction of a second."""
    kept = {name: cifar_c.CORRUPTIONS[name] for name in ("gaussian_noise", "contrast")}
    monkeypatch.setattr(cifar_c, "CORRUPTIONS", kept)
    return list(kept)


def test_the_corrupted_set_is_cached_reused_and_made_again_when_damaged(tmp_path, two_corruptions):
    first = corruptions.evaluate(given(tmp_path), "all")
    assert first.details["generated"] == two_corruptions
    again = corruptions.evaluate(given(tmp_path), "all")
    assert again.details["generated"] == []  # read back: nothing made
    assert (again.metrics, again.tables, again.details["digest"]) == (
        first.metrics,
        first.tables,
        first.details["digest"],
    )
    files = sorted((tmp_path / "evaluations").glob("cifar-c-*.npz"))
    assert [f.name.split("-")[2] for f in files] == ["contrast", "gaussian_noise"]
    damaged = files[1].read_bytes()
    files[1].write_bytes(damaged[: len(damaged) // 2] + bytes(64) + damaged[len(damaged) // 2 + 64 :])
    with pytest.warns(UserWarning, match="evaluation cache|digest"):
        remade = corruptions.evaluate(given(tmp_path), "all")
    assert remade.details["generated"] == ["gaussian_noise"]  # only the damaged one
    assert remade.details["digest"] == first.details["digest"]
    files[0].write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="ignoring evaluation cache"):
        assert corruptions.evaluate(given(tmp_path), "all").details["generated"] == ["contrast"]
    assert corruptions.evaluate(given(tmp_path), "all").details["generated"] == []  # whole again
    assert corruptions.evaluate(given(None), "all").details["generated"] == two_corruptions  # --no-cache


def test_a_cached_set_whose_bytes_do_not_match_its_digest_is_made_again(tmp_path, two_corruptions):
    corruptions.evaluate(given(tmp_path), "all")
    cache = given(tmp_path).cache
    key_file = sorted((tmp_path / "evaluations").glob("cifar-c-contrast-*.npz"))[0]
    with np.load(key_file) as stored:
        arrays = {k: stored[k].copy() for k in stored.files}
    arrays["severity_3"][0, 0, 0, 0] ^= 1  # one bit: the zip's CRC is right, the digest is not
    key = json.loads(bytes(arrays.pop("__key__")).decode())
    cache.save(key["name"], key["key"], arrays)
    with pytest.warns(UserWarning, match="do not match their digest"):
        assert corruptions.evaluate(given(tmp_path), "all").details["generated"] == ["contrast"]


def test_the_digest_is_the_generators_bytes_for_the_images_test_split_ids(tmp_path, two_corruptions):
    indices = np.arange(100, 112)  # the images' places in the whole test split: their random streams' ids
    data = given(tmp_path, indices=indices)
    result = corruptions.evaluate(data, 6)
    labels = data.labels.numpy()
    chosen = cifar_c.subset_indices(labels, 6)
    clean = data.images[torch.from_numpy(chosen)].permute(0, 2, 3, 1).numpy()
    digest = hashlib.sha256(f"cifar-c set v{cifar_c.GENERATOR_VERSION}\n".encode())
    for name in two_corruptions:
        made = {(name, s): cifar_c.corrupt(clean, name, s, 0, ids=indices[chosen]) for s in cifar_c.SEVERITIES}
        digest.update(f"{name} {cifar_c.digest(made)}\n".encode())
    assert result.details["digest"] == digest.hexdigest() and result.details["images"] == 6


def test_corruptions_need_cifar_sized_images(tmp_path, two_corruptions):
    with pytest.raises(UsageError, match="32x32 RGB"):
        corruptions.evaluate(given(tmp_path, side=16), "all")


@pytest.mark.parametrize("value", [0, -3, "lots", True, 2.5])
def test_corruption_images_must_be_a_count_or_all(value):
    with pytest.raises(UsageError, match="corruption_images"):
        corruptions.factory({"corruption_images": value})
    assert corruptions.factory({}).settings["images"] == 1000
    assert corruptions.factory({"corruption_images": "all"}).settings["images"] == "all"


def test_a_run_records_both_evaluations(run_cli, smoke, tmp_path):
    done = run_cli("run", "baseline", *smoke, "--batch-size", "20", "--evaluate", "corruptions,calibration",
                   "--set", "corruption_images=10", "--results-dir", tmp_path)  # fmt: skip
    assert done.code == 0, done
    assert "evaluation corruptions (" in done.out and "mean (14 benchmark)" in done.out and "ece" in done.out
    (path,) = tmp_path.glob("*.json")
    made = json.loads(path.read_text())
    found = made["evaluations"]["corruptions"]
    assert found["settings"]["images"] == 10 and found["settings"]["left_out"] == ["frost"]
    table = found["tables"]["accuracy"]
    assert list(table)[:18] == list(cifar_c.CORRUPTIONS) and len(table) == 20
    assert all(list(row) == ["1", "2", "3", "4", "5", "mean"] for row in table.values())
    assert found["details"]["left_out"] == {"frost": cifar_c.LEFT_OUT["frost"]}
    assert found["details"]["comparable_with_published"] is False and len(found["details"]["benchmark"]) == 14
    assert found["metrics"]["mean_accuracy"] == pytest.approx(table["mean (14 benchmark)"]["mean"])
    assert set(made["evaluations"]["calibration"]["metrics"]) == {"ece", "nll", "brier"}
    report = run_cli("report", tmp_path).out
    assert "corruptions mean_accuracy" in report and "calibration ece" in report


#: Three corruptions (random per image, random per image and geometric, deterministic): test_cifar_c.py checks
#: every corruption's bytes across processes; this checks the evaluation's pipeline around them.
THREE = ("shot_noise", "elastic_transform", "pixelate")

SCRIPT = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, {tests!r})
    from test_evaluations_builtin import THREE, given
    from cifar_bench.plugins import cifar_c, corruptions
    cifar_c.CORRUPTIONS = {{name: cifar_c.CORRUPTIONS[name] for name in THREE}}
    out = corruptions.evaluate(given(None, n=10), "all")
    print(json.dumps({{"digest": out.details["digest"], "metrics": out.metrics, "tables": out.tables}}))
""")


def test_the_same_data_and_seed_give_the_same_set_and_numbers_in_other_processes(monkeypatch):
    monkeypatch.setattr(cifar_c, "CORRUPTIONS", {name: cifar_c.CORRUPTIONS[name] for name in THREE})
    script = SCRIPT.format(tests=str(Path(__file__).parent))
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [json.loads(run.communicate(timeout=600)[0]) for run in runs]
    assert all(run.returncode == 0 for run in runs)
    here = corruptions.evaluate(given(None, n=10), "all")
    assert outputs[0] == outputs[1] == json.loads(json.dumps(
        {"digest": here.details["digest"], "metrics": here.metrics, "tables": here.tables}))  # fmt: skip
