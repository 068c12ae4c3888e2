"""Image folders as data sets: class-per-subfolder PNG/JPEG images, decoded with bounds.

A data spec ``imagefolder:DIR`` or ``imagefolder:CxHxW:DIR`` (docs/import.md):

- **classes.** The sub-folders of ``DIR`` in sorted (code-point) order are the classes, label
  0, 1, ... (at least 2); in each, the files ending ``.png``, ``.jpg`` or ``.jpeg`` (any case, not starting
  with ``.``) are its images; anything else is ignored.
- **split.** If ``DIR`` holds the folders ``train`` and ``test``, each is such a class-per-subfolder
  tree (the classes are those of ``train``; ``test`` may not have others). Otherwise, in every
  class the images in sorted file-name order numbered from 0 go to the test split when their
  number is 4 mod 5 (the 5th, 10th, ... image: a fifth) and to the training split otherwise.
- **size.** With ``CxHxW`` (``C`` 1: grey, 3: RGB) every image is converted to that mode,
  scaled (bilinear) by ``max(H / h, W / w)`` to ``round(w f) x round(h f)`` and cropped to
  ``H x W`` at the centre (offsets rounded down). Without it, the images are kept at their own
  size, which must then be the same for all (RGB). A 16-bit grey PNG keeps its high 8 bits.
- **bounds.** A file may have at most :data:`MAX_FILE_BYTES` and an image at most
  :data:`MAX_PIXELS` pixels (checked from the header, before decoding); the decoded data set
  at most :data:`MAX_TOTAL_BYTES` bytes. A corrupt, truncated or oversized image, or a
  decompression bomb, is a one-line UserError naming the file.

Images come back as uint8 ``N x C x H x W`` arrays with int64 labels; pixels ``/ 255`` are the
``[0, 1]`` values the rest of the project normalises. No torch here: this is the format layer.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from .errors import UserError

__all__ = ["parse_spec", "read_split", "read_test", "canonical_spec", "PREFIX", "MAX_FILE_BYTES", "MAX_PIXELS",
           "MAX_TOTAL_BYTES", "EXTENSIONS"]

PREFIX = "imagefolder:"
MAX_FILE_BYTES = 64 << 20
MAX_PIXELS = 1 << 25
MAX_TOTAL_BYTES = 1 << 30
MAX_CLASSES = 10000
EXTENSIONS = (".png", ".jpg", ".jpeg")
_SHAPE = re.compile(r"^(\d{1,5})x(\d{1,5})x(\d{1,5}):(.+)$")


def parse_spec(spec: str) -> tuple[tuple[int, int, int] | None, Path]:
    """``(shape or None, directory)`` of ``imagefolder:[CxHxW:]DIR``."""
    if not isinstance(spec, str) or not spec.startswith(PREFIX) or len(spec) == len(PREFIX):
        raise UserError(f"expected imagefolder:DIR or imagefolder:CxHxW:DIR, not {spec!r}")
    rest = spec[len(PREFIX):]
    m = _SHAPE.match(rest)
    if not m:
        return None, Path(rest)
    shape = (int(m[1]), int(m[2]), int(m[3]))
    if shape[0] not in (1, 3) or min(shape[1:]) < 1 or shape[1] * shape[2] > MAX_PIXELS:
        raise UserError(f"{spec}: the shape CxHxW needs C 1 or 3 and at most {MAX_PIXELS} pixels")
    return shape, Path(m[4])


def canonical_spec(spec: str, shape) -> str:
    """``spec`` with the size ``shape`` (C, H, W) written in, so that a later reader resizes alike."""
    _, root = parse_spec(spec)
    return f"{PREFIX}{shape[0]}x{shape[1]}x{shape[2]}:{root}"


def _classes(root: Path, least: int = 2) -> list[str]:
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist or is not a directory")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < least:
        raise UserError(f"image folder {root} has {len(names)} class sub-folder(s); a classifier needs at least 2")
    if len(names) > MAX_CLASSES:
        raise UserError(f"image folder {root} has {len(names)} sub-folders, more than {MAX_CLASSES} classes")
    return names


def _files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
                   and p.is_file())
    if not files:
        raise UserError(f"class folder {folder} has no PNG or JPEG images")
    return files


def _decode(path: Path, shape) -> np.ndarray:
    """One image as uint8 ``C x H x W`` (see the module docstring for the resize rule)."""
    from PIL import Image

    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UserError(f"{path}: {size} bytes is more than an image may have ({MAX_FILE_BYTES >> 20} MiB)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=("PNG", "JPEG")) as im:
                w, h = im.size
                if w * h > MAX_PIXELS or w < 1 or h < 1:
                    raise UserError(f"{path}: {w}x{h} pixels is more than an image may have ({MAX_PIXELS})")
                im.load()
                if im.mode.startswith("I;16"):         # 16-bit grey: its high 8 bits (Pillow would clip)
                    im = Image.fromarray((np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8), "L")
                mode = "RGB" if shape is None or shape[0] == 3 else "L"
                im = im.convert(mode)
                if shape is not None and (w, h) != (shape[2], shape[1]):
                    f = max(shape[1] / h, shape[2] / w)
                    nw, nh = max(shape[2], round(w * f)), max(shape[1], round(h * f))
                    im = im.resize((nw, nh), Image.Resampling.BILINEAR)
                    left, top = (nw - shape[2]) // 2, (nh - shape[1]) // 2
                    im = im.crop((left, top, left + shape[2], top + shape[1]))
                a = np.asarray(im, dtype=np.uint8)
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{path}: refused as a decompression bomb (too many pixels)") from None
    except Exception as e:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, zlib.error ...
        raise UserError(f"{path}: not a readable PNG or JPEG image ({type(e).__name__}: {str(e)[:80]})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _read(items: list[tuple[Path, int]], shape, what: str, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    out, first = None, None
    for i, (path, _) in enumerate(tqdm(items, desc=f"decoding {what}", unit="img", disable=not progress or len(items) < 200,
                                       leave=False)):
        a = _decode(path, shape)
        if out is None:
            first = path
            if len(items) * a.size > MAX_TOTAL_BYTES:
                raise UserError(f"{len(items)} images of {'x'.join(map(str, a.shape))} need {len(items) * a.size} bytes, "
                                f"more than {MAX_TOTAL_BYTES >> 20} MiB; give a smaller CxHxW")
            out = np.empty((len(items),) + a.shape, dtype=np.uint8)
        if a.shape != out.shape[1:]:
            raise UserError(f"{path} is {a.shape[2]}x{a.shape[1]}, {first} is {out.shape[3]}x{out.shape[2]}: give "
                            f"the size, imagefolder:CxHxW:DIR, to resize them alike")
        out[i] = a
    labels = np.array([y for _, y in items], dtype=np.int64)
    return out, labels


def _layout(root: Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Class names, training items and test items of ``root`` (the split rule of the module docstring)."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        names = _classes(root / "train")
        extra = set(_classes(root / "test", least=1)) - set(names)
        if extra:
            raise UserError(f"{root / 'test'} has class {sorted(extra)[0]!r}, which {root / 'train'} has not")
        train = [(p, y) for y, c in enumerate(names) for p in _files(root / "train" / c)]
        test = [(p, y) for y, c in enumerate(names) if (root / "test" / c).is_dir() for p in _files(root / "test" / c)]
        return names, train, test
    names = _classes(root)
    train, test = [], []
    for y, c in enumerate(names):
        for i, p in enumerate(_files(root / c)):
            (test if i % 5 == 4 else train).append((p, y))
    return names, train, test


def read_split(spec: str, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(x_train, y_train, x_test, y_test, class_names)`` of an image-folder spec (uint8 images)."""
    shape, root = parse_spec(spec)
    names, train, test = _layout(root)
    if not test:
        raise UserError(f"image folder {root} gives no test images (a class needs 5 images for one to be a test image)")
    xtr, ytr = _read(train, shape, "training images", progress)
    xte, yte = _read(test, shape, "test images", progress)
    if xtr.shape[1:] != xte.shape[1:]:
        raise UserError(f"image folder {root}: training and test images differ in size; give imagefolder:CxHxW:DIR")
    return xtr, ytr, xte, yte, names


def read_test(spec: str, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The test split only: uint8 images and int64 labels."""
    shape, root = parse_spec(spec)
    _, _, test = _layout(root)
    if not test:
        raise UserError(f"image folder {root} gives no test images")
    return _read(test, shape, "test images", progress)
