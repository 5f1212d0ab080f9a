"""The built-in component plugins: augmentation, losses, optimizers, schedules, ResNet-18, airbench."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from cifar_bench import UsageError
from cifar_bench.commands.cli import main
from cifar_bench.hooks import manager
from cifar_bench.plugins import airbench, augment, losses, optimizers, resnet, schedules


@pytest.fixture(autouse=True)
def no_installed_plugins(monkeypatch, tmp_path_factory):
    monkeypatch.setenv(manager.AUTOLOAD_ENV, "1")
    monkeypatch.setenv("CIFAR_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


# -- augmentation --------------------------------------------------------------------------


def same_image_batch(n: int = 64) -> torch.Tensor:
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1))
    return image.expand(n, 3, 32, 32).clone()


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_crop_draws_an_offset_per_image_and_every_crop_is_a_window_of_the_padded_image():
    padding = 2
    x = same_image_batch()
    out = augment.random_crop(x, padding, generator(0))
    padded = F.pad(x[:1], (padding,) * 4, mode="reflect")[0]
    windows = {
        (dy, dx): padded[:, dy : dy + 32, dx : dx + 32]
        for dy in range(2 * padding + 1)
        for dx in range(2 * padding + 1)
    }
    found = []
    for image in out:
        (offset,) = [o for o, w in windows.items() if torch.equal(w, image)]
        found.append(offset)
    # 64 identical images, 25 possible offsets: one offset per batch would give 1 distinct crop.
    assert len(set(found)) > 15
    assert {dy for dy, _ in found} == set(range(5)) and {dx for _, dx in found} == set(range(5))


def test_flip_decides_per_image():
    x = same_image_batch()
    out = augment.random_flip(x, generator(0))
    flipped = [torch.equal(o, x[0].flip(2)) for o in out]
    kept = [torch.equal(o, x[0]) for o in out]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # each image is one or the other
    assert 16 < sum(flipped) < 48  # about half, for this seed


def test_augment_is_reproducible_from_the_seed_and_changes_with_it():
    transform = augment.crop_flip({"crop_padding": 4})
    x = same_image_batch()
    first, again = transform.augment(x, generator(7)), transform.augment(x, generator(7))
    assert torch.equal(first, again)
    assert not torch.equal(first, transform.augment(x, generator(8)))
    # a second batch from the same generator gets fresh draws
    g = generator(7)
    assert not torch.equal(transform.augment(x, g), transform.augment(x, g))


def test_augment_keeps_shape_dtype_and_can_be_turned_off():
    x = same_image_batch(8)
    transform = augment.crop_flip({"crop_padding": 3})
    out = transform.augment(x, generator(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    off = augment.crop_flip({"crop_padding": 0, "flip": False})
    assert torch.equal(off.augment(x, generator(0)), x)
    assert augment.normalize_only({}).augment is None


def test_augment_keeps_a_channels_last_batch_channels_last():
    x = same_image_batch(8).contiguous(memory_format=torch.channels_last)
    out = augment.crop_flip({"crop_padding": 2}).augment(x, generator(0))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, augment.crop_flip({"crop_padding": 2}).augment(x.contiguous(), generator(0)))


@pytest.mark.parametrize(("key", "value"), [("crop_padding", -1), ("crop_padding", 32), ("flip", "yes")])
def test_bad_augment_settings(key, value):
    with pytest.raises(UsageError, match=key):
        augment.crop_flip({key: value})


def test_normalize_uses_cifar10_statistics():
    gray = torch.tensor(augment.CIFAR10_MEAN).view(1, 3, 1, 1).expand(2, 3, 32, 32)
    assert torch.allclose(augment.crop_flip({}).normalize(gray), torch.zeros(2, 3, 32, 32), atol=1e-6)


# -- losses and optimizers -------------------------------------------------------------------


def test_label_smoothing_loss():
    assert losses.label_smoothing_cross_entropy({"label_smoothing": 0.2}).label_smoothing == 0.2
    assert losses.label_smoothing_cross_entropy({}).label_smoothing == losses.DEFAULT_LABEL_SMOOTHING
    with pytest.raises(UsageError, match="label_smoothing"):
        losses.label_smoothing_cross_entropy({"label_smoothing": 1.0})


def test_adam_and_adamw_read_their_hyperparameters():
    params = [torch.nn.Parameter(torch.zeros(2))]
    adam = optimizers.adam(params, {"lr": 0.01, "betas": [0.8, 0.99]})
    assert type(adam) is torch.optim.Adam
    assert adam.defaults["betas"] == (0.8, 0.99) and adam.defaults["weight_decay"] == 0.0
    adamw = optimizers.adamw(params, {"lr": 0.01})
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["weight_decay"] == 0.01


# -- schedules -------------------------------------------------------------------------------


def lrs(factory, hp: dict, steps_per_epoch: int, steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = factory(opt, hp, steps_per_epoch)
    seen = []
    for _ in range(steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return seen


def test_linear_schedule_is_airbench_triangle_over_the_whole_run():
    hp = {"epochs": 2, "schedule_per": "step"}
    seen = lrs(schedules.linear, hp, steps_per_epoch=50, steps=100)
    assert seen[0] == pytest.approx(0.2)
    assert max(seen) == pytest.approx(1.0) and seen.index(max(seen)) == 23  # 23% of 100 steps
    assert seen[-1] == pytest.approx(0.07 + 0.93 * (1 / 77), rel=1e-6)  # one step before the end
    assert seen[:24] == sorted(seen[:24]) and seen[23:] == sorted(seen[23:], reverse=True)


def test_cosine_schedule_per_epoch_spans_the_epochs():
    hp = {"epochs": 4, "schedule_per": "epoch", "final_lr_fraction": 0.1}
    seen = lrs(schedules.cosine, hp, steps_per_epoch=1000, steps=4)
    expected = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    assert seen == pytest.approx(expected)


def test_cosine_warmup():
    hp = {"epochs": 1, "schedule_per": "step", "warmup_fraction": 0.5}
    assert lrs(schedules.cosine, hp, steps_per_epoch=4, steps=4) == pytest.approx([0.0, 0.5, 1.0, 0.5])


def test_multistep_counts_milestones_in_epochs_whatever_the_unit():
    per_step = lrs(schedules.multistep, {"epochs": 4, "schedule_per": "step"}, steps_per_epoch=3, steps=12)
    assert per_step == pytest.approx([1.0] * 6 + [0.1] * 3 + [0.01] * 3)
    per_epoch = lrs(schedules.multistep, {"epochs": 4, "lr_milestones": [1]}, steps_per_epoch=3, steps=4)
    assert per_epoch == pytest.approx([1.0, 0.1, 0.1, 0.1])


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ({"schedule_per": "batch"}, "schedule_per must be one of step, epoch"),
        ({"warmup_fraction": 1.0}, "warmup_fraction must be a number from 0 to below 1"),
        ({"final_lr_fraction": -0.1}, "final_lr_fraction"),
    ],
)
def test_bad_schedule_settings(hp, message):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(UsageError, match=message):
        schedules.cosine(opt, {"epochs": 2, **hp}, 10)


# -- models ----------------------------------------------------------------------------------


def test_resnet18_is_the_cifar_variant():
    model = resnet.resnet18({"num_classes": 10})
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # the usual CIFAR ResNet-18 count
    model.eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def small_airbench(**hp) -> airbench.AirbenchNet:
    torch.manual_seed(0)
    return airbench.airbench_net({**airbench.HYPERPARAMETERS, "widths": [8, 16, 16], **hp})


def test_airbench_whitening_decorrelates_the_first_batch_patches():
    model = small_airbench()
    x = torch.randn(64, 3, 32, 32) @ torch.randn(32, 32) * 0.3 + 0.5  # correlated pixels
    model.train()
    model(x)
    assert bool(model.whitened)
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    w = model.whiten.weight[:12].reshape(12, 12)
    covariance = w @ (patches.T @ patches / len(patches)) @ w.T
    eigenvalues = torch.linalg.eigvalsh(patches.T @ patches / len(patches))
    # whitened up to eps: diag(lambda / (lambda + eps)) in descending order of lambda
    expected = (eigenvalues / (eigenvalues + airbench.HYPERPARAMETERS["whiten_eps"])).flip(0)
    assert torch.allclose(covariance, torch.diag(expected), atol=1e-3)
    before = model.whiten.weight.clone()
    model(torch.randn(8, 3, 32, 32))  # fitted once only
    assert torch.equal(model.whiten.weight, before)


def test_airbench_test_time_flip_averages_an_image_and_its_mirror():
    x = torch.randn(4, 3, 32, 32)
    model = small_airbench(tta_flip=True)
    model.train()
    model(x)  # fit whitening, update BN statistics
    model.eval()
    assert torch.allclose(model(x), model(x.flip(3)), atol=1e-5)
    model.tta_flip = False
    assert not torch.allclose(model(x), model(x.flip(3)), atol=1e-5)


def test_airbench_sgd_gives_biases_a_scaled_lr_and_the_same_decay_per_step():
    model = small_airbench()
    opt = airbench.airbench_sgd(model.parameters(), {"lr": 2.0, "weight_decay": 0.01, "bias_lr_scale": 64})
    weights, biases = opt.param_groups
    assert opt.defaults["nesterov"] is True
    assert biases["lr"] == 128.0 and weights["lr"] == 2.0
    assert biases["lr"] * biases["weight_decay"] == pytest.approx(weights["lr"] * weights["weight_decay"])
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in opt.param_groups for p in g["params"]} == trainable  # frozen ones left out
    assert all(p.ndim == 1 for p in biases["params"])


def test_airbench_narrow_recipe_runs(tmp_path, smoke):
    # --no-cpu-tune: tuning would time dozens of the recipe's steps first
    assert main(["run", "airbench_narrow", *smoke, "--no-cpu-tune", "--results-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok"
    assert {k: v["plugin"] for k, v in record["components"].items()} == {
        "dataset": "datasets",
        "transform": "augment",
        "model": "airbench",
        "loss": "losses",
        "optimizer": "airbench",
        "scheduler": "schedules",
        "recipe": "airbench",
    }
    assert record["hyperparameters"]["widths"] == airbench.NARROW_WIDTHS
