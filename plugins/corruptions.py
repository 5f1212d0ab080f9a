"""The ``corruptions`` evaluation: accuracy of the trained model on CIFAR-10-C's corruptions of its own test split.

The corrupted images are made by ``cifar_c`` (CIFAR-10-C's generator, rewritten for current NumPy, SciPy and
Pillow with its CIFAR constants: 18 of its 19 corruptions at 5 severities; frost is left out, named in every
record) from the run's test images with a fixed seed, so every run, whatever its own seed, is measured on
the same bytes, and the set's sha256 is in the record. By default a fixed class-balanced subset of 1,000
test images is corrupted (the first images of each class, ``cifar_c.subset_indices``); ``--set
corruption_images=all`` takes every test image of the run (10,000 for CIFAR-10), ``--set
corruption_images=N`` another size. Each image keeps its index in the test split as its random stream's id,
so an image is corrupted alike in the subset and in the full split.

The corrupted set is made once and kept in cifar-bench's cache folder (``EvaluationInput.cache``), one file
per corruption, keyed by everything its bytes depend on: the dataset and its fingerprint, the seed,
``cifar_c.GENERATOR_VERSION``, the versions of NumPy, SciPy and Pillow, and the images' ids. A file is used
only when its key matches and its bytes hash to the digest saved with it; otherwise it is made again.

Metrics: ``mean_accuracy``, over the CIFAR-10-C benchmark corruptions available (14 of the 15: frost left
out, so the mean is not comparable with published 15-corruption means, and the record says so) and the 5
severities; ``relative_drop``, ``(clean - mean_accuracy) / clean`` with ``clean`` the accuracy on the same
uncorrupted images. The table ``accuracy`` has every corruption by severity, with means; ``details`` keep
the clean accuracy, the mean over all 18 corruptions, the per-severity means, the digest, what was left out
and why, and the library versions.
"""

from __future__ import annotations

import hashlib
import time
from statistics import fmean
from typing import Any

import numpy as np
import torch

from cifar_bench import Evaluation, EvaluationInput, EvaluationOutput, UsageError, hookimpl

IMAGES_KEY = "corruption_images"  # hyperparameter: test images corrupted, a whole number or "all" [1000]
SEED = 0  # the corruptions' seed: fixed, so that runs of every seed are measured on the same images
SIDE, CHANNELS = 32, 3  # CIFAR-10-C's constants are for 32x32 RGB images


def images_setting(hyperparameters) -> int | str:
    """``corruption_images``: a whole number of at least 1, or "all"; 1,000 when not set."""
    from . import cifar_c

    value = hyperparameters.get(IMAGES_KEY, cifar_c.DEFAULT_SUBSET)
    if value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise UsageError(f"{IMAGES_KEY} must be a whole number of at least 1, or all; got {value!r}")


def factory(hyperparameters) -> Evaluation:
    from . import cifar_c

    images = images_setting(hyperparameters)
    settings = {"images": images, "seed": SEED, "generator_version": cifar_c.GENERATOR_VERSION,
                "corruptions": list(cifar_c.CORRUPTIONS), "left_out": sorted(cifar_c.LEFT_OUT)}  # fmt: skip
    return Evaluation(lambda data: evaluate(data, images), settings)


def evaluate(data: EvaluationInput, images: int | str) -> EvaluationOutput:
    """Accuracy on every corruption and severity of ``images`` of the run's test images; see the module docs."""
    from . import cifar_c

    if tuple(data.images.shape[1:]) != (CHANNELS, SIDE, SIDE):
        raise UsageError(f"CIFAR-10-C's corruptions are for {SIDE}x{SIDE} RGB images; this dataset's test images "
                         f"are {tuple(data.images.shape[1:])} (channels, height, width)")  # fmt: skip
    labels = data.labels.numpy()
    chosen = cifar_c.subset_indices(labels, len(labels) if images == "all" else images)
    ids = data.indices.numpy()[chosen].astype(np.int64)
    clean = np.ascontiguousarray(data.images[torch.from_numpy(chosen)].permute(0, 2, 3, 1).numpy())  # NHWC
    truth = torch.from_numpy(labels[chosen])
    key = {"dataset": data.dataset.name, "fingerprint": data.dataset.fingerprint, "seed": SEED,
           "generator_version": cifar_c.GENERATOR_VERSION, "libraries": cifar_c.library_versions(),
           "images": len(ids), "ids": hashlib.sha256(ids.tobytes()).hexdigest()}  # fmt: skip
    clean_accuracy = _accuracy(data, clean, truth)
    accuracy: dict[str, dict[str, float]] = {}
    digests: dict[str, str] = {}
    made: list[str] = []
    start = time.perf_counter()
    generated_s = 0.0
    for name in cifar_c.CORRUPTIONS:
        severities, digests[name], seconds = corrupted(data.cache, clean, ids, name, key)
        generated_s += seconds
        if seconds:
            made.append(name)
        accuracy[name] = {str(s): _accuracy(data, severities[s], truth) for s in cifar_c.SEVERITIES}
    details = {"clean_accuracy": clean_accuracy, "images": len(ids), "generated": made,
               "generated_s": generated_s, "evaluated_s": time.perf_counter() - start - generated_s}  # fmt: skip
    return summarise(accuracy, clean_accuracy, digests, details)


