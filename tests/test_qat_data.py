"""golden.qat.data: digits split, CIFAR-10 pickle directories, augmentation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from asqhw.cli.main import main
from asqhw.core.errors import UserError
from asqhw.golden.qat.data import augment_batch, load_cifar10, load_data, load_digits


def write_tiny_cifar(root, n=6, seed=0) -> None:
    """A CIFAR-10 directory in the python pickle format with ``n`` images per batch."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        y = rng.integers(0, 10, n)
        data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        with open(root / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": [int(v) for v in y]}, f)


def test_digits_split_is_fixed_and_normalised():
    a, b = load_digits(), load_digits()
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert torch.equal(a.y_test, b.y_test)
    assert abs(float(a.x_train.mean())) < 1e-4 and abs(float(a.x_train.std()) - 1) < 1e-2


def test_tiny_cifar_directory_loads_all_five_batches_and_the_test_batch(tmp_path):
    write_tiny_cifar(tmp_path)
    d = load_cifar10(tmp_path)
    assert d.x_train.shape == (30, 3, 32, 32) and d.x_test.shape == (6, 3, 32, 32)
    assert d.augment and d.spec == f"cifar10:{tmp_path}"


def test_missing_cifar_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_data(f"cifar10:{tmp_path / 'nope'}")


def test_missing_cifar_batch_is_a_user_error(tmp_path):
    write_tiny_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(UserError, match="has no data_batch_3"):
        load_cifar10(tmp_path)


def test_malformed_cifar_batch_is_a_user_error(tmp_path):
    write_tiny_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a CIFAR-10 python batch"):
        load_cifar10(tmp_path)


def test_cifar_batch_of_the_wrong_shape_is_a_user_error(tmp_path):
    write_tiny_cifar(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(UserError, match="N x 3072"):
        load_cifar10(tmp_path)


def test_train_with_a_bad_data_directory_ends_in_one_line(tmp_path, capsys):
    assert main(["train", "--data", f"cifar10:{tmp_path / 'x'}", "--out", str(tmp_path / "c.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asqhw: error:")


def test_augmentation_is_a_seeded_crop_or_flip_of_the_padded_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    a = augment_batch(x, torch.Generator().manual_seed(3))
    b = augment_batch(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape
    for n in range(2):  # every output row is a (possibly flipped) window of a padded input row
        vals = set(a[n].flatten().tolist()) - {0.0}
        assert vals <= set(x[n].flatten().tolist())


def test_a_model_for_other_image_shapes_is_a_user_error(tmp_path, capsys):
    args = ["train", "--model", "resnet20", "--epochs", "0,0", "--out", str(tmp_path / "c.pt"), "-q"]
    assert main(args) == 2
    assert "takes [3, 32, 32] images" in capsys.readouterr().err
