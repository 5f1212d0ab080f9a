"""Data: reading image folders, decoding a split once into tensors, caching it, subsets.

The fast path decodes every image once into one ``uint8`` tensor per split
and keeps it in a cache folder keyed by the dataset's fingerprint, so a
second run starts in a fraction of a second. The cache is never trusted
blindly: a file whose fingerprint or shape does not match is rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import ImageFolder

from ..errors import DataError, warn
from ..files import remove_stale_temp_files, temp_file
from ..hooks.components import Dataset

_CACHE_FORMAT = 1  # bump when the cache file layout changes


@dataclass(frozen=True)
class TensorSplit:
    """One split decoded: ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64 ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> TensorSplit:
        return TensorSplit(self.images[indices], self.labels[indices])


# -- reading an ImageFolder copy ----------------------------------------------


def read_image_folder(path: str | os.PathLike, name: str = "cifar10") -> Dataset:
    """Read ``path/train/<class>/*`` and ``path/test/<class>/*`` as a :class:`Dataset`.

    The fingerprint covers every file's relative path, size and modification
    time: cheap enough to compute on every run, and it changes whenever a
    file is replaced, added or removed.
    """
    root = Path(path).expanduser()
    fix = "point --data-dir at a folder holding train/<class>/*.jpg and test/<class>/*.jpg"
    if root.exists() and not root.is_dir():
        raise DataError(f"data directory {root} is a file, not a folder: {fix}")
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist: {fix}")
    splits = {}
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(f"data directory {root} has no '{split}' folder: {fix}")
        refuse_repeated_folders(root / split)
        try:
            splits[split] = ImageFolder(str(root / split))
        except (FileNotFoundError, RuntimeError) as exc:
            raise DataError(f"{root / split}: {exc}: {fix}") from None
    if splits["train"].classes != splits["test"].classes:
        only_train = set(splits["train"].classes) - set(splits["test"].classes)
        only_test = set(splits["test"].classes) - set(splits["train"].classes)
        raise DataError(
            f"{root}: train and test have different class folders "
            f"(only in train: {sorted(only_train) or '-'}, only in test: {sorted(only_test) or '-'}): "
            "every class needs a folder in both splits"
        )
    digest = hashlib.sha256()
    prefix = os.path.join(str(root), "")  # ImageFolder joins every path onto str(root / split)
    for ds in splits.values():
        for file, label in ds.samples:
            st = os.stat(file)
            # The path below root: a slice, not os.path.relpath, which costs 0.3 s over CIFAR-10's 60,000 files.
            rel = file[len(prefix) :] if file.startswith(prefix) else os.path.relpath(file, root)
            digest.update(f"{rel}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return Dataset(
        name=name,
        classes=list(splits["train"].classes),
        train=splits["train"],
        test=splits["test"],
        fingerprint=digest.hexdigest()[:16],
        source=f"image folder {root}",
    )


