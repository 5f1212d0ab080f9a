"""Time generating the default CIFAR-10-C set from the real test split, and check it is reproducible.

Reads the test split of the offline CIFAR-10 copy (JPEG, ImageFolder layout) straight from its archive,
decodes it with Pillow in ImageFolder order (class folders sorted, then file names), takes the default
class-balanced subset (cifar_c.subset_indices), and generates every reproduced corruption at every severity
in this one process, timing each corruption and the total (the first generation: nothing is cached). A
second generation must give the same digest. Each image's random stream is keyed by its index in the test
split, so the subset's images are corrupted as they would be in the full 10,000.

    python benchmarks/corruption_generation.py                 # 1,000 images, seed 0
    python benchmarks/corruption_generation.py --change        # also the mean change from clean per severity
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tarfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cifar_bench.machine import cpu_model
from cifar_bench.plugins import cifar_c

ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def read_test_split(archive: Path) -> tuple[np.ndarray, np.ndarray]:
    """The archive's ``*/test/<class>/<file>`` images as uint8 (N, 32, 32, 3) and their labels, in
    ImageFolder order: class folders sorted (label = position), then file names sorted."""
    found: dict[tuple[str, str], bytes] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) >= 3 and parts[-3] == "test":
                found[(parts[-2], parts[-1])] = tar.extractfile(member).read()
    classes = sorted({c for c, _ in found})
    keys = sorted(found, key=lambda k: (classes.index(k[0]), k[1]))
    images = np.stack([np.asarray(Image.open(io.BytesIO(found[k])).convert("RGB")) for k in keys])
    return images, np.array([classes.index(c) for c, _ in keys])


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def generate_timed(images: np.ndarray, ids: np.ndarray, seed: int, names: list[str]):
    """Every (name, severity); returns the set, {name: [wall seconds per severity]} and {name: CPU seconds}."""
    generated, wall, cpu = {}, {}, {}
    for name in names:
        wall[name], cpu_start = [], time.process_time()
        for severity in cifar_c.SEVERITIES:
            start = time.perf_counter()
            generated[(name, severity)] = cifar_c.corrupt(images, name, severity, seed, ids=ids)
            wall[name].append(time.perf_counter() - start)
        cpu[name] = time.process_time() - cpu_start
    return generated, wall, cpu


def print_table(wall: dict[str, list[float]], cpu: dict[str, float], n: int) -> None:
    head = " ".join(f"{'s' + str(s):>6}" for s in cifar_c.SEVERITIES)
    print(f"{'corruption':<18} {head} {'wall s':>7} {'CPU s':>6}")
    for name, row in wall.items():
        print(f"{name:<18} " + " ".join(f"{t:6.2f}" for t in row) + f" {sum(row):7.2f} {cpu[name]:6.2f}")
    total, total_cpu = sum(sum(row) for row in wall.values()), sum(cpu.values())
    count = n * len(wall) * len(cifar_c.SEVERITIES)
    print(f"{'all':<18} {'':>34} {total:7.2f} {total_cpu:6.2f}   ({count:,} images; wall per severity above)")


def print_change(images: np.ndarray, generated: dict) -> None:
    """Mean absolute change from the clean image, in 8-bit levels, per corruption and severity."""
    print("\nmean |corrupted - clean| in 8-bit levels (no model: a sanity check of the severities)")
    print(f"{'corruption':<18} " + " ".join(f"{'s' + str(s):>6}" for s in cifar_c.SEVERITIES))
    clean = images.astype(np.int16)
    for name in dict.fromkeys(k[0] for k in generated):
        row = [np.abs(generated[(name, s)].astype(np.int16) - clean).mean() for s in cifar_c.SEVERITIES]
        print(f"{name:<18} " + " ".join(f"{v:6.2f}" for v in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE, help=f"the CIFAR-10 JPEG archive [{ARCHIVE}]")
    parser.add_argument("--images", type=int, default=cifar_c.DEFAULT_SUBSET, help="subset size [1000]")
    parser.add_argument("--seed", type=int, default=0, help="generation seed [0]")
    parser.add_argument("--names", help="comma-separated corruptions [all reproduced]")
    change_help = "also print the mean absolute change from clean per severity (trains nothing)"
    parser.add_argument("--change", "--check-model", action="store_true", help=change_help)
    args = parser.parse_args()
    names = args.names.split(",") if args.names else list(cifar_c.CORRUPTIONS)
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}")
    print(f"libraries: {cifar_c.library_versions()}, generator version {cifar_c.GENERATOR_VERSION}")
    print(f"load average at start: {load()} (other processes share the CPUs: wall-clock figures are provisional)")
    start = time.perf_counter()
    images, labels = read_test_split(args.archive)
    ids = cifar_c.subset_indices(labels, args.images)
    subset = images[ids]
    print(f"read and decoded {len(images):,} test images in {time.perf_counter() - start:.1f} s; "
          f"subset of {len(ids):,}, per class {np.bincount(labels[ids]).tolist()}")  # fmt: skip
    generated, wall, cpu = generate_timed(subset, ids, args.seed, names)
    print(f"\nfirst generation in this process, seed {args.seed} (load average after: {load()})")
    print_table(wall, cpu, len(subset))
    first = cifar_c.digest(generated)
    start = time.perf_counter()
    again = cifar_c.digest(cifar_c.generate(subset, names=names, seed=args.seed, ids=ids))
    print(f"\nsecond generation: {time.perf_counter() - start:.1f} s, same digest: {again == first}")
    print(f"digest (sha256): {first}")
    print(f"left out: {', '.join(f'{k} ({v})' for k, v in cifar_c.LEFT_OUT.items())}")
    if args.change:
        print_change(subset, generated)
    if again != first:
        raise SystemExit("the two generations differ: generation is not deterministic")


if __name__ == "__main__":
    main()
