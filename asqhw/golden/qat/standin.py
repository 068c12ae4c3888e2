"""A CIFAR-10-format stand-in: scikit-learn's 8x8 digits rendered into cluttered 32x32x3 images.

There is no CIFAR-10 on this machine and no network, so the deep-network recipes are measured on
a data set that is built here, seeded, in the exact CIFAR-10 python format (``data_batch_1`` ..
``data_batch_5``, ``test_batch`` and ``batches.meta``; each batch a pickled dict with ``data``:
uint8 ``N x 3072`` in R, G, B planes and ``labels``), so ``--data cifar10:DIR`` reads it.

Every image is one digit glyph of scikit-learn's digits (its label is the class), drawn as:

1. a dark background: a random grey level in [0, 0.45] with a random tint (up to 0.15 per
   channel) and a random linear colour gradient (up to 0.25 per channel across the frame);
2. one or two distractors in random colours of at most 0.7 per channel: a filled rectangle
   (probability 0.4), a straight stroke (0.4) or a fragment, a random 4x4 crop, of another glyph
   (0.2);
3. the glyph, bilinearly scaled to a random size of 18..28 pixels, centred up to 3 pixels off in
   each direction, brighter than the background by at least 0.45 (grey level), tinted;
4. a random global contrast (0.4..1) and brightness shift (-0.15..0.15), then Gaussian pixel
   noise with a random sigma (0..0.05), clipped to [0, 1] and rounded to uint8.

A first version with random polarity, free position (12..28 pixels) and full-colour clutter did
not train at all in 500 ResNet-20 steps (chance accuracy); this one starts learning within 60.
Training images use the glyphs of the digits training split, test images only the 360 glyphs of
the test split (``asqhw.core.datasets.digits_split``), so the test set holds unseen glyphs. Per
image contrast and scale vary by a factor of about three: activation magnitudes differ per
image, which is what a per-sample step (ASQ's ``beta``) can follow.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from asqhw.core import atomic
from asqhw.core.datasets import digits_split
from asqhw.core.errors import UserError

__all__ = ["render_standin", "write_standin", "BATCHES", "SIZE"]

SIZE = 32
BATCHES = 5
LABEL_NAMES = [f"digit{i}" for i in range(10)]


def _scaled(glyph: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resampling of a square glyph (values in [0, 1]) to ``size x size``."""
    n = glyph.shape[0]
    c = (np.arange(size) + 0.5) * n / size - 0.5
    c = np.clip(c, 0.0, n - 1.0)
    i0 = np.floor(c).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    f = c - i0
    rows = glyph[i0] * (1 - f)[:, None] + glyph[i1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i1] * f[None, :]


