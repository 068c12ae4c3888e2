"""Test images for ``asqhw run``: the digits test split and CIFAR-10's test batch, and input codes.

Images are float64 ``N x C x H x W`` with raw pixels scaled to ``[0, 1]`` (digits: ``/16``,
CIFAR-10: ``/255``), the scale the export's ``input.mean`` and ``input.std`` apply to. The
digits test split is the first 360 indices of ``numpy.random.default_rng(20240).permutation(1797)``
(the split QAT trains on; the rest is the training set). CIFAR-10's test split is the
``test_batch`` file of the python pickle batches, read with an unpickler that accepts only
numpy arrays, lists, dicts, strings and numbers. No torch here: this is the format layer.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from . import imagefolder
from .errors import UserError

__all__ = ["load_test_set", "input_codes", "digits_split", "cifar10_batch", "DIGITS_TEST", "DIGITS_SPLIT_SEED"]

DIGITS_TEST = 360
DIGITS_SPLIT_SEED = 20240
_NP_CORE = "numpy._core" if hasattr(np, "_core") else "numpy.core"
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
_MAX_BATCH_BYTES = 1 << 26   # a CIFAR-10 batch is 31 MB; the unpickler's memory stays near 20x this


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled numpy array needs; anything else is refused."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core") or module.startswith("numpy._core"):
            module = _NP_CORE + module.split("core", 1)[1]
        return super().find_class(module, name)


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(x_train, y_train, x_test, y_test)``: 1437 / 360, pixels in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("the digits data set needs scikit-learn (pip install scikit-learn)") from None
    d = load_digits()
    x = d.images.astype(np.float64)[:, None] / 16.0
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y))
    test, train = perm[:DIGITS_TEST], perm[DIGITS_TEST:]
    return x[train], y[train], x[test], y[test]


def cifar10_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch file: float64 images ``N x 3 x 32 x 32`` in [0, 1], int64 labels.

    Read with an unpickler that resolves only what a pickled numpy array needs.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"CIFAR-10 directory {path.parent} has no {path.name} (the python pickle batches)")
    if path.stat().st_size > _MAX_BATCH_BYTES:
        raise UserError(f"{path}: {path.stat().st_size} bytes is too large for a CIFAR-10 batch")
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a malformed file
        raise UserError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__})") from None
    if type(d) is not dict:
        raise UserError(f"{path}: not a CIFAR-10 python batch (a {type(d).__name__}, not a dict)")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    # Only a flat array and a flat list of ints are looked into, never a nested structure
    # (a deeply shared list would take forever to walk).
    if type(data) is not np.ndarray or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = (f"{data.dtype} {list(data.shape)}" if type(data) is np.ndarray else type(data).__name__)
        raise UserError(f"{path}: expected uint8 data N x 3072, got {what}")
    if data.shape[0] == 0:
        raise UserError(f"{path}: the batch holds no images")
    n = data.shape[0]
    if type(labels) is list:
        if len(labels) != n or not all(type(v) is int and 0 <= v <= 9 for v in labels):
            raise UserError(f"{path}: expected {n} integer labels in 0..9")
        labels = np.asarray(labels, dtype=np.int64)
    elif type(labels) is np.ndarray:
        if labels.dtype.kind not in "iu" or labels.shape != (n,) or labels.min() < 0 or labels.max() > 9:
            raise UserError(f"{path}: expected {n} integer labels in 0..9")
    else:
        raise UserError(f"{path}: expected {n} integer labels in 0..9, got a {type(labels).__name__}")
    return data.reshape(-1, 3, 32, 32).astype(np.float64) / 255.0, labels.astype(np.int64)


def _cifar_dir(directory: str) -> Path:
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"CIFAR-10 directory {root} does not exist")
    return root


def load_test_set(spec: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(images, labels, description)`` of ``digits``, ``cifar10:DIR`` or ``imagefolder:[CxHxW:]DIR``.

    Returns float64 images ``N x C x H x W`` in ``[0, 1]``, int64 labels, and a short name.
    """
    if spec == "digits":
        _, _, x, y = digits_split()
        return x, y, "digits test split"
    if isinstance(spec, str) and spec.startswith("cifar10:") and len(spec) > len("cifar10:"):
        x, y = cifar10_batch(_cifar_dir(spec[len("cifar10:"):]) / "test_batch")
        return x, y, "CIFAR-10 test_batch"
    if isinstance(spec, str) and spec.startswith(imagefolder.PREFIX):
        x, y = imagefolder.read_test(spec, progress=True)
        return x.astype(np.float64) / 255.0, y, "image folder test split"
    raise UserError(f"--data must be 'digits', 'cifar10:DIR' or 'imagefolder:[CxHxW:]DIR', not {spec!r}")


def input_codes(images: np.ndarray, inp: dict) -> np.ndarray:
    """Signed 8-bit input codes ``clamp(round((x - mean_c) / std_c / step), -128, 127)`` (docs/network.md).

    ``inp`` is the export's ``input`` object; float64, round half to even (outside the
    integer path). Raises UserError when the images' ``C x H x W`` is not ``inp["shape"]``.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4 or list(x.shape[1:]) != list(inp["shape"]):
        raise UserError(f"the data set's images are {'x'.join(map(str, x.shape[1:]))}, "
                        f"the network expects {'x'.join(map(str, inp['shape']))}")
    mean = np.asarray(inp["mean"], dtype=np.float64).reshape(1, -1, 1, 1)
    std = np.asarray(inp["std"], dtype=np.float64).reshape(1, -1, 1, 1)
    q = np.round((x - mean) / std / float(inp["step"]))
    return np.clip(q, -128, 127).astype(np.int16)
