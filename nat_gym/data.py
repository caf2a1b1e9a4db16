"""Datasets for nat-gym, returned as ready-to-use CPU tensors split into train / valid / test.

:func:`load_dataset` returns a :class:`DatasetSplits` holding three :class:`Split` objects.  Each split holds the
whole data as two tensors (``x``: float32 ``[N, C, H, W]``, normalised; ``y``: int64 ``[N]``), and
:meth:`Split.batches` slices mini-batches out of them directly (no ``DataLoader``, no per-image transforms).

The roles of the three splits are fixed across all datasets:

* ``train`` -- the supernet's shared weights are trained on it;
* ``valid`` -- held-out *training* data; the policy's reward (the accuracy of a transformed architecture under the
  shared weights) is measured on it, so architecture selection only ever looks at ``train`` and ``valid``;
* ``test``  -- held out and **never used for selection** (not for rewards, not for early stopping, not for picking
  the best architecture); it is only for the final report.

Datasets (:data:`DATASETS`):

``digits`` (the default, embedded)
    scikit-learn's :func:`sklearn.datasets.load_digits`: 1797 real 8x8 grey images of handwritten digits (10
    classes, pixel values 0..16), shipped inside scikit-learn, so nothing is downloaded.  A fixed, seeded,
    *stratified* split of the whole set (``sklearn.model_selection.train_test_split`` with ``random_state=seed``)
    gives, with the defaults ``valid_fraction=0.2`` and ``test_fraction=0.2``::

        train 1077 (60%)    valid 360 (20%)    test 360 (20%)

    (a split of fraction ``f`` holds ``ceil(f * 1797)`` images; ``train`` holds the rest).  Pixels are divided
    by 16 and then standardised with the mean / std of the ``train`` split (one channel).  ``image_size`` is 8 by
    default (the supernet's two stride-2 reductions take it 8 -> 4 -> 2); ``image_size=16`` or ``32`` upsamples
    the images with bilinear interpolation (``align_corners=False``) before standardising.  Keyword arguments:
    ``valid_fraction``, ``test_fraction``, ``image_size``.  Loading is cached in-process: the same arguments
    return the very same object.

``cifar10`` / ``cifar100``
    Read with :class:`torchvision.datasets.CIFAR10` / :class:`~torchvision.datasets.CIFAR100` from
    ``root`` (the folder that holds ``cifar-10-batches-py`` / ``cifar-100-python``).  Nothing is downloaded unless
    ``download=True`` (``nat-gym download cifar10 --data-root ROOT`` does it once for every later use); missing
    files raise :class:`~nat_gym.errors.DatasetNotFoundError`, and so does a download that fails (offline).
    As in the NAT paper, the 50 000 training images are split by a seeded permutation into ``train``
    (``train_fraction=0.4``: 20 000 images) and ``valid`` (the other 60%: 30 000 images); the official 10 000 test
    images are ``test``.  3x32x32 images, normalised per channel with the standard CIFAR mean / std
    (:data:`CIFAR10_MEAN`, :data:`CIFAR10_STD`, :data:`CIFAR100_MEAN`, :data:`CIFAR100_STD`).  Keyword argument:
    ``train_fraction``.

``fake``
    Synthetic and seeded, for tests only: each class has a random mean image and samples are that mean plus
    Gaussian noise, so it can be learnt quickly.  Keyword arguments (defaults): ``num_classes=10``,
    ``image_size=8``, ``in_channels=1``, ``n_train=256``, ``n_valid=128``, ``n_test=128``, ``noise=1.0``.
    Standardised per channel with the ``train`` split's statistics.

Every load is deterministic: the same arguments (``seed`` included) give identical tensors, and a different seed
gives a different split.  The tensors of a returned object may be shared with later calls (see the cache above), so
treat them as read-only.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nat_gym.errors import ConfigError, DatasetNotFoundError

__all__ = [
    "DATASETS",
    "DIGITS_IMAGE_SIZES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "Split",
    "DatasetSplits",
    "default_root",
    "download_command",
    "load_dataset",
]

DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "fake")
"""Names accepted by :func:`load_dataset`."""

DIGITS_IMAGE_SIZES: tuple[int, ...] = (8, 16, 32)
"""Image sizes offered for ``digits`` (8 is the native size; 16 and 32 are bilinear upsamplings)."""

CIFAR10_MEAN: tuple[float, float, float] = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD: tuple[float, float, float] = (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN: tuple[float, float, float] = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD: tuple[float, float, float] = (0.26733429, 0.25643846, 0.27615047)

_DEFAULT_ROOT_ENV = "NAT_GYM_DATA"
_MAX_SEED = 2**32 - 1  # scikit-learn's random_state limit


# --------------------------------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One split of a dataset, as CPU tensors.

    Attributes:
        x: float32 ``[N, C, H, W]``, normalised images.
        y: int64 ``[N]``, class labels in ``0 .. num_classes - 1``.
        indices: int64 ``[N]``, where each sample comes from in its source: for ``digits`` the position among the
            1797 images; for CIFAR the position in the official training set (``train`` / ``valid``) or test set
            (``test``); for ``fake`` the position within the generated split.  ``None`` if unknown.
    """

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dim() != 4 or self.x.dtype != torch.float32:
            raise ConfigError(
                f"Split.x must be a float32 tensor [N, C, H, W]; got dtype={self.x.dtype}, shape={tuple(self.x.shape)}"
            )
        if self.y.dim() != 1 or self.y.dtype != torch.int64:
            raise ConfigError(
                f"Split.y must be an int64 tensor [N]; got dtype={self.y.dtype}, shape={tuple(self.y.shape)}"
            )
        if self.y.shape[0] != self.x.shape[0]:
            raise ConfigError(
                f"Split.y has {self.y.shape[0]} labels but Split.x has {self.x.shape[0]} images"
            )
        if self.indices is not None and tuple(self.indices.shape) != tuple(self.y.shape):
            raise ConfigError(
                f"Split.indices must have shape {tuple(self.y.shape)}; got {tuple(self.indices.shape)}"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` mini-batches covering the split once.

        Args:
            batch_size: samples per batch (the last batch may be smaller unless ``drop_last``).
            shuffle: visit the samples in a random order (``torch.randperm`` drawn from ``generator``).
            generator: the random source for ``shuffle``; pass a seeded one for a reproducible order.
            drop_last: skip a final batch smaller than ``batch_size``.

        Raises:
            ConfigError: ``batch_size`` is not a positive integer.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}")
        # validated here, eagerly; the slicing happens lazily in the returned generator
        return self._iter_batches(int(batch_size), shuffle, generator, drop_last)

    def _iter_batches(
        self, batch_size: int, shuffle: bool, generator: torch.Generator | None, drop_last: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self)
        stop = n - n % batch_size if drop_last else n
        order = torch.randperm(n, generator=generator) if shuffle else None
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, n)
            if order is None:
                yield self.x[start:end], self.y[start:end]
            else:
                idx = order[start:end]
                yield self.x[idx], self.y[idx]


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset split three ways (see the module docstring for the roles of the splits).

    Attributes:
        name: the dataset's name (one of :data:`DATASETS`).
        train: the supernet's weights are trained on this.
        valid: the policy's reward is measured on this (held-out training data).
        test: held out; never used for selection.
        num_classes: number of classes.
        in_channels: image channels (``C``).
        image_size: image height and width (``H == W``).
    """

    name: str
    train: Split
    valid: Split
    test: Split
    num_classes: int
    in_channels: int
    image_size: int

    def __post_init__(self) -> None:
        expected = (self.in_channels, self.image_size, self.image_size)
        for field in ("train", "valid", "test"):
            split: Split = getattr(self, field)
            if tuple(split.x.shape[1:]) != expected:
                raise ConfigError(
                    f"DatasetSplits.{field}.x must have image shape {expected}; got {tuple(split.x.shape[1:])}"
                )


# --------------------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------------------


def default_root() -> Path:
    """The folder searched for downloadable datasets when ``root`` is None: ``$NAT_GYM_DATA`` if set, else
    ``~/.cache/nat-gym/data``."""
    env = os.environ.get(_DEFAULT_ROOT_ENV)
    return Path(env).expanduser() if env else Path("~/.cache/nat-gym/data").expanduser()


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    seed: int = 0,
    **kwargs: Any,
) -> DatasetSplits:
    """Load a dataset as train / valid / test tensors.

    Args:
        name: one of :data:`DATASETS` (``"digits"``, ``"cifar10"``, ``"cifar100"``, ``"fake"``).
        root: folder holding the downloadable datasets (CIFAR); defaults to :func:`default_root`.  Ignored by
            ``digits`` and ``fake``.
        download: let torchvision fetch missing CIFAR files into ``root``.  Ignored by ``digits`` and ``fake``.
        seed: seeds the split (and, for ``fake``, the data); an integer in ``[0, 2**32 - 1]``.
        **kwargs: per-dataset options (see the module docstring): ``digits``: ``valid_fraction``,
            ``test_fraction``, ``image_size``; CIFAR: ``train_fraction``; ``fake``: ``num_classes``,
            ``image_size``, ``in_channels``, ``n_train``, ``n_valid``, ``n_test``, ``noise``.

    Raises:
        ConfigError: unknown ``name``, unknown keyword, or a value out of range (the message names the field).
        DatasetNotFoundError: CIFAR files missing from ``root`` and ``download`` is False.
    """
    if not isinstance(name, str) or name.strip().lower() not in DATASETS:
        raise ConfigError(f"dataset name {name!r} is not known; allowed: {', '.join(DATASETS)}")
    name = name.strip().lower()
    seed = _check_seed(seed)
    if name == "digits":
        opts = _take_kwargs(name, kwargs, {"valid_fraction": 0.2, "test_fraction": 0.2, "image_size": 8})
        return _load_digits(
            seed,
            _check_fraction("valid_fraction", opts["valid_fraction"]),
            _check_fraction("test_fraction", opts["test_fraction"]),
            _check_choice("image_size", opts["image_size"], DIGITS_IMAGE_SIZES),
        )
    if name == "fake":
        opts = _take_kwargs(
            name,
            kwargs,
            {
                "num_classes": 10,
                "image_size": 8,
                "in_channels": 1,
                "n_train": 256,
                "n_valid": 128,
                "n_test": 128,
                "noise": 1.0,
            },
        )
        return _load_fake(
            seed,
            num_classes=_check_int("num_classes", opts["num_classes"], minimum=2),
            image_size=_check_int("image_size", opts["image_size"], minimum=1),
            in_channels=_check_int("in_channels", opts["in_channels"], minimum=1),
            n_train=_check_int("n_train", opts["n_train"], minimum=2),
            n_valid=_check_int("n_valid", opts["n_valid"], minimum=1),
            n_test=_check_int("n_test", opts["n_test"], minimum=1),
            noise=_check_nonnegative("noise", opts["noise"]),
        )
    opts = _take_kwargs(name, kwargs, {"train_fraction": 0.4})
    return _load_cifar(
        name,
        Path(root).expanduser() if root is not None else default_root(),
        download=bool(download),
        seed=seed,
        train_fraction=_check_fraction("train_fraction", opts["train_fraction"]),
    )


# --------------------------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------------------------


def _take_kwargs(name: str, kwargs: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; allowed: {', '.join(defaults)}"
        )
    return {**defaults, **kwargs}


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= _MAX_SEED:
        raise ConfigError(f"seed must be an integer in [0, {_MAX_SEED}]; got {seed!r}")
    return int(seed)


def _check_fraction(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{field} must be a number strictly between 0 and 1; got {value!r}")
    return float(value)


def _check_int(field: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{field} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _check_nonnegative(field: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"{field} must be a finite number >= 0; got {value!r}")
    return float(value)


def _check_choice(field: str, value: Any, allowed: tuple[int, ...]) -> int:
    if isinstance(value, bool) or value not in allowed:
        raise ConfigError(f"{field} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Standardise every tensor per channel with the mean / std of ``train``."""
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
    return tuple(((t - mean) / std).contiguous() for t in (train, *others))


def _split_sizes_ceil(n: int, fraction: float) -> int:
    # scikit-learn's rule for a float test_size: ceil(fraction * n)
    return math.ceil(fraction * n)


# --------------------------------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _load_digits(seed: int, valid_fraction: float, test_fraction: float, image_size: int) -> DatasetSplits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)  # [1797, 8, 8], values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    n = int(labels.shape[0])
    num_classes = int(labels.max()) + 1

    n_test = _split_sizes_ceil(n, test_fraction)
    n_valid = _split_sizes_ceil(n, valid_fraction)
    n_train = n - n_test - n_valid
    for field, count in (("test_fraction", n_test), ("valid_fraction", n_valid)):
        if count < num_classes:
            raise ConfigError(
                f"{field} leaves {count} images in its split, fewer than the {num_classes} classes; "
                f"use a larger {field}"
            )
    if n_train < num_classes:
        raise ConfigError(
            f"valid_fraction + test_fraction = {valid_fraction + test_fraction:g} leaves {n_train} training "
            f"images; they must sum to less than 1 and leave at least {num_classes}"
        )

    index = np.arange(n)
    rest, test_idx = train_test_split(index, test_size=n_test, stratify=labels, random_state=seed)
    train_idx, valid_idx = train_test_split(rest, test_size=n_valid, stratify=labels[rest], random_state=seed)

    def images_of(idx: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images[idx]).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
        if image_size != x.shape[-1]:
            x = torch.nn.functional.interpolate(
                x, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
        return x

    x_train, x_valid, x_test = _standardise(images_of(train_idx), images_of(valid_idx), images_of(test_idx))

    def split(x: torch.Tensor, idx: np.ndarray) -> Split:
        return Split(
            x=x, y=torch.from_numpy(labels[idx].copy()), indices=torch.from_numpy(idx.astype(np.int64))
        )

    return DatasetSplits(
        name="digits",
        train=split(x_train, train_idx),
        valid=split(x_valid, valid_idx),
        test=split(x_test, test_idx),
        num_classes=num_classes,
        in_channels=1,
        image_size=image_size,
    )


# --------------------------------------------------------------------------------------------------------------------
# fake
# --------------------------------------------------------------------------------------------------------------------


def _load_fake(
    seed: int,
    *,
    num_classes: int,
    image_size: int,
    in_channels: int,
    n_train: int,
    n_valid: int,
    n_test: int,
    noise: float,
) -> DatasetSplits:
    gen = torch.Generator().manual_seed(seed)
    shape = (in_channels, image_size, image_size)
    prototypes = torch.randn((num_classes, *shape), generator=gen)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        # balanced labels in a random order, then class mean + Gaussian noise
        y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
        x = prototypes[y] + noise * torch.randn((n, *shape), generator=gen)
        return x, y

    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = make(n_train), make(n_valid), make(n_test)
    x_train, x_valid, x_test = _standardise(x_train, x_valid, x_test)
    return DatasetSplits(
        name="fake",
        train=Split(x_train, y_train, torch.arange(n_train)),
        valid=Split(x_valid, y_valid, torch.arange(n_valid)),
        test=Split(x_test, y_test, torch.arange(n_test)),
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
    )


# --------------------------------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------------------------------


def _cifar_class(name: str) -> Any:
    from torchvision.datasets import CIFAR10, CIFAR100

    return CIFAR10 if name == "cifar10" else CIFAR100


def _cifar_missing_files(cls: Any, root: Path) -> tuple[Path, list[str]]:
    folder = root / cls.base_folder
    wanted = [entry[0] for entry in (*cls.train_list, *cls.test_list)] + [cls.meta["filename"]]
    return folder, [f for f in wanted if not (folder / f).is_file()]


def download_command(name: str, root: Path) -> str:
    """The command that fetches dataset ``name`` into ``root`` once, for the hints of the errors below."""
    return f"nat-gym download {name} --data-root {shlex.quote(str(root))}"


def _load_cifar(name: str, root: Path, *, download: bool, seed: int, train_fraction: float) -> DatasetSplits:
    cls = _cifar_class(name)
    folder, missing = _cifar_missing_files(cls, root)
    # the hints work for every caller (nat-gym train / train-supernet, gym.make, load_dataset): a command that fetches
    # the files into the folder searched here, after which every later load finds them
    fetch = (f"fetch it once with `{download_command(name, root)}` (load_dataset({name!r}, root=..., "
             f"download=True) from Python)")  # fmt: skip
    if missing and not download:
        raise DatasetNotFoundError(
            f"{name} not found: searched {folder} (missing: {', '.join(missing)}). To use it, {fetch}, or place the "
            f"extracted '{cls.base_folder}' folder in {root}."
        )
    try:
        train_set = cls(str(root), train=True, download=download)
        test_set = cls(str(root), train=False, download=False)
    except RuntimeError as err:  # torchvision's md5 check failed
        raise DatasetNotFoundError(
            f"{name} files in {folder} are incomplete or corrupted (torchvision's integrity check failed). Delete "
            f"the folder and {fetch.replace('it once', 'it again')}, or place an intact extracted "
            f"'{cls.base_folder}' folder in {root}."
        ) from err
    except OSError as err:  # the download failed: offline, DNS, HTTP error (urllib's errors are OSErrors)
        reason = " ".join(str(err).split())[:160]
        raise DatasetNotFoundError(
            f"{name}: downloading into {root} failed ({type(err).__name__}: {reason}). Check the network connection "
            f"and retry, or place the extracted '{cls.base_folder}' folder in {root}."
        ) from err

    mean = torch.tensor(CIFAR10_MEAN if name == "cifar10" else CIFAR100_MEAN)
    std = torch.tensor(CIFAR10_STD if name == "cifar10" else CIFAR100_STD)
    num_classes = 10 if name == "cifar10" else 100

    train_data = np.asarray(train_set.data)  # uint8 [N, 32, 32, 3]
    train_targets = np.asarray(train_set.targets, dtype=np.int64)
    n = int(train_targets.shape[0])
    n_train = int(round(train_fraction * n))
    if not 0 < n_train < n:
        raise ConfigError(
            f"train_fraction={train_fraction!r} leaves an empty split of the {n} training images; "
            f"it must be strictly between 0 and 1 and leave at least one image on each side"
        )
    perm = np.random.default_rng(seed).permutation(n)
    train_idx, valid_idx = perm[:n_train], perm[n_train:]
    test_idx = np.arange(len(test_set.targets))

    def split(data: np.ndarray, targets: np.ndarray, idx: np.ndarray) -> Split:
        x = torch.from_numpy(np.ascontiguousarray(data[idx])).permute(0, 3, 1, 2).float().div_(255.0)
        x = x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1)).contiguous()
        return Split(
            x=x, y=torch.from_numpy(targets[idx].copy()), indices=torch.from_numpy(idx.astype(np.int64))
        )

    test_targets = np.asarray(test_set.targets, dtype=np.int64)
    return DatasetSplits(
        name=name,
        train=split(train_data, train_targets, train_idx),
        valid=split(train_data, train_targets, valid_idx),
        test=split(np.asarray(test_set.data), test_targets, test_idx),
        num_classes=num_classes,
        in_channels=3,
        image_size=32,
    )