def _paste(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray, top: int, left: int) -> None:
    """Blend ``colour`` into ``img`` (H x W x 3) with mask ``alpha`` placed at (top, left), clipped to the frame."""
    h, w = alpha.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, SIZE), min(left + w, SIZE)
    if y1 <= y0 or x1 <= x0:
        return
    a = alpha[y0 - top:y1 - top, x0 - left:x1 - left, None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + colour * a


def _tinted(rng: np.random.Generator, grey: float) -> np.ndarray:
    """A colour of grey level about ``grey`` with a random tint of up to 0.15 per channel."""
    return np.clip(grey + rng.uniform(-0.15, 0.15, 3), 0.0, 1.0)





def _distractor(rng: np.random.Generator, img: np.ndarray, glyphs: np.ndarray) -> None:
    colour = rng.uniform(0.0, 0.7, 3)
    kind = rng.choice(3, p=[0.4, 0.4, 0.2])
    if kind == 0:                                    # filled rectangle
        h, w = rng.integers(3, 11, 2)
        _paste(img, np.ones((h, w)), colour, int(rng.integers(-2, SIZE - 2)), int(rng.integers(-2, SIZE - 2)))
    elif kind == 1:                                  # straight stroke, 1-2 pixels wide
        y0, x0, y1, x1 = rng.uniform(0, SIZE, 4)
        t = np.linspace(0.0, 1.0, 64)
        ys = np.clip(np.round(y0 + (y1 - y0) * t).astype(int), 0, SIZE - 1)
        xs = np.clip(np.round(x0 + (x1 - x0) * t).astype(int), 0, SIZE - 1)
        img[ys, xs] = colour
        if rng.random() < 0.5:
            img[np.minimum(ys + 1, SIZE - 1), xs] = colour
    else:                                            # a fragment of another glyph
        g = glyphs[rng.integers(0, len(glyphs))]
        r, c = rng.integers(0, 5, 2)
        frag = _scaled(g[r:r + 4, c:c + 4], int(rng.integers(6, 13)))
        _paste(img, frag, colour, int(rng.integers(-3, SIZE - 3)), int(rng.integers(-3, SIZE - 3)))


def _render_one(rng: np.random.Generator, glyph: np.ndarray, glyphs: np.ndarray) -> np.ndarray:
    grey = float(rng.uniform(0.0, 0.45))
    bg = _tinted(rng, grey)
    ramp = rng.uniform(-0.25, 0.25, (2, 3))          # colour change over the frame, per axis
    t = np.linspace(-0.5, 0.5, SIZE)
    img = bg + t[:, None, None] * ramp[0] + t[None, :, None] * ramp[1]
    for _ in range(int(rng.integers(1, 3))):
        _distractor(rng, img, glyphs)
    size = int(rng.integers(18, 29))
    centre = (SIZE - size) // 2
    top, left = (int(v) for v in centre + rng.integers(-3, 4, 2))
    _paste(img, _scaled(glyph, size), _tinted(rng, rng.uniform(grey + 0.45, 1.0)), top, left)
    mean = img.mean()
    img = mean + rng.uniform(0.4, 1.0) * (img - mean) + rng.uniform(-0.15, 0.15)
    img = img + rng.normal(0.0, rng.uniform(0.0, 0.05), img.shape)
    return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def render_standin(train: int = 10000, test: int = 2000, seed: int = 0, progress=None):
    """Render the stand-in in memory.

    Parameters
    ----------
    train, test : int
        Image counts (``train`` is split into :data:`BATCHES` batches).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same bytes.
    progress : callable, optional
        Called as ``progress(done, total)`` every 500 images.

    Returns
    -------
    tuple
        ``(x_train, y_train, x_test, y_test)``: uint8 ``N x 3072`` (CIFAR layout, planes R, G, B)
        and int64 labels.
    """
    if train < BATCHES or test < 1:
        raise UserError(f"the stand-in needs at least {BATCHES} training and 1 test image, not {train} and {test}")
    xtr, ytr, xte, yte = digits_split()
    rng = np.random.default_rng(seed)
    total = train + test
    out = []
    for n, glyphs, labels in ((train, xtr[:, 0], ytr), (test, xte[:, 0], yte)):
        pick = rng.integers(0, len(labels), n)
        x = np.empty((n, 3072), dtype=np.uint8)
        for i, k in enumerate(pick):
            x[i] = _render_one(rng, glyphs[k], glyphs).transpose(2, 0, 1).reshape(-1)
            done = i + 1 + (0 if n == train else train)
            if progress is not None and (done % 500 == 0 or done == total):
                progress(done, total)
        out += [x, labels[pick].astype(np.int64)]
    return tuple(out)


def _batch_bytes(name: str, x: np.ndarray, y: np.ndarray) -> bytes:
    return pickle.dumps({b"batch_label": name.encode(), b"data": x, b"labels": [int(v) for v in y]}, protocol=2)


def write_standin(directory, train: int = 10000, test: int = 2000, seed: int = 0, force: bool = False,
                  progress=None) -> Path:
    """Render the stand-in and write it to ``directory`` in the CIFAR-10 python format.

    Every file is checked before anything is rendered; an existing file is kept unless ``force``.
    """
    root = Path(directory)
    names = [f"data_batch_{i}" for i in range(1, BATCHES + 1)] + ["test_batch", "batches.meta"]
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a directory")
    for name in names:
        atomic.check_target(root / name, force)
    x, y, xt, yt = render_standin(train, test, seed, progress)
    atomic.ensure_dir(root)
    bounds = np.linspace(0, train, BATCHES + 1).astype(int)
    for i in range(BATCHES):
        a, b = bounds[i], bounds[i + 1]
        atomic.write_bytes(root / names[i], _batch_bytes(names[i], x[a:b], y[a:b]), force)
    atomic.write_bytes(root / "test_batch", _batch_bytes("test_batch", xt, yt), force)
    meta = {b"label_names": [n.encode() for n in LABEL_NAMES], b"num_cases_per_batch": int(bounds[1]),
            b"num_vis": 3072}
    atomic.write_bytes(root / "batches.meta", pickle.dumps(meta, protocol=2), force)
    return root
