"""The baseline plugin is the tutorial, exactly."""

import numpy as np
import torch
from torch import nn

from cifar_bench.hooks import manager
from cifar_bench.hooks.registry import collect
from cifar_bench.plugins.baseline import Net


def registry():
    return collect(manager.build())


def test_net_layers_and_parameter_count():
    net = Net()
    assert sum(p.numel() for p in net.parameters()) == 62_006
    assert (net.conv1.in_channels, net.conv1.out_channels, net.conv1.kernel_size) == (3, 6, (5, 5))
    assert (net.conv2.in_channels, net.conv2.out_channels, net.conv2.kernel_size) == (6, 16, (5, 5))
    assert (net.pool.kernel_size, net.pool.stride) == (2, 2)
    assert [(fc.in_features, fc.out_features) for fc in (net.fc1, net.fc2, net.fc3)] == [
        (400, 120),
        (120, 84),
        (84, 10),
    ]


def test_net_maps_a_batch_of_images_to_ten_logits():
    assert Net()(torch.zeros(4, 3, 32, 32)).shape == (4, 10)


def test_recipe_is_the_tutorials():
    reg = registry()
    recipe = reg.recipe("baseline")
    assert (recipe.dataset, recipe.transform, recipe.model, recipe.loss, recipe.optimizer) == (
        "cifar10",
        "tutorial",
        "net",
        "cross_entropy",
        "sgd",
    )
    hp = recipe.hyperparameters
    assert (hp["batch_size"], hp["epochs"], hp["lr"], hp["momentum"], hp["log_every"]) == (
        4,
        2,
        0.001,
        0.9,
        2000,
    )
    assert recipe.scheduler is None


def test_components_build_the_tutorials_objects():
    reg = registry()
    hp = dict(reg.recipe("baseline").hyperparameters)
    model = reg.get("model", "net").factory(hp)
    assert isinstance(reg.get("loss", "cross_entropy").factory(hp), nn.CrossEntropyLoss)
    opt = reg.get("optimizer", "sgd").factory(model.parameters(), hp)
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.001,
        0.9,
        0,
        False,
    )


def test_transform_matches_totensor_then_normalize():
    from PIL import Image
    from torchvision import transforms

    reg = registry()
    transform = reg.get("transform", "tutorial").factory({})
    assert transform.augment is None  # the tutorial has no augmentation
    image = Image.fromarray(torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8).numpy())
    tutorial = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    # The harness's fast path: uint8 (N, C, H, W) / 255, then normalize, as one batch.
    batch = torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0).float() / 255
    assert torch.allclose(transform.normalize(batch)[0], tutorial(image), atol=1e-6)


def test_every_baseline_component_is_attributed_to_the_baseline_plugin():
    reg = registry()
    mine = {(e.kind, e.name) for e in reg if e.plugin == "baseline"}
    assert mine == {
        ("transform", "tutorial"),
        ("model", "net"),
        ("loss", "cross_entropy"),
        ("optimizer", "sgd"),
        ("recipe", "baseline"),
    }
