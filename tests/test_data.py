"""Reading image folders, decoding, the decoded-tensor cache, and subsets."""

import os

import pytest
import torch

from cifar_bench.errors import DataError
from cifar_bench.training.data import balanced_subset, load_tensors, read_image_folder


def test_image_folder_reads_both_splits_with_sorted_classes(image_folder):
    ds = read_image_folder(image_folder)
    assert ds.classes == ["cat", "dog", "frog"]
    assert (len(ds.train), len(ds.test)) == (24, 12)
    assert not ds.synthetic and len(ds.fingerprint) == 16


def test_fingerprint_changes_when_a_file_changes(image_folder):
    before = read_image_folder(image_folder).fingerprint
    assert read_image_folder(image_folder).fingerprint == before
    victim = image_folder / "train" / "cat" / "0000.png"
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert read_image_folder(image_folder).fingerprint != before


def test_fingerprint_does_not_depend_on_how_the_folder_is_named(image_folder, monkeypatch):
    """The decoded-data cache is keyed by it: the same files must find the same cache however the path is spelt."""
    import hashlib

    expected = hashlib.sha256()  # each file's path below the folder, label, size and mtime, in ImageFolder's order
    for split in ("train", "test"):
        for label, cls in enumerate(sorted(os.listdir(image_folder / split))):
            for name in sorted(os.listdir(image_folder / split / cls)):
                st = os.stat(image_folder / split / cls / name)
                expected.update(f"{split}/{cls}/{name}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    monkeypatch.chdir(image_folder.parent)
    spellings = [
        image_folder,
        f"{image_folder}/",
        image_folder.name,
        f"./{image_folder.name}/",
        f"../{image_folder.parent.name}/{image_folder.name}",
    ]
    assert {read_image_folder(path).fingerprint for path in spellings} == {expected.hexdigest()[:16]}


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda root: os.rename(root / "test", root / "tst"), "no 'test' folder"),
        (lambda root: os.rename(root / "test" / "dog", root / "test" / "wolf"), "different class folders"),
    ],
)
def test_broken_image_folders_are_refused_with_a_fix(image_folder, damage, needle):
    damage(image_folder)
    with pytest.raises(DataError, match=needle):
        read_image_folder(image_folder)


def test_truncated_image_is_named(image_folder, tmp_path):
    bad = image_folder / "train" / "dog" / "0003.png"
    bad.write_bytes(bad.read_bytes()[:20])
    ds = read_image_folder(image_folder)
    with pytest.raises(DataError, match=r"0003\.png"):
        load_tensors(ds, tmp_path / "cache")


def test_decoded_tensors_match_the_images(image_folder):
    import numpy as np
    from PIL import Image

    train, _, hit = load_tensors(read_image_folder(image_folder), None)
    assert not hit
    assert train.images.shape == (24, 3, 32, 32) and train.images.dtype == torch.uint8
    first = np.array(Image.open(image_folder / "train" / "cat" / "0000.png"))
    assert torch.equal(train.images[0], torch.from_numpy(first).permute(2, 0, 1))
    assert train.labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8


def test_cache_miss_then_hit(image_folder, tmp_path):
    ds = read_image_folder(image_folder)
    first = load_tensors(ds, tmp_path)
    second = load_tensors(ds, tmp_path)
    assert (first[2], second[2]) == (False, True)
    assert torch.equal(first[0].images, second[0].images) and torch.equal(first[1].labels, second[1].labels)


def one_warning(capsys) -> str:
    """The one line a damaged cache is warned about, in cifar-bench's own format (not Python's two)."""
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("cifar-bench: warning: ignoring data cache "), line
    return line


def test_stale_cache_is_rebuilt_not_trusted(image_folder, tmp_path, capsys):
    ds = read_image_folder(image_folder)
    load_tensors(ds, tmp_path)
    (cache_file,) = tmp_path.glob("*.pt")
    blob = torch.load(cache_file, weights_only=True)
    blob["fingerprint"] = "someotherdata000"
    blob["train_images"] = torch.zeros_like(blob["train_images"])
    torch.save(blob, cache_file)
    train, _, hit = load_tensors(ds, tmp_path)
    assert "made from other data" in one_warning(capsys)
    assert not hit and train.images.any()


def test_corrupt_cache_is_rebuilt(image_folder, tmp_path, capsys):
    ds = read_image_folder(image_folder)
    load_tensors(ds, tmp_path)
    (cache_file,) = tmp_path.glob("*.pt")
    cache_file.write_bytes(b"not a torch file")
    _, _, hit = load_tensors(ds, tmp_path)
    assert "rebuilding" in one_warning(capsys)
    assert not hit
    assert load_tensors(ds, tmp_path)[2]  # and the rebuilt file is good
    assert capsys.readouterr().err == ""


def test_balanced_subset_takes_the_first_of_each_class_in_order():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    chosen = balanced_subset(labels, 5, 3)
    assert chosen.tolist() == [0, 1, 2, 3, 4]  # classes 0 and 1 get the two extra
    assert torch.bincount(labels[balanced_subset(labels, 6, 3)]).tolist() == [2, 2, 2]


def test_balanced_subset_refuses_more_than_a_class_holds():
    labels = torch.tensor([0, 0, 0, 0, 1])
    with pytest.raises(DataError, match="class 1"):
        balanced_subset(labels, 4, 2)


class Payload:
    """Unpickling this would run code: a cache file must never be able to."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_cache_file_holding_code_is_refused_not_run(image_folder, tmp_path, capsys):
    ds = read_image_folder(image_folder)
    load_tensors(ds, tmp_path)
    (cache_file,) = tmp_path.glob("*.pt")
    torch.save({"format": 1, "payload": Payload()}, cache_file)
    _, _, hit = load_tensors(ds, tmp_path)
    assert "it holds more than tensors" in one_warning(capsys)
    assert not hit
