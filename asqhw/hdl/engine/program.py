"""Host side of the engine: a layer becomes memory images, term lists and a ``layer`` word.

Memory layouts (docs/engine.md):

- activation buffer: the zero-padded input ``xp[n][ci][y][x]`` (``Hp = H + 2 pad`` rows of
  ``Wp = W + 2 pad``), each row split into ``st`` phases of ``Wq = ceil(Wp/st)`` codes:
  address ``((n*C_in + ci)*Hp + y)*Wr + (x mod st)*Wq + x div st`` with ``Wr = st*Wq``.
  Then output column ``ox`` reads ``x = ox*st + kx`` at ``... + (kx mod st)*Wq + ox + kx div st``:
  neighbouring outputs read neighbouring addresses for every stride, which the banked
  buffer serves in one cycle. A linear layer is the 1x1 convolution of a ``1 x N`` image
  with ``K`` channels (``x.T``), so the lanes span the batch;
- term memory: per output channel, its entries back to back; an entry holds the activation
  offset ``((g*C_in/G + j)*Hp + ky)*Wr + (kx mod st)*Wq + kx div st`` of its term and the
  weight payload;
- channel memory: per channel its entry count, ``M``, ``B``, ``sh``;
- output buffer: ``y[c][n][oy][ox]`` in drain order.

Term lists. ``any``: the nonzero weights in ``(j, ky, kx)`` order with their codes.
``grouped``: every nonzero term gets a shift level ``s`` (pot: ``E_max - W``; split:
``S - floor(W/2)`` into accumulator ``W mod 2``; uniform: one term per set bit ``b`` of
``|q|``, ``s = b``); terms are sorted by decreasing ``s``; an entry with ``dbl`` doubles
the accumulators before adding ``+-A``; every drop of ``s`` by ``d`` costs ``d - 1``
shift-only entries (``zero``, ``dbl``) and the last level ``s_last`` costs ``s_last`` more,
so that each term ends shifted by exactly its ``s`` (Horner). A channel without nonzero
weights is one ``zero`` entry. ``grouped1`` (post split, one accumulator): the list of the
odd-exponent terms (``W mod 2 = 1``, ``acc_1``) built so, its last entry with ``park``
(bit 3, in place of ``k``), then the list of the even-exponent terms (``acc_0``); each list
is at least one entry (a ``zero`` entry when it has no term). The counts are what the
cycle model needs (:func:`channel_entry_counts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asqhw.core.errors import UserError
from asqhw.core.layershape import LayerShape

from .params import B_BITS, M_BITS, EngineConfig

__all__ = ["LayerShape", "shape_of_case", "term_levels", "channel_entries", "channel_entry_counts",
           "Program", "build_program", "pack_layer", "unpack_outputs"]


def shape_of_case(case) -> LayerShape:
    """The LayerShape of a golden case (``asqhw.core.vectors.Case``)."""
    layer, n = case.layer, case.manifest["batch"]
    if layer["kind"] == "linear":
        return LayerShape("linear", layer["in_features"], layer["out_features"], n=n)
    kh, kw = layer["kernel"]
    h, w = layer["in_size"]
    return LayerShape("conv2d", layer["in_channels"], layer["out_channels"], h=h, w=w, kh=kh, kw=kw,
                      stride=layer["stride"], pad=layer["padding"], groups=layer["groups"], n=n)


def term_levels(ecfg: EngineConfig, codes) -> list[tuple[int, int, int, int]]:
    """Grouped terms of one channel: ``(s, index, neg, k)`` per term, before sorting."""
    dp = ecfg.dp
    out = []
    for i, code in enumerate(int(v) for v in codes):
        if dp.fmt == "uniform":
            mag = abs(code)
            for b in range(mag.bit_length()):
                if mag >> b & 1:
                    out.append((b, i, int(code < 0), 0))
            continue
        m = code & ((1 << dp.m_bits) - 1)
        if not m:
            continue
        neg, w = code >> dp.m_bits, m - 1
        if dp.arch == "shift":
            out.append((dp.e_max - w, i, neg, 0))
        else:
            out.append((dp.frac_bits - w // 2, i, neg, w % 2))
    return out


def _nonzero(dp, code: int) -> bool:
    if dp.fmt == "uniform":
        return code != 0
    return bool(code & ((1 << dp.m_bits) - 1))


def channel_entries(ecfg: EngineConfig, codes, offsets) -> list[int]:
    """Term-memory words of one output channel (see the module docstring)."""
    pb = ecfg.payload_bits
    dp = ecfg.dp
    codes = [int(v) for v in codes]
    offsets = [int(v) for v in offsets]
    words = []
    if not ecfg.grouped:
        mask = (1 << dp.storage_bits) - 1
        for code, off in zip(codes, offsets):
            if _nonzero(dp, code):
                words.append((off << pb) | (code & mask))
        return words or [0]
    terms = sorted(term_levels(ecfg, codes), key=lambda t: (-t[0], t[1]))
    if ecfg.one_acc:        # grouped1: the odd-exponent (acc_1) list, parked, then the even one
        odd = _horner(pb, [t[:3] + (0,) for t in terms if t[3] == 1], offsets)
        even = _horner(pb, [t[:3] + (0,) for t in terms if t[3] == 0], offsets)
        odd[-1] |= 1 << 3
        return odd + even
    return _horner(pb, terms, offsets)


def _horner(pb: int, terms, offsets) -> list[int]:
    """Entries of sorted grouped terms ``(s, index, neg, k)``: each ends multiplied by ``2^s``."""
    zero_dbl = (1 << 1) | (1 << 2)
    words = []
    prev = None
    for s, i, neg, k in terms:
        dbl = 0
        if prev is not None and s < prev:
            words += [zero_dbl] * (prev - s - 1)
            dbl = 1
        words.append((offsets[i] << pb) | neg | (dbl << 2) | (k << 3))
        prev = s
    if prev is None:
        return [1 << 1]
    return words + [zero_dbl] * prev


def channel_entry_counts(ecfg: EngineConfig, w) -> list[int]:
    """Entries per output channel for weight codes ``w`` (``C_out x ...``)."""
    w = np.asarray(w).reshape(np.asarray(w).shape[0], -1)
    zeros = np.zeros(w.shape[1], dtype=np.int64)
    return [len(channel_entries(ecfg, row, zeros)) for row in w]


@dataclass
class Program:
    """Everything the host loads for one run, plus the expected output order."""

    shape: LayerShape
    layer: dict          # field values of EngineConfig.layer_layout()
    act: list[int]       # activation buffer image (raw b_a-bit patterns)
    terms: list[int]     # term memory image
    params: list[int]    # channel memory image
    counts: list[int]    # entries per channel


def _offsets(shape: LayerShape) -> np.ndarray:
    """Activation offset of every weight term, ``C_out x K`` in ``w[c].ravel()`` order."""
    g = shape.engine_geometry
    hp, wq, wr, st = g["hp"], g["wq"], g["wr"], g["stride"]
    cg = shape.c_in // shape.groups
    og = shape.c_out // shape.groups
    j, ky, kx = np.meshgrid(np.arange(cg), np.arange(shape.kh), np.arange(shape.kw), indexing="ij")
    local = ((j * hp + ky) * wr + (kx % st) * wq + kx // st).ravel()
    grp = np.arange(shape.c_out) // og
    return (grp[:, None] * cg * hp * wr) + local[None, :]


def build_program(ecfg: EngineConfig, shape: LayerShape, x, w, M, B, sh) -> Program:
    """Memory images of one layer run.

    Parameters
    ----------
    ecfg : EngineConfig
    shape : LayerShape
    x : ndarray
        Activation codes, ``N x K`` (linear) or ``N x C_in x H x W``.
    w : ndarray
        Weight codes as stored in the vector files, ``C_out x ...``.
    M, B, sh : ndarray
        Requantisation constants of section 6 (``C_out x n_acc``, ``C_out``, ``C_out``).
    """
    dp = ecfg.dp
    geo = shape.engine_geometry
    x = np.asarray(x, dtype=np.int64)
    if shape.kind == "linear":
        img = x.T.reshape(1, shape.c_in, 1, shape.n)
    else:
        p, st = shape.pad, geo["stride"]
        img = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p + geo["wr"] - geo["wp"])))
        n, c, hp, wr = img.shape
        img = img.reshape(n, c, hp, geo["wq"], st).transpose(0, 1, 2, 4, 3)
    act = (img.ravel() & ((1 << dp.a_bits) - 1)).tolist()
    wk = np.asarray(w, dtype=np.int64).reshape(shape.c_out, -1)
    offs = _offsets(shape)
    terms, counts = [], []
    for c in range(shape.c_out):
        entries = channel_entries(ecfg, wk[c], offs[c])
        terms += entries
        counts.append(len(entries))
    lanes = ecfg.lanes
    tiles_x = -(-geo["w_out"] // lanes)
    problems = []
    if len(act) > ecfg.act_depth:
        problems.append(f"{len(act)} activation codes > act_depth {ecfg.act_depth}")
    if len(terms) > ecfg.term_depth:
        problems.append(f"{len(terms)} term entries > term_depth {ecfg.term_depth}")
    if shape.out_words > ecfg.out_depth:
        problems.append(f"{shape.out_words} outputs > out_depth {ecfg.out_depth}")
    if shape.c_out > ecfg.max_channels:
        problems.append(f"{shape.c_out} channels > max_channels {ecfg.max_channels}")
    if max(geo["n_img"], geo["h_out"], tiles_x) >= 1 << 16:
        problems.append("a loop bound exceeds 16 bits")
    if problems:
        raise UserError(f"layer {shape.describe()} does not fit the engine: " + "; ".join(problems))
    M = np.asarray(M, dtype=np.int64).reshape(shape.c_out, -1)
    params = []
    cb = ecfg.count_bits
    for c in range(shape.c_out):
        word = counts[c]
        off = cb
        for k in range(ecfg.n_acc):
            word |= int(M[c, k]) << off
            off += M_BITS
        word |= (int(B[c]) & ((1 << B_BITS) - 1)) << off
        off += B_BITS
        word |= int(sh[c]) << off
        params.append(word)
    layer = {"n_chan": shape.c_out, "n_img": geo["n_img"], "h_out": geo["h_out"],
             "tiles_x": tiles_x, "last_lanes": geo["w_out"] - (tiles_x - 1) * lanes,
             "row_step": geo["stride"] * geo["wr"],
             "img_step": geo["c_in"] * geo["hp"] * geo["wr"]}
    return Program(shape, layer, act, terms, params, counts)


def pack_layer(ecfg: EngineConfig, layer: dict) -> int:
    """The ``layer`` port value of a field dict."""
    word = 0
    for name, field in ecfg.layer_layout():
        v = int(layer[name])
        if not 0 <= v < 1 << field.width:
            raise UserError(f"layer field {name} = {v} does not fit {field.width} bits")
        word |= v << field.offset
    return word


def unpack_outputs(shape: LayerShape, values) -> np.ndarray:
    """Output-buffer order ``[c][n][oy][ox]`` to the layer's ``y`` shape (``N x C_out ...``)."""
    v = np.asarray(values, dtype=np.int64)
    if shape.kind == "linear":
        return v.reshape(shape.c_out, shape.n).T
    return v.reshape(shape.c_out, shape.n, shape.h_out, shape.w_out).transpose(1, 0, 2, 3)