def corrupted(cache, clean: np.ndarray, ids: np.ndarray, name: str,
              key: dict[str, Any]) -> tuple[dict[int, np.ndarray], str, float]:  # fmt: skip
    """One corruption's five severities of ``clean``: from the cache when it holds them whole, else made and kept.

    Returns ``(severity -> uint8 (N, 32, 32, 3), digest, seconds spent making them)``.
    """
    from . import cifar_c

    entry, entry_key = f"cifar-c-{name}", {**key, "corruption": name}
    stored = cache.load(entry, entry_key)
    if stored is not None:
        found = _checked(stored, name, len(clean))
        if found is not None:
            return found[0], found[1], 0.0
    start = time.perf_counter()
    severities = {s: cifar_c.corrupt(clean, name, s, SEED, ids=ids) for s in cifar_c.SEVERITIES}
    digest = cifar_c.digest({(name, s): array for s, array in severities.items()})
    arrays = {f"severity_{s}": array for s, array in severities.items()}
    cache.save(entry, entry_key, {**arrays, "digest": np.frombuffer(digest.encode(), dtype=np.uint8)})
    return severities, digest, time.perf_counter() - start


def _checked(stored: dict[str, np.ndarray], name: str, n: int) -> tuple[dict[int, np.ndarray], str] | None:
    """The severities of a cache entry, when each is the right shape and together they hash to its digest."""
    import warnings

    from . import cifar_c

    try:
        severities = {s: stored[f"severity_{s}"] for s in cifar_c.SEVERITIES}
        digest = bytes(stored["digest"]).decode()
    except (KeyError, UnicodeDecodeError):
        severities, digest = {}, ""
    shaped = all(a.dtype == np.uint8 and a.shape == (n, SIDE, SIDE, CHANNELS) for a in severities.values())
    if severities and shaped and cifar_c.digest({(name, s): a for s, a in severities.items()}) == digest:
        return severities, digest
    warnings.warn(f"the cached {name} images do not match their digest; making them again", stacklevel=2)
    return None


def _accuracy(data: EvaluationInput, images: np.ndarray, truth: torch.Tensor) -> float:
    """The fraction of ``images`` (uint8 NHWC) the model classifies as ``truth``."""
    predicted = data.logits(torch.from_numpy(images).permute(0, 3, 1, 2)).argmax(dim=1)
    return (predicted == truth).double().mean().item()


def summarise(accuracy: dict[str, dict[str, float]], clean: float, digests: dict[str, str],
              details: dict[str, Any]) -> EvaluationOutput:  # fmt: skip
    """Metrics, the corruption x severity table with its means, and the details, from the accuracies measured."""
    from . import cifar_c

    benchmark = [n for n in accuracy if n not in cifar_c.EXTRA]
    severities = [str(s) for s in cifar_c.SEVERITIES]

    def means(names: list[str]) -> dict[str, float]:
        row = {s: fmean(accuracy[n][s] for n in names) for s in severities}
        return {**row, "mean": fmean(row.values())}

    table = {n: {**row, "mean": fmean(row.values())} for n, row in accuracy.items()}
    table[f"mean ({len(benchmark)} benchmark)"] = means(benchmark)
    table[f"mean (all {len(accuracy)})"] = means(list(accuracy))
    mean = table[f"mean ({len(benchmark)} benchmark)"]["mean"]
    digest = hashlib.sha256(f"cifar-c set v{cifar_c.GENERATOR_VERSION}\n".encode())
    for name in accuracy:  # CORRUPTIONS order
        digest.update(f"{name} {digests[name]}\n".encode())
    details = {**details, "mean_accuracy_all": table[f"mean (all {len(accuracy)})"]["mean"],
               "per_severity": {s: table[f"mean ({len(benchmark)} benchmark)"][s] for s in severities},
               "digest": digest.hexdigest(), "benchmark": benchmark, "extra": list(cifar_c.EXTRA),
               "left_out": dict(cifar_c.LEFT_OUT), "libraries": cifar_c.library_versions(),
               "comparable_with_published": False,
               "note": f"mean_accuracy averages {len(benchmark)} of the 15 CIFAR-10-C benchmark corruptions "
                       f"({', '.join(sorted(cifar_c.LEFT_OUT))} left out) over 5 severities: not comparable with "
                       "published 15-corruption means; relative_drop = (clean - mean_accuracy) / clean, "
                       "clean measured on the same images uncorrupted"}  # fmt: skip
    metrics = {"mean_accuracy": mean, "relative_drop": (clean - mean) / clean if clean else None}
    return EvaluationOutput(metrics=metrics, tables={"accuracy": table}, details=details)


@hookimpl
def register_evaluations(register):
    register("corruptions", factory, "CIFAR-10-C's corruptions of the test split (18 of 19, 5 severities): "
             "accuracy per corruption and severity; --set corruption_images=all for every test image")  # fmt: skip