def refuse_repeated_folders(top: Path) -> None:
    """Refuse a symlinked folder that leads to a folder already read (a loop, or a second way in).

    Symlinked folders are followed (a dataset assembled from links is a
    common layout), but each real folder is read once: a link back to a
    folder above it would otherwise repeat every image in it dozens of times
    (until paths grow too long) and silently skew the class balance.
    """
    seen: dict[str, str] = {}
    for folder, subfolders, _ in os.walk(top, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            raise DataError(
                f"{folder} is a symlink to {seen[real]}, which is read already: "
                "remove the link, or replace it with a copy of what it should hold"
            )
        seen[real] = folder
        subfolders.sort()  # the same folder is the first one seen on every machine


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """A content fingerprint for in-memory data (torchvision's CIFAR-10, synthetic data)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


# -- decoding, with the cache --------------------------------------------------


def decode(split: torch.utils.data.Dataset) -> TensorSplit:
    """Decode a ``(PIL image, label)`` dataset into one uint8 tensor.

    Datasets that already hold a ``data`` array of shape ``(N, H, W, C)``
    (torchvision's CIFAR10, the synthetic set) are taken as they are.
    """
    data = getattr(split, "data", None)
    if isinstance(data, np.ndarray) and data.ndim == 4:
        images = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()
        labels = torch.as_tensor(np.asarray(split.targets), dtype=torch.int64)
        return TensorSplit(images, labels)
    arrays, labels = [], []
    for i in range(len(split)):
        path = split.samples[i][0] if hasattr(split, "samples") else f"item {i}"
        try:
            image, label = split[i]
            arrays.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read image {path}: {exc}: replace or remove the file, then run again") from None
        labels.append(label)
    odd = next((i for i, a in enumerate(arrays) if a.shape != arrays[0].shape), None)
    if odd is not None:
        first, other = (split.samples[i][0] if hasattr(split, "samples") else f"item {i}" for i in (0, odd))
        h, w = arrays[odd].shape[:2]
        raise DataError(
            f"image {other} is {w}x{h}, unlike {first} ({arrays[0].shape[1]}x{arrays[0].shape[0]}): "
            "all images must be one size; resize or remove it"
        )
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return TensorSplit(images, torch.tensor(labels, dtype=torch.int64))


def load_tensors(dataset: Dataset, cache_dir: Path | None) -> tuple[TensorSplit, TensorSplit, bool]:
    """Both splits as tensors, from the cache when it holds this exact data.

    Returns ``(train, test, cache_hit)``. With ``cache_dir=None`` nothing is
    cached. Synthetic data is never cached: it is cheaper to make than to load.
    """
    if cache_dir is None or dataset.synthetic:
        train, test = decode(dataset.train), decode(dataset.test)
        check_one_size(train, test)
        return train, test, False
    path = Path(cache_dir) / f"{dataset.name}-{dataset.fingerprint}.pt"
    remove_stale_temp_files(Path(cache_dir), ".*.pt.*.tmp")  # left by a write killed midway
    cached = _read_cache(path, dataset.fingerprint, _expected(dataset))
    if cached is not None:
        return cached[0], cached[1], True
    train, test = decode(dataset.train), decode(dataset.test)
    check_one_size(train, test)  # before caching: a cache holds only data a run can use
    _write_cache(path, dataset.fingerprint, train, test)
    return train, test, False


def check_one_size(train: TensorSplit, test: TensorSplit) -> None:
    """Refuse splits whose images differ in size: a model built for one cannot take the other (checked
    across the splits together; :func:`decode` checks within one)."""
    if train.images.shape[1:] != test.images.shape[1:]:
        (tc, th, tw), (vc, vh, vw) = train.images.shape[1:], test.images.shape[1:]
        raise DataError(
            f"the test images are {vw}x{vh} ({vc} channels) and the train images {tw}x{th} ({tc} channels): "
            "every image of both splits must be one size; resize the test images"
        )


def _expected(dataset: Dataset) -> dict[str, object]:
    """What a cache of ``dataset`` must hold: each split's length and image shape (when known), the classes.

    The image shape comes from the split's first image, read anew (a file's header, or an array's shape):
    a cache whose tensors have another shape (forged, or from a bug) is rebuilt, never trusted.
    """
    expected: dict[str, object] = {"classes": len(dataset.classes)}
    for split in ("train", "test"):
        data = getattr(dataset, split)
        try:
            expected[split] = len(data)
        except TypeError:  # a dataset without a length: not checked
            expected[split] = None
        expected[f"{split}_shape"] = _first_image_shape(data)
    return expected


def _first_image_shape(split: torch.utils.data.Dataset) -> tuple[int, int, int] | None:
    """``(C, H, W)`` of a split's first image as :func:`decode` would make it, or None if it cannot tell."""
    array = getattr(split, "data", None)
    if isinstance(array, np.ndarray) and array.ndim == 4:  # as decode takes it: (N, H, W, C)
        return (array.shape[3], array.shape[1], array.shape[2])
    try:
        image = split[0][0]
        width, height = image.size
    except Exception:  # an empty split or an unreadable first file: decode says which, with its fix
        return None
    return (3, height, width)  # decode converts every image to RGB


def _read_cache(
    path: Path, fingerprint: str, expected: dict[str, object] | None = None
) -> tuple[TensorSplit, TensorSplit] | None:
    if not path.exists():
        return None
    expected = expected or {}
    try:
        blob = torch.load(path, weights_only=True)  # tensors only: never unpickle code
        if not isinstance(blob, dict):
            raise ValueError("it is not a cifar-bench cache")
        if blob.get("format") != _CACHE_FORMAT or blob.get("fingerprint") != fingerprint:
            raise ValueError("it was made from other data")
        splits = []
        for split in ("train", "test"):
            images, labels = blob[f"{split}_images"], blob[f"{split}_labels"]
            if not (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)):
                raise ValueError("it holds something other than tensors")
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
                raise ValueError(f"its {split} images have the wrong shape or type")
            if labels.dtype != torch.int64 or labels.ndim != 1 or len(images) != len(labels):
                raise ValueError(f"its {split} labels have the wrong shape or type")
            if expected.get(split) is not None and len(labels) != expected[split]:
                raise ValueError(f"it holds {len(labels)} {split} images, the data {expected[split]}")
            shape = expected.get(f"{split}_shape")
            if shape is not None and tuple(images.shape[1:]) != tuple(shape):
                raise ValueError(f"its {split} images are {tuple(images.shape[1:])}, the data's {tuple(shape)}")
            classes = expected.get("classes")
            if len(labels) and (labels.min() < 0 or (classes is not None and labels.max() >= classes)):
                raise ValueError(f"its {split} labels are outside the {classes} classes")
            splits.append(TensorSplit(images, labels))
    except Exception as exc:  # a corrupt or foreign cache is rebuilt, never trusted
        warn(f"ignoring data cache {path}: {_cache_problem(exc)}; rebuilding it")
        return None
    return splits[0], splits[1]


def _cache_problem(exc: Exception) -> str:
    """Why a cache file was refused, in one line (torch's own messages run to several, with bad advice)."""
    if isinstance(exc, pickle.UnpicklingError):  # weights_only refused it: it holds more than tensors
        return "it holds more than tensors, so it is not loaded"
    if isinstance(exc, KeyError):
        return f"it lacks {exc}"
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _write_cache(path: Path, fingerprint: str, train: TensorSplit, test: TensorSplit) -> None:
    blob = {
        "format": _CACHE_FORMAT,
        "fingerprint": fingerprint,
        "train_images": train.images,
        "train_labels": train.labels,
        "test_images": test.images,
        "test_labels": test.labels,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(path)  # the mode an ordinary file gets, for a cache shared by several users
        os.close(fd)
        try:
            torch.save(blob, tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:  # an unwritable cache slows the next run, it does not fail this one
        warn(f"could not write data cache {path}: {_cache_problem(exc)}; the next run decodes the data again")


# -- subsets --------------------------------------------------------------------


def balanced_subset(labels: torch.Tensor, n: int, num_classes: int) -> torch.Tensor:
    """Indices of ``n`` samples spread evenly over the classes, in dataset order.

    The first ``n // num_classes`` samples of each class (one more for the
    first ``n % num_classes`` classes), so that a subset is the same on every
    run and every machine, and no class is left out of a quick run.
    """
    if n > len(labels):
        raise DataError(f"subset of {n} asked for, but the split holds only {len(labels)} images")
    quota = [n // num_classes + (1 if c < n % num_classes else 0) for c in range(num_classes)]
    chosen = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < quota[c]:
            raise DataError(f"subset of {n} needs {quota[c]} images of class {c}, the split has {len(members)}")
        chosen.append(members[: quota[c]])
    return torch.sort(torch.cat(chosen)).values
