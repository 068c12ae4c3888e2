"""Image folders (asqhw.core.imagefolder): layout, split rule, resize rule and bounded decoding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from asqhw.core import imagefolder
from asqhw.core.datasets import load_test_set
from asqhw.core.errors import UserError


def _png(path, w, h, value=0, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((h, w, 3) if mode == "RGB" else (h, w), value, dtype=np.uint8)
    Image.fromarray(arr, mode).save(path)
    return path


def _folder(root, classes=("cat", "dog"), per_class=5, size=(6, 4)):
    for y, c in enumerate(classes):
        for i in range(per_class):
            _png(root / c / f"img{i:02d}.png", *size, value=10 * y + i)
    return root


def test_classes_are_sorted_subfolders_and_every_fifth_image_is_a_test_image(tmp_path):
    root = _folder(tmp_path / "d", classes=("zebra", "ant"), per_class=10)
    xtr, ytr, xte, yte, names = imagefolder.read_split(f"imagefolder:{root}")
    assert names == ["ant", "zebra"]
    assert list(yte) == [0, 0, 1, 1] and len(ytr) == 16
    # ant's images have value 10*1 + i; images 4 and 9 (numbered from 0) are test images
    assert [int(v) for v in xte[:2, 0, 0, 0]] == [14, 19]
    assert xtr.dtype == np.uint8 and xtr.shape == (16, 3, 4, 6)


def test_train_and_test_folders_are_used_as_given(tmp_path):
    _folder(tmp_path / "d" / "train", per_class=2)
    _folder(tmp_path / "d" / "test", classes=("dog",), per_class=1)
    xtr, ytr, xte, yte, names = imagefolder.read_split(f"imagefolder:{tmp_path / 'd'}")
    assert names == ["cat", "dog"] and list(ytr) == [0, 0, 1, 1] and list(yte) == [1]


def test_a_test_class_missing_from_train_is_refused(tmp_path):
    _folder(tmp_path / "d" / "train", classes=("cat", "dog"), per_class=1)
    _folder(tmp_path / "d" / "test", classes=("cat", "cow"), per_class=1)
    with pytest.raises(UserError, match="'cow'"):
        imagefolder.read_split(f"imagefolder:{tmp_path / 'd'}")


def test_resize_scales_the_short_side_then_crops_the_centre(tmp_path):
    arr = np.zeros((4, 8, 3), dtype=np.uint8)
    arr[:, :2] = 200                          # left quarter bright: cropped away at 4x4
    arr[:, 2:6] = 100
    for c in ("a", "b"):
        for i in range(5):
            Image.fromarray(arr).save(_png(tmp_path / "d" / c / f"{i}.png", 1, 1))
    xtr, _, _, _, _ = imagefolder.read_split(f"imagefolder:3x4x4:{tmp_path / 'd'}")
    assert xtr.shape == (8, 3, 4, 4)
    assert np.all(xtr[0] == 100)
    grey, _, _, _, _ = imagefolder.read_split(f"imagefolder:1x2x2:{tmp_path / 'd'}")
    assert grey.shape == (8, 1, 2, 2)


def test_images_of_different_sizes_need_the_size(tmp_path):
    root = _folder(tmp_path / "d")
    _png(root / "cat" / "big.png", 9, 9)
    with pytest.raises(UserError, match="imagefolder:CxHxW:DIR"):
        imagefolder.read_split(f"imagefolder:{root}")
    x, *_ = imagefolder.read_split(f"imagefolder:3x4x6:{root}")
    assert x.shape[1:] == (3, 4, 6)


def test_non_images_and_hidden_files_are_ignored(tmp_path):
    root = _folder(tmp_path / "d")
    (root / "cat" / "notes.txt").write_text("hello")
    (root / "cat" / ".hidden.png").write_bytes(b"junk")
    _, ytr, _, yte, _ = imagefolder.read_split(f"imagefolder:{root}")
    assert len(ytr) + len(yte) == 10


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong_format"])
def test_a_damaged_image_is_named_in_the_error(tmp_path, damage):
    root = _folder(tmp_path / "d")
    bad = root / "dog" / "img03.png"
    data = bad.read_bytes()
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    else:
        Image.fromarray(np.zeros((4, 6), np.uint8)).save(bad, format="BMP")
    with pytest.raises(UserError, match="img03.png"):
        imagefolder.read_split(f"imagefolder:{root}")


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d")
    monkeypatch.setattr(imagefolder, "MAX_PIXELS", 23)          # 6 x 4 = 24 pixels: one too many
    with pytest.raises(UserError, match="6x4 pixels"):
        imagefolder.read_split(f"imagefolder:{root}")


def test_a_file_over_the_size_bound_is_refused(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d")
    monkeypatch.setattr(imagefolder, "MAX_FILE_BYTES", 10)
    with pytest.raises(UserError, match="bytes is more than"):
        imagefolder.read_split(f"imagefolder:{root}")


def test_a_data_set_over_the_memory_bound_is_refused(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d")
    monkeypatch.setattr(imagefolder, "MAX_TOTAL_BYTES", 100)
    with pytest.raises(UserError, match="smaller CxHxW"):
        imagefolder.read_split(f"imagefolder:{root}")


@pytest.mark.parametrize("spec, fragment", [
    ("imagefolder:", "imagefolder:DIR"),
    ("imagefolder:2x8x8:/tmp", "C 1 or 3"),
    ("imagefolder:/does/not/exist", "does not exist"),
])
def test_bad_specs_are_one_line_errors(spec, fragment):
    with pytest.raises(UserError, match=fragment):
        imagefolder.read_split(spec)


def test_empty_class_folder_and_no_test_images_are_errors(tmp_path):
    root = _folder(tmp_path / "d", per_class=4)               # 4 images: none is the 5th
    with pytest.raises(UserError, match="no test images"):
        imagefolder.read_split(f"imagefolder:{root}")
    (root / "empty").mkdir()
    with pytest.raises(UserError, match="no PNG or JPEG"):
        imagefolder.read_split(f"imagefolder:{root}")


def test_the_test_set_reader_gives_pixels_in_0_1(tmp_path):
    root = _folder(tmp_path / "d")
    x, y, what = load_test_set(f"imagefolder:{root}")
    assert x.dtype == np.float64 and x.max() <= 1.0 and list(y) == [0, 1] and "image folder" in what
    assert x[1, 0, 0, 0] == pytest.approx(14 / 255)


def test_the_training_loader_normalises_by_the_training_split(tmp_path):
    from asqhw.golden.qat.data import load_data

    root = _folder(tmp_path / "d")
    d = load_data(f"imagefolder:3x4x6:{root}")
    assert d.classes == 2 and d.x_train.shape == (8, 3, 4, 6) and d.spec == f"imagefolder:3x4x6:{root}"
    assert abs(float(d.x_train.mean())) < 1e-5


def test_a_16_bit_png_keeps_its_high_byte(tmp_path):
    root = _folder(tmp_path / "d")
    Image.fromarray(np.full((4, 6), 0x8342, np.uint16)).save(root / "cat" / "img04.png")   # the cat's test image
    _, _, xte, _, _ = imagefolder.read_split(f"imagefolder:1x4x6:{root}")
    assert int(xte[0, 0, 0, 0]) == 0x83


def test_one_class_is_not_a_classification_data_set(tmp_path):
    root = _folder(tmp_path / "d", classes=("only",))
    with pytest.raises(UserError, match="at least 2"):
        imagefolder.read_split(f"imagefolder:{root}")
