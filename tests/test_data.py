"""Tests for nat_gym.data: the digits / fake / CIFAR loaders and Split.batches (no downloads anywhere)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from nat_gym import data as data_mod
from nat_gym.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DATASETS,
    DatasetSplits,
    Split,
    load_dataset,
)
from nat_gym.errors import ConfigError, DatasetNotFoundError

N_DIGITS = 1797


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset("digits")


# --------------------------------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------------------------------


def test_digits_shapes_dtypes_counts(digits: DatasetSplits) -> None:
    assert digits.name == "digits"
    assert (digits.num_classes, digits.in_channels, digits.image_size) == (10, 1, 8)
    assert (len(digits.train), len(digits.valid), len(digits.test)) == (1077, 360, 360)
    for split in (digits.train, digits.valid, digits.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape == (len(split), 1, 8, 8)
        assert split.y.shape == (len(split),)
        assert split.x.device.type == "cpu"
        assert torch.isfinite(split.x).all()
        assert int(split.y.min()) >= 0 and int(split.y.max()) <= 9


def test_digits_splits_disjoint_and_cover_everything(digits: DatasetSplits) -> None:
    idx = [s.indices for s in (digits.train, digits.valid, digits.test)]
    assert all(i is not None and i.dtype == torch.int64 for i in idx)
    allidx = torch.cat(idx)  # type: ignore[arg-type]
    assert allidx.numel() == N_DIGITS
    assert torch.equal(allidx.sort().values, torch.arange(N_DIGITS))  # disjoint + union is everything


def test_digits_rows_match_their_source_images(digits: DatasetSplits) -> None:
    bunch = load_digits()
    raw_train = torch.from_numpy(bunch.images[digits.train.indices.numpy()].astype(np.float32)) / 16.0
    mean, std = raw_train.mean(), raw_train.std()
    for split in (digits.train, digits.valid, digits.test):
        idx = split.indices.numpy()
        assert torch.equal(split.y, torch.from_numpy(bunch.target[idx].astype(np.int64)))
        raw = torch.from_numpy(bunch.images[idx].astype(np.float32)).unsqueeze(1) / 16.0
        torch.testing.assert_close(split.x, (raw - mean) / std, atol=1e-4, rtol=1e-4)


def test_digits_stratified(digits: DatasetSplits) -> None:
    overall = np.bincount(load_digits().target, minlength=10) / N_DIGITS
    for split in (digits.train, digits.valid, digits.test):
        counts = np.bincount(split.y.numpy(), minlength=10)
        assert np.all(np.abs(counts - overall * len(split)) <= 1.5), counts


def test_digits_normalised_with_train_statistics(digits: DatasetSplits) -> None:
    assert abs(float(digits.train.x.mean())) < 1e-4
    assert abs(float(digits.train.x.std()) - 1.0) < 1e-4
    for split in (digits.valid, digits.test):  # same transform, so only roughly standard
        assert abs(float(split.x.mean())) < 0.1
        assert abs(float(split.x.std()) - 1.0) < 0.1


def test_digits_deterministic_per_seed_and_cached(digits: DatasetSplits) -> None:
    again = load_dataset("digits", seed=0)
    assert again is digits  # in-process cache returns the same immutable object
    data_mod._load_digits.cache_clear()
    fresh = load_dataset("digits", seed=0)
    assert fresh is not digits
    for a, b in zip(
        (fresh.train, fresh.valid, fresh.test), (digits.train, digits.valid, digits.test), strict=True
    ):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.indices, b.indices)


def test_digits_different_seed_differs(digits: DatasetSplits) -> None:
    other = load_dataset("digits", seed=1)
    assert (len(other.train), len(other.valid), len(other.test)) == (1077, 360, 360)
    assert not torch.equal(other.test.indices.sort().values, digits.test.indices.sort().values)
    assert not torch.equal(other.train.x, digits.train.x)


def test_digits_fractions_configurable() -> None:
    d = load_dataset("digits", valid_fraction=0.3, test_fraction=0.1)
    assert (len(d.train), len(d.valid), len(d.test)) == (N_DIGITS - 540 - 180, 540, 180)


@pytest.mark.parametrize("size", [16, 32])
def test_digits_image_size_upsampled(size: int) -> None:
    d = load_dataset("digits", image_size=size)
    assert d.image_size == size
    assert d.train.x.shape == (1077, 1, size, size)
    assert d.test.x.shape == (360, 1, size, size)
    assert abs(float(d.train.x.mean())) < 1e-4 and abs(float(d.train.x.std()) - 1.0) < 1e-4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"valid_fraction": 0.0}, "valid_fraction"),
        ({"valid_fraction": 1.0}, "valid_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"test_fraction": "0.2"}, "test_fraction"),
        ({"valid_fraction": 0.001}, "valid_fraction"),
        ({"valid_fraction": 0.5, "test_fraction": 0.5}, "valid_fraction + test_fraction"),
        ({"image_size": 12}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_digits_bad_arguments(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace("+", r"\+")):
        load_dataset("digits", **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Split.batches
# --------------------------------------------------------------------------------------------------------------------


def test_batches_in_order_cover_everything(digits: DatasetSplits) -> None:
    batches = list(digits.valid.batches(64))
    assert [len(y) for _, y in batches] == [64] * 5 + [40]
    assert torch.equal(torch.cat([x for x, _ in batches]), digits.valid.x)
    assert torch.equal(torch.cat([y for _, y in batches]), digits.valid.y)


def test_batches_shuffled_cover_every_sample_once_and_reproducible() -> None:
    n = 103
    split = Split(x=torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), y=torch.arange(n))
    seen = torch.cat(
        [y for _, y in split.batches(10, shuffle=True, generator=torch.Generator().manual_seed(3))]
    )
    assert torch.equal(seen.sort().values, torch.arange(n))
    assert not torch.equal(seen, torch.arange(n))
    again = torch.cat(
        [y for _, y in split.batches(10, shuffle=True, generator=torch.Generator().manual_seed(3))]
    )
    assert torch.equal(seen, again)
    other = torch.cat(
        [y for _, y in split.batches(10, shuffle=True, generator=torch.Generator().manual_seed(4))]
    )
    assert not torch.equal(seen, other)
    for x, y in split.batches(10, shuffle=True):  # x and y stay paired
        assert torch.equal(x.view(-1).long(), y)


def test_batches_drop_last() -> None:
    split = Split(x=torch.zeros(25, 1, 2, 2), y=torch.zeros(25, dtype=torch.int64))
    assert [len(y) for _, y in split.batches(10, drop_last=True)] == [10, 10]
    assert [len(y) for _, y in split.batches(10, shuffle=True, drop_last=True)] == [10, 10]
    assert [len(y) for _, y in split.batches(5, drop_last=True)] == [5] * 5
    assert list(split.batches(30, drop_last=True)) == []


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_batches_bad_batch_size(bad: object) -> None:
    split = Split(x=torch.zeros(4, 1, 2, 2), y=torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ConfigError, match="batch_size"):
        split.batches(bad)  # type: ignore[arg-type]  # raised eagerly, before iterating


def test_split_validates_tensors() -> None:
    with pytest.raises(ConfigError, match="float32"):
        Split(x=torch.zeros(4, 2, 2), y=torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ConfigError, match="int64"):
        Split(x=torch.zeros(4, 1, 2, 2), y=torch.zeros(4, dtype=torch.int32))
    with pytest.raises(ConfigError, match="labels"):
        Split(x=torch.zeros(4, 1, 2, 2), y=torch.zeros(3, dtype=torch.int64))


# --------------------------------------------------------------------------------------------------------------------
# fake
# --------------------------------------------------------------------------------------------------------------------


def test_fake_shapes_and_determinism() -> None:
    a = load_dataset("fake", seed=5)
    assert (a.num_classes, a.in_channels, a.image_size) == (10, 1, 8)
    assert (len(a.train), len(a.valid), len(a.test)) == (256, 128, 128)
    assert a.train.x.shape == (256, 1, 8, 8) and a.train.x.dtype == torch.float32
    assert a.train.y.dtype == torch.int64 and set(a.train.y.tolist()) == set(range(10))
    b = load_dataset("fake", seed=5)
    c = load_dataset("fake", seed=6)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)


def test_fake_options() -> None:
    d = load_dataset("fake", num_classes=3, image_size=16, in_channels=3, n_train=30, n_valid=12, n_test=9)
    assert (d.num_classes, d.in_channels, d.image_size) == (3, 3, 16)
    assert d.train.x.shape == (30, 3, 16, 16) and d.valid.x.shape == (12, 3, 16, 16) and len(d.test) == 9
    assert int(d.train.y.max()) == 2
    with pytest.raises(ConfigError, match="n_train"):
        load_dataset("fake", n_train=0)
    with pytest.raises(ConfigError, match="valid_fraction"):
        load_dataset("fake", valid_fraction=0.2)


def test_fake_is_learnable() -> None:
    d = load_dataset("fake", seed=0)
    # nearest class-mean on the train split already classifies the test split well
    means = torch.stack([d.train.x[d.train.y == k].mean(0) for k in range(d.num_classes)]).flatten(1)
    pred = torch.cdist(d.test.x.flatten(1), means).argmin(1)
    assert float((pred == d.test.y).float().mean()) > 0.8


# --------------------------------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------------------------------


def test_unknown_name_lists_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset("mnist")
    msg = str(info.value)
    assert "mnist" in msg
    assert all(name in msg for name in DATASETS)
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------------------------------------------------
# CIFAR (no real data here: missing-folder errors, and a tiny fake folder in torchvision's pickle format)
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder"), [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")]
)
def test_cifar_missing_folder(tmp_path: Path, name: str, folder: str) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path / folder) in msg
    assert "download=True" in msg and f"nat-gym download {name} --data-root {tmp_path}" in msg  # tests/test_hints.py
    assert isinstance(info.value, FileNotFoundError)


def test_cifar_root_defaults_to_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAT_GYM_DATA", str(tmp_path / "somewhere"))
    with pytest.raises(DatasetNotFoundError, match="somewhere"):
        load_dataset("cifar10")


def _write_pickle(path: Path, obj: dict) -> str:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return hashlib.md5(path.read_bytes()).hexdigest()


def _fake_cifar10(root: Path, monkeypatch: pytest.MonkeyPatch, per_batch: int = 20, n_test: int = 30) -> None:
    """Write a tiny cifar-10-batches-py folder and point torchvision's md5 table at its files."""
    from torchvision.datasets import CIFAR10

    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_list = []
    for b in range(1, 6):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        data[:, :1024] = 255  # red channel fully on, green channel: image number, blue channel: 0
        data[:, 1024:2048] = ((b - 1) * per_batch + np.arange(per_batch))[:, None]
        data[:, 2048:] = 0
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        md5 = _write_pickle(folder / f"data_batch_{b}", {"data": data, "labels": labels})
        train_list.append([f"data_batch_{b}", md5])
    test = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    md5_test = _write_pickle(
        folder / "test_batch", {"data": test, "labels": list(range(10)) * (n_test // 10)}
    )
    md5_meta = _write_pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5_test]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5_meta})


