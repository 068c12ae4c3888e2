"""The CIFAR-10-format stand-in: seeded, in the CIFAR python format, unseen glyphs in the test set."""

from __future__ import annotations

import numpy as np
import pytest

from asqhw.core.datasets import cifar10_batch
from asqhw.golden.qat.data import load_data
from asqhw.golden.qat.standin import render_standin, write_standin

from conftest import assert_one_line_error, run


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin") / "si"
    write_standin(root, train=50, test=20, seed=3)
    return root


def test_the_directory_has_the_five_training_batches_the_test_batch_and_meta(standin):
    names = sorted(p.name for p in standin.iterdir())
    assert names == ["batches.meta"] + [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    sizes = [len(cifar10_batch(standin / f"data_batch_{i}")[1]) for i in range(1, 6)]
    assert sizes == [10] * 5 and len(cifar10_batch(standin / "test_batch")[1]) == 20


def test_cifar10_data_spec_reads_it_as_32x32x3_images_with_ten_classes(standin):
    d = load_data(f"cifar10:{standin}")
    assert tuple(d.x_train.shape) == (50, 3, 32, 32) and tuple(d.x_test.shape) == (20, 3, 32, 32)
    assert d.classes == 10 and d.augment
    assert int(d.y_train.min()) >= 0 and int(d.y_train.max()) <= 9


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_images(standin, tmp_path):
    again = write_standin(tmp_path / "again", train=50, test=20, seed=3)
    for name in ("data_batch_1", "test_batch"):
        assert (again / name).read_bytes() == (standin / name).read_bytes()
    a, b = render_standin(10, 5, seed=0), render_standin(10, 5, seed=1)
    assert not np.array_equal(a[0], b[0])


def test_images_vary_in_contrast_by_a_factor_of_two_or_more():
    x = render_standin(300, 5, seed=0)[0].reshape(300, 3, 32, 32).astype(np.float64)
    contrast = x.std(axis=(1, 2, 3))
    assert np.percentile(contrast, 95) > 2 * np.percentile(contrast, 5)


def test_labels_cover_all_ten_digits():
    y = render_standin(200, 5, seed=0)[1]
    assert sorted(set(y.tolist())) == list(range(10))


def test_existing_batches_are_kept_without_force(standin, capsys):
    before = (standin / "data_batch_1").read_bytes()
    code, _, err = run(capsys, "standin", "-o", str(standin), "--train", "50", "--test", "20", "-q")
    assert_one_line_error(code, err, "--force")
    assert (standin / "data_batch_1").read_bytes() == before


def test_the_command_writes_a_directory_that_train_accepts(tmp_path, capsys):
    code, out, _ = run(capsys, "standin", "-o", str(tmp_path / "s"), "--train", "10", "--test", "5", "-q")
    assert code == 0 and f"cifar10:{tmp_path / 's'}" in out
    code, _, _ = run(capsys, "train", "--data", f"cifar10:{tmp_path / 's'}", "--epochs", "0,0", "--threads", "1",
                     "-q", "--out", str(tmp_path / "r.pt"))
    assert code == 0


@pytest.mark.parametrize("argv, fragment", [(["--train", "2"], "--train"), (["--test", "0"], "--test")])
def test_too_few_images_is_a_user_error(tmp_path, capsys, argv, fragment):
    code, _, err = run(capsys, "standin", "-o", str(tmp_path / "s"), "-q", *argv)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "s").exists()
