"""Data sets for training: scikit-learn's bundled 8x8 digits and CIFAR-10 from a directory.

Images are returned normalised, ``(x - mean_c) / std_c``, as float32 ``N x C x H x W`` tensors
with int64 labels. The digits split is fixed (a seeded permutation: 1437 train, 360 test). The
CIFAR-10 directory holds the python pickle batches ``data_batch_1`` .. ``data_batch_5`` and
``test_batch`` (each a dict with ``data``: uint8 ``N x 3072`` and ``labels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asqhw.core import imagefolder
from asqhw.core.datasets import cifar10_batch, digits_split
from asqhw.core.errors import UserError

__all__ = ["Dataset", "load_digits", "load_cifar10", "load_imagefolder", "load_data", "augment_batch",
           "CIFAR_MEAN", "CIFAR_STD"]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class Dataset:
    """A normalised train/test split.

    ``spec`` names the data (``digits`` or ``cifar10:DIR``); ``mean`` and ``std`` are the
    per-channel normalisation applied to raw pixel values in ``[0, 1]``; ``augment`` asks for
    random crops and flips during training.
    """

    spec: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: tuple
    std: tuple
    classes: int
    augment: bool


def _normalise(x: np.ndarray, mean, std) -> torch.Tensor:
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return torch.from_numpy(((x.astype(np.float32) - m) / s).astype(np.float32))


def load_digits() -> Dataset:
    """scikit-learn's digits (pixels 0..16 scaled to [0, 1]); the fixed 1437 / 360 split of asqhw.core.datasets."""
    xtr, ytr, xte, yte = digits_split()
    xtr, xte = xtr.astype(np.float32), xte.astype(np.float32)
    mean = (float(xtr.mean()),)
    std = (float(xtr.std()),)
    return Dataset("digits", _normalise(xtr, mean, std), torch.from_numpy(ytr),
                   _normalise(xte, mean, std), torch.from_numpy(yte), mean, std, 10, False)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = cifar10_batch(path)
    return x.astype(np.float32), y


def load_cifar10(directory) -> Dataset:
    """CIFAR-10 from the python pickle batches in ``directory``."""
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"CIFAR-10 directory {root} does not exist")
    parts = [_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    xt, yt = _cifar_batch(root / "test_batch")
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return Dataset(f"cifar10:{root}", _normalise(x, CIFAR_MEAN, CIFAR_STD), torch.from_numpy(y),
                   _normalise(xt, CIFAR_MEAN, CIFAR_STD), torch.from_numpy(yt), CIFAR_MEAN, CIFAR_STD,
                   10, True)


def load_imagefolder(spec: str) -> Dataset:
    """Class-per-subfolder images (asqhw.core.imagefolder), normalised by the training split's channel mean and std."""
    xtr, ytr, xte, yte, names = imagefolder.read_split(spec, progress=True)
    xtr, xte = xtr.astype(np.float32) / 255.0, xte.astype(np.float32) / 255.0
    mean = tuple(float(v) for v in xtr.mean(axis=(0, 2, 3)))
    std = tuple(max(float(v), 1e-6) for v in xtr.std(axis=(0, 2, 3)))
    return Dataset(spec, _normalise(xtr, mean, std), torch.from_numpy(ytr), _normalise(xte, mean, std),
                   torch.from_numpy(yte), mean, std, len(names), False)


def load_data(spec: str) -> Dataset:
    """``digits``, ``cifar10:DIR`` or ``imagefolder:[CxHxW:]DIR``."""
    if spec == "digits":
        return load_digits()
    if spec.startswith("cifar10:") and len(spec) > len("cifar10:"):
        return load_cifar10(spec[len("cifar10:"):])
    if spec.startswith(imagefolder.PREFIX):
        return load_imagefolder(spec)
    raise UserError(f"data must be 'digits', 'cifar10:DIR' or 'imagefolder:[CxHxW:]DIR', not {spec!r}")


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip, per sample, seeded by ``gen``."""
    n, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, x.shape[1], h, w)
    cols = (dx[:, None] + torch.arange(w)[None])
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :].expand(n, x.shape[1], h, w)
    return xp[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