def test_fake_cifar10_folder_loads_with_40_60_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cifar10(tmp_path, monkeypatch)
    d = load_dataset("cifar10", root=tmp_path, seed=0)
    assert (d.num_classes, d.in_channels, d.image_size) == (10, 3, 32)
    assert (len(d.train), len(d.valid), len(d.test)) == (40, 60, 30)
    assert d.train.x.shape == (40, 3, 32, 32) and d.train.x.dtype == torch.float32
    assert d.train.y.dtype == torch.int64
    # train and valid partition the 100 training images; test is the separate test set
    both = torch.cat([d.train.indices, d.valid.indices]).sort().values
    assert torch.equal(both, torch.arange(100))
    assert torch.equal(d.test.indices, torch.arange(30))
    # channels are in CHW order and normalised with the standard constants
    for split in (d.train, d.valid):
        red = (1.0 - CIFAR10_MEAN[0]) / CIFAR10_STD[0]
        blue = (0.0 - CIFAR10_MEAN[2]) / CIFAR10_STD[2]
        torch.testing.assert_close(split.x[:, 0], torch.full_like(split.x[:, 0], red))
        torch.testing.assert_close(split.x[:, 2], torch.full_like(split.x[:, 2], blue))
        green = split.x[:, 1, 0, 0] * CIFAR10_STD[1] + CIFAR10_MEAN[1]  # image number / 255
        torch.testing.assert_close(green * 255.0, split.indices.float(), atol=1e-3, rtol=0)
    # seeded: same seed same split, other seed other split, train_fraction configurable
    again = load_dataset("cifar10", root=tmp_path, seed=0)
    assert torch.equal(again.train.indices, d.train.indices) and torch.equal(again.valid.x, d.valid.x)
    other = load_dataset("cifar10", root=tmp_path, seed=1)
    assert not torch.equal(other.train.indices.sort().values, d.train.indices.sort().values)
    half = load_dataset("cifar10", root=tmp_path, train_fraction=0.5)
    assert (len(half.train), len(half.valid)) == (50, 50)
    with pytest.raises(ConfigError, match="train_fraction"):
        load_dataset("cifar10", root=tmp_path, train_fraction=1.0)


def test_fake_cifar100_folder_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import CIFAR100

    folder = tmp_path / CIFAR100.base_folder
    folder.mkdir()
    rng = np.random.default_rng(1)
    train = {"data": rng.integers(0, 256, (50, 3072), dtype=np.uint8), "fine_labels": list(range(50))}
    test = {"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), "fine_labels": list(range(20))}
    monkeypatch.setattr(CIFAR100, "train_list", [["train", _write_pickle(folder / "train", train)]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", _write_pickle(folder / "test", test)]])
    meta_md5 = _write_pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": meta_md5})
    d = load_dataset("cifar100", root=tmp_path, seed=3)
    assert (d.name, d.num_classes, d.in_channels, d.image_size) == ("cifar100", 100, 3, 32)
    assert (len(d.train), len(d.valid), len(d.test)) == (20, 30, 20)
    assert torch.equal(d.train.y, d.train.indices) and torch.equal(d.test.y, torch.arange(20))


def test_fake_cifar10_corrupted_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cifar10(tmp_path, monkeypatch)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DatasetNotFoundError, match="corrupted"):
        load_dataset("cifar10", root=tmp_path)
