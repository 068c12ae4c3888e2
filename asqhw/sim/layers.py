"""Layer accumulators (docs/datapath.md sections 5 and 8): conv2d and linear.

Three interchangeable paths compute the same integers:

- ``exact``: a direct integer convolution that looks every product up in
  :func:`sim.codes.product_table`; always applicable.
- ``gemm``: im2col of transformed activations plus a float GEMM (BLAS), used
  only when a bound proves every partial sum an exactly representable integer
  (docs/sim.md, "Exactness of the GEMM path"); the fan-in is cut into chunks
  so that the bound holds per chunk, and chunk sums are added in int64; single
  identity terms may be centred (``A - c``, "Centred activations").
- ``int``: the same separable terms (terms above 255 split into bytes) as integer
  operands with int32 sums: for uint8 activation terms and int8 weights the direct
  convolution kernels of :mod:`sim.direct` (byte SIMD, no im2col), else an integer
  im2col and ``gemm_i16``; used only when every operand fits int16 and every output's
  sum of ``|a*w|`` is below ``2^31`` (docs/sim.md, "Integer GEMM path", "Direct
  convolution kernels").

``method="auto"`` takes the direct kernels whenever they apply (and the layer is not
tiny), the portable int kernel for long mul/shift fan-ins over few positions, else
``gemm`` when its proof goes through, else ``exact``."""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache

import numba
import numpy as np

from asqhw.core.errors import UserError
from asqhw.core.params import MAX_ACC_BITS, Datapath

from . import direct, kernels, netops, simd
from .codes import product_table, product_terms

__all__ = ["conv2d", "linear", "Conv2d", "GemmPlan", "METHODS", "F32_EXACT", "F64_EXACT"]

METHODS = ("auto", "exact", "gemm", "int")
F32_EXACT = 1 << 24   # every integer of magnitude <= 2^24 is a float32
F64_EXACT = 1 << 53   # every integer of magnitude <= 2^53 is a float64
COL_BLOCK_BYTES = 8 << 20   # im2col block size: images are processed in blocks of about this many bytes
PACK_BITS = (6, 16)           # packing widths b tried for split (S0 + 2^b * S1 in one float32)
PACK_MAX_TERM = 1 << 12       # pack only when every term is at most this large
MIN_PACKED_CHUNK = 32         # packed chunks shorter than this on average: two-row GEMM instead
PACK_SAVED_S_PER_MAC = 1 / 40e9    # rough cost model of the packed split plan (one thread, seconds)
PACK_CALL_S = 5e-6
PACK_EXTRACT_S_PER_OUT = 0.4e-9
MIN_SHARE_MACS = 1 << 22      # GEMM multiply-adds per call below which one thread runs the whole layer
RES_BLOCK_BYTES = 1 << 20     # GEMM results gathered per accumulate call
MIN_CHUNK = 128       # float32 chunks shorter than this on average: take float64 instead
CENTRE_MODE = "auto"  # centred activations on the float path: "auto" (when the plan gets cheaper), "always", "never"
CENTRE_MIN_CHUNKS = 4   # auto: centre only plans with at least this many fan-in chunks (saving calls pays there)
I16_MAX = (1 << 15) - 1       # int path: every operand of magnitude <= this fits int16
I32_LIMIT = 1 << 31           # int path: every output's sum of |a*w| must stay below this
INT_TILE_BYTES = 64 << 10     # int path: im2col rows per parallel tile, in bytes
INT_K_ALIGN = 64              # int path: fan-in padded with zeros to a multiple of this (whole vectors)
INT_AUTO_ARCHS = ("mul", "shift")   # auto: int path only for these (split needs 2*C_out rows, lut int16 operands)
INT_MIN_FAN_IN = 1024         # auto: int path only for at least this many GEMM rows (fan-in * terms) ...
INT_MAX_COLS = 1024           # ... and at most this many output positions (N * H_o * W_o); see docs/sim.md
SIMD_ORDER = ("vnni512", "vnni256", "avx2")   # direct byte kernels (sim.direct), fastest measured first
SIMD_MODE = "auto"            # "auto": the first of SIMD_ORDER the CPU has and the bounds allow; a variant name; "none"
DIRECT_SHARE_MACS = 1 << 24   # direct path: below this many multiply-adds (padded) one thread runs the call
DIRECT_ROW_SPLIT = 256        # direct path: calls with at most this many positions are cut by row blocks, not positions
DIRECT_GEOMETRIES = 4         # direct path: call geometries (batch, size, threads) whose shares and buffers are kept
DIRECT_BLOCK_BYTES = 32 << 20  # direct path: images per block so that one block's byte planes stay near this size


def _wrap_int(v: int, n: int) -> int:
    return ((v + (1 << (n - 1))) & ((1 << n) - 1)) - (1 << (n - 1))


@lru_cache(maxsize=64)
def _exact_tab(dp: Datapath) -> np.ndarray:
    """Products modulo 2^64 as uint64 (the exact kernel sums them in uint64)."""
    return np.ascontiguousarray(product_table(dp).transpose(0, 2, 1)).view(np.uint64)


@lru_cache(maxsize=64)
def _term_tables(dp: Datapath, nbits: int):
    """Activation transforms ``g`` (int64, (n_t, n_a)) and weight values ``v`` ((n_t, n_acc, n_w)).

    ``v`` is reduced modulo ``2^nbits`` into the signed range: the products are only
    needed modulo ``2^nbits``, and ``g*v`` reduced that way is congruent to ``g*v``.
    Entries that do not fit int64 after the reduction cannot occur (``nbits <= 40``);
    ``g`` is at most ``2^8 * 2^16`` in magnitude.
    """
    terms = product_terms(dp)
    g = np.array([t[0] for t in terms], dtype=np.int64)
    v = np.array([[[_wrap_int(e, nbits) for e in row] for row in t[1]] for t in terms], dtype=np.int64)
    return g, v


BYTE_SPLIT = 64      # int path: a non-negative term above 255 is split into g % 64 and g // 64 (weights v, 64 v)


def _linear_part(g, v, a0, nbits):
    """Move the largest linear part ``k_t * A`` of every non-negative term into the identity term.

    For unsigned codes (``a0 >= 0``) and a term with ``g_t(0) = 0`` and ``g_t >= 0``, let
    ``k_t = min over A >= 1 of floor(g_t(A) / A)``. Then ``g_t(A) * v_t = A * (k_t v_t) +
    e_t(A) * v_t`` with ``e_t = g_t - k_t A >= 0``: the identity term's weights become ``v_0 +
    sum_t k_t v_t`` (reduced modulo ``2^nbits`` into the signed range like ``v``) and ``g_t``
    becomes ``e_t``. For ``lut`` (``g_t(A) = LUT[W][A]``, about ``A * 2^(F - W/2)``) the
    residues are at most about ``A``: 4-bit codes give bytes without a split. Terms whose
    residue is 0 everywhere are dropped. Returns ``g, v`` unchanged when there is no
    identity term or the codes are signed.
    """
    n_a = g.shape[1]
    codes = np.arange(a0, a0 + n_a, dtype=np.int64)
    ident = [t for t in range(g.shape[0]) if (g[t] == codes).all()]
    if a0 < 0 or not ident:
        return g, v
    i0 = ident[0]
    g, v = g.copy(), v.copy()
    pos = codes > 0
    for t in range(g.shape[0]):
        if t == i0 or not pos.any() or g[t][codes == 0].any() or g[t].min() < 0:
            continue
        k = int((g[t][pos] // codes[pos]).min())
        if k <= 0:
            continue
        g[t] = g[t] - k * codes
        v[i0] = np.array([[_wrap_int(int(a) + k * int(b), nbits) for a, b in zip(r0, rt)]
                          for r0, rt in zip(v[i0], v[t])], dtype=np.int64)
    keep = [t for t in range(g.shape[0]) if t == i0 or g[t].any()]     # a residue of 0 everywhere adds nothing
    return g[keep], v[keep]


def _split_bytes(g, v, nbits):
    """Every term above 255 split in two bytes: ``g % 64`` (weights ``v``) and ``g // 64`` (weights ``64 v``).

    ``g * v = (g % 64) * v + (g // 64) * (64 v)`` for ``g >= 0`` (``64 v`` reduced modulo
    ``2^nbits`` into the signed range like ``v``). Only done when every ``g`` is non-negative
    and below ``2^14`` (``g // 64 <= 255``); otherwise the terms are returned as they are.
    """
    big = [t for t in range(g.shape[0]) if int(g[t].max(initial=0)) > 255]
    if not big or int(g.min(initial=0)) < 0 or int(g.max(initial=0)) >= 1 << 14:
        return g, v
    gs, vs = [], []
    for t in range(g.shape[0]):
        if t in big:
            gs += [g[t] % BYTE_SPLIT, g[t] // BYTE_SPLIT]
            vs += [v[t], np.array([[_wrap_int(int(e) * BYTE_SPLIT, nbits) for e in row] for row in v[t]],
                                  dtype=np.int64)]
        else:
            gs.append(g[t])
            vs.append(v[t])
    return np.array(gs, dtype=np.int64), np.array(vs, dtype=np.int64)


@lru_cache(maxsize=64)
def _byte_terms(dp: Datapath, nbits: int):
    """The int path's terms: ``_term_tables`` after :func:`_linear_part` and :func:`_split_bytes`.

    For ``lut`` with 4-bit or 8-bit unsigned codes this gives four byte terms (``A`` and
    three residues for ``E_max = 6``).
    """
    g, v = _term_tables(dp, nbits)
    return _split_bytes(*_linear_part(g, v, dp.a_range[0], nbits), nbits)


@dataclass(frozen=True)
class GemmPlan:
    """How the GEMM path computes one layer exactly.

    ``dtype`` is the float type of the GEMM, ``limit`` its exactness bound
    (``2^24`` or ``2^53``), ``chunks`` the end indices (over the ``n_terms * K``
    GEMM rows) of the fan-in chunks of each group. ``pack_bits = b > 0`` (``split``
    only) means both accumulators come from one GEMM with weights ``v0 + 2^b * v1``.
    ``centre = c != 0`` (single identity term: ``mul``, ``shift``, ``split``) means the
    GEMM reads ``A - c`` instead of ``A`` (0 in the padding) and the exact correction
    ``c * sum of v over the valid taps`` is added per output position before the wrap.
    """

    dtype: type
    limit: int
    chunks: tuple
    pack_bits: int = 0
    centre: int = 0


def _conv_exact(x, w, dp, stride, pad, groups, nbits, ho, wo):
    out = np.empty((dp.n_acc, x.shape[0], w.shape[0], ho, wo), dtype=np.int64)
    tab = _exact_tab(dp)
    work = x.shape[0] * w.size * ho * wo

    def part(r0, r1):
        kernels.conv_exact(x, w, tab, dp.a_range[0], dp.w_range[0], stride, pad, groups, nbits, out, r0, r1)

    _in_ranges(part, x.shape[0] * w.shape[0], work)
    return out


class _GemmWeights:
    """The weight side of the GEMM path, prepared once per weight tensor."""

    def __init__(self, w16, dp, groups, nbits, terms=None):
        self.dp, self.groups, self.nbits = dp, groups, nbits
        self.g_tab, v = _term_tables(dp, nbits) if terms is None else terms
        self.v = v
        c_out = w16.shape[0]
        self.cg_out = c_out // groups
        idx = (w16.astype(np.int64) - dp.w_range[0]).reshape(groups, self.cg_out, -1)
        self.codes = [np.ascontiguousarray(idx[g]) for g in range(groups)]
        self.k = idx.shape[2]
        self.n_t = v.shape[0]
        vabs = np.abs(v)
        self.l1 = []                                  # per group: (n_t, rows) int64, saturating
        for c in self.codes:
            out = np.empty((self.n_t, dp.n_acc * self.cg_out), dtype=np.int64)
            kernels.term_l1(c, vabs, out)
            self.l1.append(out)
        used = np.zeros(v.shape[2], dtype=bool)
        used[np.unique(idx)] = True
        self.used = used
        self.vabs_used = vabs[:, :, used]             # (n_t, n_acc, n_used)
        self._mats = {}
        self._plans = {}
        self._int_ok = {}

    def int_exact(self, t_max):
        """True when the int16 GEMM with int32 sums is exact for term magnitudes ``t_max``.

        Every activation term (``T_t``) and every used weight value must fit int16, and
        ``sum_t T_t * L1_t(row) < 2^31`` for every output row (exact int64 arithmetic:
        the L1 norms are capped at ``2^32``, so each product is below ``2^47``).
        """
        key = tuple(int(t) for t in t_max)
        if key not in self._int_ok:
            t = np.array(key, dtype=np.int64)
            ok = int(t.max(initial=0)) <= I16_MAX and int(self.vabs_used.max(initial=0)) <= I16_MAX
            for l1 in self.l1 if ok else ():
                if int((t @ np.minimum(l1, np.int64(1) << 32)).max(initial=0)) >= I32_LIMIT:
                    ok = False
            self._int_ok[key] = ok
        return self._int_ok[key]

    def int_matrices(self):
        """Integer weights per group, ``(R4, K*n_t)``: row ``k*C_g + c``, zero rows up to a multiple of 4.

        int8 when every used value fits it (half the memory traffic), else int16.
        """
        if "int" not in self._mats:
            used = self.v[:, :, self.used]
            dtype = np.int8 if used.size == 0 or (used.min() >= -128 and used.max() <= 127) else np.int16
            rows = self.dp.n_acc * self.cg_out
            vi = self.v.astype(dtype)              # the used values fit (int_exact); others are never read
            mats = []
            for c in self.codes:
                m = np.zeros(((rows + 3) // 4 * 4, _k_pad(self.k * self.n_t)), dtype=dtype)
                kernels.weight_matrix(c, vi, m[:rows, :self.k * self.n_t])
                mats.append(m)
            self._mats["int"] = mats
        return self._mats["int"]

    def packed_matrices(self, bits):
        """float32 GEMM weights ``v0 + 2^bits * v1`` of a ``split`` layer, one row per channel."""
        if bits not in self._mats:
            packed = self.v[:, 0] + (self.v[:, 1] << bits)            # (1, n_w)
            vf = packed[:, None, :].astype(np.float32)
            mats = []
            for c in self.codes:
                out = np.empty((self.cg_out, self.k), dtype=np.float32)
                kernels.weight_matrix(c, vf, out)
                mats.append(out)
            self._mats[bits] = mats
        return self._mats[bits]

    def _packed_plan(self, t_max):
        """A packed float32 plan for ``split`` (fewest chunks over the packing widths), or None."""
        if self.dp.arch != "split" or int(t_max[0]) * int(np.abs(self.v).max()) > PACK_MAX_TERM:
            return None
        vabs = np.abs(self.v[0]) * t_max[0]                              # (2, n_w)
        best = None
        for bits in range(PACK_BITS[0], PACK_BITS[1] + 1):
            chunks = []
            for codes in self.codes:
                b0 = np.ascontiguousarray(vabs[0][codes].T)
                b1 = np.ascontiguousarray(vabs[1][codes].T)
                ends = kernels.chunk_ends_packed(b0, b1, (1 << (bits - 1)) - 1, 1 << bits, F32_EXACT)
                if ends.size == 0:
                    break
                chunks.append(tuple(int(e) for e in ends))
            else:
                n = max(len(c) for c in chunks)
                if best is None or n < best[0]:
                    best = (n, bits, tuple(chunks))
        if best is None or best[0] * MIN_PACKED_CHUNK > self.k:
            return None
        # the chunk sums are added in float32: each accumulator's whole-fan-in bound must fit too
        for l1 in self.l1:
            if int(t_max[0]) * int(l1.max(initial=0)) > F32_EXACT:
                return None
        return GemmPlan(np.float32, F32_EXACT, best[2], best[1])

    def matrices(self, dtype):
        if dtype not in self._mats:
            vf = self.v.astype(dtype)
            mats = []
            for c in self.codes:
                out = np.empty((self.dp.n_acc * self.cg_out, self.k * self.n_t), dtype=dtype)
                kernels.weight_matrix(c, vf, out)
                mats.append(out)
            self._mats[dtype] = mats
        return self._mats[dtype]

    def plan(self, t_max, cols=None):
        """The exact GEMM plan for activations whose term magnitudes are at most ``t_max``, or None.

        ``cols`` (GEMM columns per call) decides whether a packed ``split`` plan
        pays: it saves half the multiply-adds but costs a call and an extraction
        pass per chunk. None prefers the packed plan when there is one.
        """
        key = tuple(int(t) for t in t_max)
        if key not in self._plans:
            t = np.array(key, dtype=np.int64)
            self._plans[key] = (self._packed_plan(t), self._make_plan(t))
        packed, plain = self._plans[key]
        if packed is None:
            return plain
        if cols is None:
            return packed
        n_chunks = sum(len(c) for c in packed.chunks)
        saved = self.cg_out * self.groups * self.k * cols * PACK_SAVED_S_PER_MAC
        cost = n_chunks * (PACK_CALL_S + self.cg_out * cols * PACK_EXTRACT_S_PER_OUT)
        return packed if cost < saved else plain

    def _make_plan(self, t_max):
        # bound of one fan-in position (all its terms) per weight code and accumulator
        cost = np.einsum("t,tkw->kw", t_max, np.abs(self.v))             # each T_t * abs(v_t) <= 2^47
        biggest = int(np.einsum("t,tkw->kw", t_max, self.vabs_used).max(initial=0))
        tf = t_max.astype(np.float64)
        for dtype, limit in ((np.float32, F32_EXACT), (np.float64, F64_EXACT)):
            if biggest > limit:
                continue
            chunks = []
            for codes, l1 in zip(self.codes, self.l1):
                total = tf @ l1.astype(np.float64)                          # relative error < 2^-49
                if total.max(initial=0.0) * (1 + 2.0**-40) <= limit:
                    chunks.append((self.k * self.n_t,))
                    continue
                pos = np.empty((self.k, codes.shape[0] * self.dp.n_acc), dtype=np.int64)
                kernels.position_bounds(codes, cost, pos)
                chunks.append(tuple(int(e) * self.n_t for e in kernels.chunk_ends(pos, limit)))
            n_chunks = max(len(c) for c in chunks)
            if dtype is np.float32 and n_chunks > 1 and n_chunks * MIN_CHUNK > self.k:
                continue                                                     # many short chunks: float64 is faster
            return GemmPlan(dtype, limit, tuple(chunks))
        return None


def _plan_cost(plan):
    """Rough order of plans: float64 after float32, two-row split after packed, then more chunks after fewer."""
    return (np.dtype(plan.dtype).itemsize, plan.pack_bits == 0, sum(len(c) for c in plan.chunks))


def _images_per_block(nb, rows, npos, itemsize):
    """Images per im2col block: keep one block near COL_BLOCK_BYTES."""
    return max(1, min(nb, COL_BLOCK_BYTES // (rows * npos * itemsize)))


class Conv2d:
    """A conv2d layer with its weights prepared once; call it on activation codes.

    Same parameters and result as :func:`conv2d`, with the weights bound at
    construction (the GEMM weight matrices and their norms are built on first use
    and kept, as a float framework keeps float weights).
    """

    def __init__(self, w, dp: Datapath, *, stride: int = 1, padding: int = 0, groups: int = 1,
                 acc_bits: int | None = None, method: str = "auto"):
        if not isinstance(dp, Datapath):
            raise UserError(f"dp must be an asqhw.core.params.Datapath, not {type(dp).__name__}")
        if method not in METHODS:
            raise UserError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        w = _codes(w, "weight", 4)
        self.dp, self.method = dp, method
        self.stride = _check_int("stride", stride, 1)
        self.padding = _check_int("padding", padding, 0)
        self.groups = _check_int("groups", groups, 1)
        c_out, cg_in, kh, kw = w.shape
        if c_out % self.groups or min(c_out, cg_in, kh, kw) < 1:
            raise UserError(f"weights of shape {w.shape} do not fit groups={self.groups}")
        self.fan_in = cg_in * kh * kw
        natural = dp.natural_acc_bits(self.fan_in)
        if acc_bits is None:
            if natural > MAX_ACC_BITS:
                raise UserError(f"natural accumulator width is {natural} bits (> {MAX_ACC_BITS}); give acc_bits")
            self.acc_bits = natural
        else:
            self.acc_bits = _check_int("acc_bits", acc_bits, 2)
            if self.acc_bits > MAX_ACC_BITS:
                raise UserError(f"acc_bits must be in 2..{MAX_ACC_BITS}, not {self.acc_bits}")
        nbad = dp.check_weight_codes_valid(w.astype(np.int64))
        if nbad:
            raise UserError(f"{nbad} weight code(s) out of range for {dp.w_bits}-bit {dp.fmt}")
        self.w16 = np.ascontiguousarray(w, dtype=np.int16)
        self._gemm = None
        self._int = None
        self._scratch = None
        self._corr = {}
        self._operands = {}
        # per (variant, spread): direct.DirectWeights; per (variant, spread, N, H_o, W_o, shares, by rows): the shares
        self._direct = {}

    def _int_weights(self):
        """The weight side of the int path: the float path's unless ``_byte_terms`` changes the terms."""
        if self._int is None:
            g, v = _byte_terms(self.dp, self.acc_bits)
            fl = self._gemm_weights()
            same = g.shape == fl.g_tab.shape and (g == fl.g_tab).all() and v.shape == fl.v.shape and (v == fl.v).all()
            self._int = self._gemm if same else _GemmWeights(self.w16, self.dp, self.groups, self.acc_bits, (g, v))
        return self._int

    def _gemm_weights(self):
        if self._gemm is None:
            self._gemm = _GemmWeights(self.w16, self.dp, self.groups, self.acc_bits)
        return self._gemm

    def plan(self, xmin: int, xmax: int, cols: int | None = None) -> GemmPlan | None:
        """The GEMM plan proved exact for activation codes in ``[xmin, xmax]``, or None.

        ``cols``: GEMM columns per call (images per block times ``H_o*W_o``), used
        to choose between the packed and the two-row ``split`` plan; None prefers packing.
        """
        gw = self._gemm_weights()
        a0 = self.dp.a_range[0]
        lo, hi = min(xmin, 0) - a0, max(xmax, 0) - a0
        plain = gw.plan(np.abs(gw.g_tab[:, lo:hi + 1]).max(axis=1), cols)
        centre = (xmin + xmax) // 2
        if CENTRE_MODE == "never" or self.dp.arch == "lut" or centre == 0:
            return plain
        # A - centre for the codes in [xmin, xmax], 0 in the padding (docs/sim.md, "Centred activations")
        t_c = max(abs(xmin - centre), abs(xmax - centre))
        centred = gw.plan(np.array([t_c], dtype=np.int64), cols)
        if centred is None:
            return plain
        centred = replace(centred, centre=centre)
        if CENTRE_MODE == "always" or plain is None:
            return centred
        if max(len(c) for c in plain.chunks) < CENTRE_MIN_CHUNKS:
            return plain                     # few chunks: the shifted copy and the correction cost more than they save
        return centred if _plan_cost(centred) < _plan_cost(plain) else plain

    def int_exact(self, xmin: int, xmax: int) -> bool:
        """True when the integer GEMM path is proved exact for activation codes in ``[xmin, xmax]``."""
        gw = self._int_weights()
        a0 = self.dp.a_range[0]
        lo, hi = min(xmin, 0) - a0, max(xmax, 0) - a0
        return gw.int_exact(np.abs(gw.g_tab[:, lo:hi + 1]).max(axis=1))

    def __call__(self, x) -> np.ndarray:
        return self._compute(x, None)

    def _compute(self, x, fused):
        """The accumulators, or with ``fused = (rq, lo, hi)`` the requantised codes (:meth:`requantized`)."""
        dp, w = self.dp, self.w16
        x = _codes(x, "activation", 4)
        nb, c_in, h, wd = x.shape
        c_out, cg_in, kh, kw = w.shape
        st, pad, groups = self.stride, self.padding, self.groups
        if c_in != cg_in * groups:
            raise UserError(f"input has {c_in} channels, the weights expect {cg_in * groups} (groups={groups})")
        if h + 2 * pad < kh or wd + 2 * pad < kw:
            raise UserError(f"kernel {kh}x{kw} does not fit the padded {h}x{wd} input")
        a_lo, a_hi = dp.a_range
        xmin, xmax = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if xmin < a_lo or xmax > a_hi:
            raise UserError(f"activation codes span [{xmin}, {xmax}], outside [{a_lo}, {a_hi}]")
        ho, wo = (h + 2 * pad - kh) // st + 1, (wd + 2 * pad - kw) // st + 1
        x16 = np.ascontiguousarray(x, dtype=np.int16)
        method = self.method
        cg_out = c_out // groups
        if method == "auto" and (cg_out < 8 or self.fan_in * cg_out * nb * ho * wo < 1 << 16):
            method = "exact"
        if method in ("auto", "int"):
            variant = self.simd_variant(xmin, xmax)
            if variant is not None:
                table = None if fused is None else _rq_table(*fused)
                return self._run_direct(x16, xmin, xmax, ho, wo, variant, table)
        if fused is not None:                             # no fused store on the other paths
            acc = self._compute(x, None)
            y = np.empty((nb, c_out, ho * wo), dtype=np.int16)
            netops.requant_layer(acc.reshape(dp.n_acc, nb, c_out, -1), *fused, y, 0, nb * c_out)
            return y.reshape(nb, c_out, ho, wo)
        # auto: the portable int kernel where it measured faster than the float GEMM: mul/shift layers
        # of a long fan-in and few positions (docs/sim.md, "Integer GEMM path")
        try_int = method == "int" or (method == "auto" and dp.arch in INT_AUTO_ARCHS and nb * ho * wo <= INT_MAX_COLS
                                      and self.fan_in * len(product_terms(dp)) >= INT_MIN_FAN_IN)
        if try_int:
            if self.int_exact(xmin, xmax):
                return self._run_int(x16, xmin, xmax, ho, wo)
            if method == "int":
                raise UserError("the integer GEMM is not provably exact for these codes; use method='exact'")
        if method != "exact":
            gw = self._gemm_weights()
            blk = _images_per_block(nb, gw.n_t * gw.k, ho * wo, 4)   # GEMM columns per call (float32 block)
            plan = self.plan(xmin, xmax, blk * ho * wo)
            if plan is not None:
                return self._run_gemm(x16, plan, ho, wo)
            if method == "gemm":
                raise UserError("no float GEMM is provably exact for these codes; use method='exact'")
        return _conv_exact(x16, w, dp, st, pad, groups, self.acc_bits, ho, wo)

    def requantized(self, x, m, b, sh, beta, fb, lo, hi) -> np.ndarray:
        """The layer's requantised codes (docs/datapath.md sections 6 and 11) without keeping its accumulators.

        ``m`` int64 ``(C_out, n_acc)``, ``b``, ``sh`` ``(C_out,)``, ``beta`` ``(N,)`` with ``fb``
        fraction bits (all 1 and 0 for a layer without ASQ), ``lo``, ``hi`` the output range;
        returns int16 ``(N, C_out, H_o, W_o)``, equal to ``sim.netops.requant_layer`` of
        ``self(x)``. On the direct path the requantisation runs in the store of each chunk
        (``direct.requant_rows``), so the int64 accumulators are never written; elsewhere
        the accumulators are computed and requantised.
        """
        m, b, sh, beta = (np.ascontiguousarray(a, dtype=np.int64) for a in (m, b, sh, beta))
        return self._compute(x, (m, b, sh, beta, int(fb), int(lo), int(hi)))

    def _run_gemm(self, x, plan, ho, wo):
        # Work sharing (docs/sim.md, "Threads"): the layer is cut into one share per thread;
        # every share writes its own im2col rows, then computes its own slice (output rows or
        # columns) of every GEMM with single-threaded BLAS and unpacks it, all with the GIL
        # released. No thread pool ever waits (spinning) while another one runs, which had
        # made alternating numba and OpenBLAS pools up to 100x slower on this machine.
        gw = self._gemm_weights()
        bits = plan.pack_bits
        mats = gw.packed_matrices(bits) if bits else gw.matrices(plan.dtype)
        nb = x.shape[0]
        c_out, cg_in, kh, kw = self.w16.shape
        n_acc, cg_out = self.dp.n_acc, gw.cg_out
        res_rows = cg_out if bits else n_acc * cg_out
        npos = ho * wo
        out = np.empty((n_acc, nb, c_out, npos), dtype=np.int64)
        g_f = gw.g_tab.astype(plan.dtype)
        corr = np.zeros((0, 0, 0), dtype=np.uint64)
        if plan.centre:
            a0 = self.dp.a_range[0]
            g_f[0] = np.arange(a0, a0 + g_f.shape[1]) - plan.centre      # identity term: A - centre
            corr = self._centre_correction(plan.centre, x.shape[2], x.shape[3], ho, wo)
        rows = gw.n_t * gw.k
        itemsize = np.dtype(plan.dtype).itemsize
        blk = _images_per_block(nb, rows, npos, itemsize)
        n_sh = _shares(res_rows * blk * npos * rows)
        col = self._buffer("col", plan.dtype, rows * blk * npos)
        # each share takes a slice of the larger GEMM dimension (output rows or columns),
        # cut at multiples of 8 (BLAS register blocks); its im2col slice is a range of rows
        rcuts = [rows * s // n_sh for s in range(n_sh + 1)]
        barrier = threading.Barrier(n_sh)
        n_ch = max(len(c) for c in plan.chunks)

        def share(s):
            for gi in range(self.groups):
                ends = plan.chunks[gi]
                starts = (0,) + ends[:-1]
                for n0 in range(0, nb, blk):
                    m = min(blk, nb - n0) * npos
                    by_rows = res_rows >= m
                    cut = _cuts(res_rows if by_rows else m, n_sh)
                    r0, r1 = (cut[s], cut[s + 1]) if by_rows else (0, res_rows)
                    c0, c1 = (0, m) if by_rows else (cut[s], cut[s + 1])
                    cb = col[:rows * m].reshape(rows, m)
                    barrier.wait()                      # every share is done with the previous block
                    kernels.im2col(x, g_f, self.dp.a_range[0], gi, n0, cg_in, kh, kw, self.stride,
                                   self.padding, ho, wo, cb, rcuts[s], rcuts[s + 1])
                    barrier.wait()                      # the whole block is written
                    if r1 <= r0 or c1 <= c0:
                        continue
                    my, mc = r1 - r0, c1 - c0
                    per = max(1, min(n_ch, RES_BLOCK_BYTES // (my * mc * itemsize)))
                    res = np.empty(per * my * mc, dtype=plan.dtype)
                    if bits:                            # contiguous: numba vectorises only those
                        p0, p1 = np.empty((2, my, mc), dtype=plan.dtype)
                    for j0 in range(0, len(ends), per):
                        j1 = min(len(ends), j0 + per)
                        rb = res[:(j1 - j0) * my * mc].reshape(j1 - j0, my, mc)
                        for j in range(j0, j1):
                            np.matmul(mats[gi][r0:r1, starts[j]:ends[j]], cb[starts[j]:ends[j], c0:c1],
                                      out=rb[j - j0])
                        first, last = j0 == 0, j1 == len(ends)
                        if bits:
                            kernels.unpack_add(rb, p0, p1, bits, first)
                            if last:
                                kernels.store_pair(p0, p1, out, gi, cg_out, n0, self.acc_bits, r0, c0, corr)
                        else:
                            kernels.accumulate(rb, out, gi, cg_out, n0, first, last, self.acc_bits, r0, c0,
                                               corr)

        _run_shares(share, n_sh, barrier)
        return out.reshape(n_acc, nb, c_out, ho, wo)

    def _centre_correction(self, centre, h, wd, ho, wo):
        """``centre * sum of v_k over the taps of (c, oy, ox) inside the input``, uint64 ``(n_acc, C_out, P)``.

        All arithmetic is modulo ``2^64`` (numpy unsigned arrays wrap), which the final
        wrap to ``n <= 40`` bits respects; kept per geometry.
        """
        key = (centre, h, wd, ho, wo)
        if key not in self._corr:
            gw = self._gemm_weights()
            c_out, cg_in, kh, kw = self.w16.shape
            codes = np.concatenate(gw.codes).reshape(c_out, cg_in, kh, kw)
            vu = gw.v[0].astype(np.uint64)                               # (n_acc, n_w), modulo 2^64
            wt = vu[:, codes].sum(axis=2, dtype=np.uint64)              # (n_acc, C_out, K_h, K_w)
            st, pad = self.stride, self.padding
            iy = np.arange(ho)[:, None] * st - pad + np.arange(kh)[None, :]
            ix = np.arange(wo)[:, None] * st - pad + np.arange(kw)[None, :]
            my = ((iy >= 0) & (iy < h)).astype(np.uint64)               # (H_o, K_h)
            mx = ((ix >= 0) & (ix < wd)).astype(np.uint64)              # (W_o, K_w)
            corr = np.zeros((self.dp.n_acc, c_out, ho, wo), dtype=np.uint64)
            for ky in range(kh):
                for kx in range(kw):
                    corr += wt[:, :, ky, kx, None, None] * (my[None, None, :, ky, None] * mx[None, None, None, :, kx])
            cu = np.array([centre], dtype=np.int64).astype(np.uint64)   # centre modulo 2^64
            self._corr[key] = np.ascontiguousarray((corr * cu).reshape(self.dp.n_acc, c_out, ho * wo))
        return self._corr[key]

    def _int_operands(self, xmin, xmax):
        """The int path's activation table (narrowest integer type holding the used codes) and weight matrices.

        Kept per code range (``_operands``): the tables are read, never written.
        """
        key = (xmin, xmax)
        if key not in self._operands:
            self._operands[key] = self._make_operands(xmin, xmax)
        return self._operands[key]

    def _make_operands(self, xmin, xmax):
        gw = self._int_weights()
        a0 = self.dp.a_range[0]
        lo, hi = xmin - a0, xmax - a0 + 1                   # only codes in [xmin, xmax] are read
        g_used = gw.g_tab[:, lo:hi]
        g_lo, g_hi = min(0, int(g_used.min())), max(0, int(g_used.max()))
        cdt = np.uint8 if g_lo >= 0 and g_hi <= 255 else np.int8 if -128 <= g_lo and g_hi <= 127 else np.int16
        g16 = np.zeros(gw.g_tab.shape, dtype=cdt)
        g16[:, lo:hi] = g_used
        return g16, max(-g_lo, g_hi), gw.int_matrices()

    def simd_variant(self, xmin: int, xmax: int) -> str | None:
        """The direct byte kernel (``sim.direct``) the int path runs for codes in ``[xmin, xmax]``, or None.

        Needs the int path's proof (``int_exact``), unsigned 8-bit activation terms and
        signed 8-bit weights; ``avx2`` interleaves zero bytes when ``2 * max|a| * max|w|``
        exceeds ``2^15 - 1`` (:meth:`_spread`).
        """
        if SIMD_MODE == "none":
            return None
        return self._byte_variant(xmin, xmax, SIMD_ORDER if SIMD_MODE == "auto" else (SIMD_MODE,))

    def _byte_variant(self, xmin, xmax, order):
        if not simd.VARIANTS or not self.int_exact(xmin, xmax):
            return None
        g16, _, mats = self._int_operands(xmin, xmax)
        if g16.dtype != np.uint8 or mats[0].dtype != np.int8:
            return None
        return next((v for v in order if v in simd.VARIANTS), None)

    def _spread(self, xmin, xmax, variant):
        """True when ``avx2`` needs a zero byte after every term byte: a pair of products could saturate.

        ``vpmaddubsw`` saturates ``a0*w0 + a1*w1`` to int16; with every second byte 0 each pair is
        one product, at most ``255 * 128 < 2^15``.
        """
        if variant != "avx2":
            return False
        _, a_max, _ = self._int_operands(xmin, xmax)
        return 2 * a_max * int(self._int_weights().vabs_used.max(initial=0)) > simd.AVX2_PAIR_LIMIT

    def _pair_groups(self, xmin, xmax, spread):
        """``avx2``: how many 4-byte groups' pair sums may be added in int16 lanes before widening.

        Each ``vpmaddubsw`` lane holds a pair sum of magnitude at most ``P = 2 * max|a| * max|w|``
        (``max|a| * max|w|`` when spread); ``m`` of them stay within ``2^15 - 1`` for ``m * P <=
        2^15 - 1``, so their wrapping int16 sum is exact.
        """
        _, a_max, _ = self._int_operands(xmin, xmax)
        pair = (1 if spread else 2) * a_max * int(self._int_weights().vabs_used.max(initial=0))
        return max(1, simd.AVX2_PAIR_LIMIT // max(1, pair))

    def _run_direct(self, x, xmin, xmax, ho, wo, variant, fused=None):
        # One share per numba thread (a prange over the shares: one parallel launch per call), each a
        # range of output rows (n, oy), or of row blocks when there are few positions, done start to
        # end on its own buffers: byte planes of the activation terms (channels last, zero padded),
        # the direct tile kernel into an int32 position-major buffer, the wrap and the store.
        # Exactness: int_exact (docs/sim.md, "Direct convolution kernels").
        gw = self._int_weights()
        dw, g8, gpk, identity, m16, spread = self._direct_operands(variant, xmin, xmax)
        a0 = self.dp.a_range[0]
        nb = x.shape[0]
        npos = ho * wo
        c_out = self.w16.shape[0]
        if fused is None:                                 # the int64 accumulators
            out = np.empty((self.dp.n_acc, nb, c_out, npos), dtype=np.int64)
            y, rq, lo, hi = np.empty((0, 0, npos), np.int16), np.empty((0, 0, self.dp.n_acc + 2), np.int64), 0, 0
        else:                                             # requantised codes only (sim.netops.requant_layer fused)
            rq, lo, hi = fused
            out = np.empty((self.dp.n_acc, 0, 0, npos), dtype=np.int64)
            y = np.empty((nb, c_out, npos), dtype=np.int16)
        # images in blocks whose planes stay near DIRECT_BLOCK_BYTES: the memory a call takes is bounded
        per_image = ((ho - 1) * dw.sty + dw.kh) * ((wo - 1) * dw.stx + dw.ktaps_x) * dw.kc
        blk = max(1, min(nb, DIRECT_BLOCK_BYTES // per_image))
        whole_channels = fused is not None and self.dp.n_acc > 1   # a share must hold every row of a channel
        for n0 in range(0, nb, blk):
            st, n_sh = self._direct_shares(variant, spread, dw, min(blk, nb - n0), ho, wo, whole_channels)
            for gi in range(self.groups):
                args = (x, g8, gpk, identity, a0, gi, dw.cg_in, self.padding, dw.fold, dw.suby, dw.subx, st.segs,
                        st.nseg)
                rest = (n0, st.xt, st.wpa, dw.packed[gi], st.offs, st.taps, dw.kc4, m16, st.n_qt, st.chunk_qt,
                        st.ob0, st.ob1, dw.wblk, st.buf, out, gw.cg_out, st.q0, st.nq, self.acc_bits, y, rq, lo, hi)
                if n_sh == 1:                             # the serial share: no parallel region to compile or launch
                    direct.share_kernel(variant)(*args, 0, *rest)
                else:
                    direct.parallel_kernel(variant)(*args, *rest)
        if fused is not None:
            return y.reshape(nb, c_out, ho, wo)
        return out.reshape(self.dp.n_acc, nb, c_out, ho, wo)

    def _direct_operands(self, variant, xmin, xmax):
        """``(DirectWeights, g8, gpk, identity, m16, spread)`` of the direct path for codes in ``[xmin, xmax]``.

        Made once per code range and variant and kept (``_operands``): the packed weights, the
        activation-term table (with a zero term after every term when spread), its packed form
        ``gpk`` (a code's ``n_t`` bytes little-endian, ``n_t <= 8``), whether the single term is
        the identity, and the ``avx2`` int16 group count.
        """
        key = ("direct", variant, xmin, xmax)
        if key in self._operands:
            return self._operands[key]
        gw = self._int_weights()
        spread = self._spread(xmin, xmax, variant)
        g8, _, _ = self._int_operands(xmin, xmax)
        if (variant, spread) not in self._direct:
            v8 = gw.v.astype(np.int8)                     # the used values fit (simd_variant); others are never read
            if spread:                                    # a zero term after every term
                v8 = np.stack([v8, np.zeros_like(v8)], axis=1).reshape(-1, *v8.shape[1:])
            c_out, cg_in, kh, kw = self.w16.shape
            self._direct[variant, spread] = direct.DirectWeights(variant, gw.codes, v8, cg_in, kh, kw, self.stride)
        dw = self._direct[variant, spread]
        if spread:
            g8 = np.stack([g8, np.zeros_like(g8)], axis=1).reshape(-1, g8.shape[1])
        a0 = self.dp.a_range[0]
        identity = dw.n_t == 1 and bool((gw.g_tab[0] == np.arange(a0, a0 + gw.g_tab.shape[1])).all())
        gpk = np.zeros(g8.shape[1], dtype=np.uint64)
        for t in range(min(8, dw.n_t)):
            gpk |= g8[t].astype(np.uint64) << np.uint64(8 * t)
        self._operands[key] = (dw, g8, gpk, identity, self._pair_groups(xmin, xmax, spread), spread)
        return self._operands[key]

    def _direct_shares(self, variant, spread, dw, nb, ho, wo, whole_channels=False):
        """The shares of a block of ``nb`` images (kept for DIRECT_GEOMETRIES geometries) and their count.

        ``whole_channels``: never cut by row blocks (a fused requantisation needs every accumulator
        of a channel in one share).
        """
        npos = ho * wo
        work = nb * npos * dw.rows * dw.kc * len(dw.packed) * dw.kh * dw.ktaps_x
        n_sh = 1 if work < DIRECT_SHARE_MACS else numba.get_num_threads()
        by_rows = (nb * npos <= DIRECT_ROW_SPLIT and dw.n_ob >= n_sh     # few positions: cut the row blocks
                   and not whole_channels)
        n_sh = min(n_sh, dw.n_ob if by_rows else nb * ho)
        key = (variant, spread, nb, ho, wo, n_sh, by_rows)
        if key not in self._direct:
            if by_rows:
                cut = [dw.n_ob * s // n_sh for s in range(n_sh + 1)]
                parts = [direct.Share(dw, 0, nb * ho, ho, wo, cut[s], cut[s + 1]) for s in range(n_sh)]
            else:
                cut = [nb * ho * s // n_sh for s in range(n_sh + 1)]
                parts = [direct.Share(dw, cut[s], cut[s + 1], ho, wo) for s in range(n_sh)]
            geometries = [k for k in self._direct if len(k) == len(key)]
            for k in geometries[:max(0, len(geometries) + 1 - DIRECT_GEOMETRIES)]:    # the oldest go (large buffers)
                del self._direct[k]
            self._direct[key] = direct.Shares(dw, parts)
        return self._direct[key], n_sh

    def _run_int(self, x, xmin, xmax, ho, wo):
        # integer im2col (one row per output position, fan-in contiguous; uint8/int8/int16, the
        # narrowest that holds the transformed codes) and gemm_i16 with int32 sums, both run on one
        # range per thread; no BLAS. Exactness: int_exact (docs/sim.md, "Integer GEMM path").
        gw = self._int_weights()
        mats = gw.int_matrices()
        nb = x.shape[0]
        c_out, cg_in, kh, kw = self.w16.shape
        npos = ho * wo
        kt = _k_pad(gw.n_t * gw.k)
        a0 = self.dp.a_range[0]
        g16, _, _ = self._int_operands(xmin, xmax)
        cdt = g16.dtype
        gemm = kernels.gemm_i16
        out = np.empty((self.dp.n_acc, nb, c_out, npos), dtype=np.int64)
        itemsize = np.dtype(cdt).itemsize
        blk = _images_per_block(nb, kt, npos, itemsize)
        qb = max(4, INT_TILE_BYTES // (itemsize * kt) // 4 * 4)
        for gi in range(self.groups):
            for n0 in range(0, nb, blk):
                nq = min(blk, nb - n0) * npos
                q4 = (nq + 3) // 4 * 4
                col = self._buffer("colint", cdt, q4 * kt).reshape(q4, kt)
                col[nq:] = 0                                    # register-block remainder rows
                work = nq * kt * mats[gi].shape[0]

                def rows(r0, r1):
                    kernels.im2row_i16(x, g16, a0, gi, n0, cg_in, kh, kw, self.stride, self.padding, ho, wo, col,
                                       r0, r1)

                def tiles(t0, t1):
                    gemm(mats[gi], col, nq, qb, out, gi, gw.cg_out, n0, self.acc_bits, t0, t1)

                _in_ranges(rows, nq // wo, work)
                _in_ranges(tiles, (mats[gi].shape[0] // 4) * ((q4 + qb - 1) // qb), work)
        return out.reshape(self.dp.n_acc, nb, c_out, ho, wo)

    def _buffer(self, name, dtype, size):
        """A flat scratch array, kept between calls of the same size."""
        if self._scratch is None:
            self._scratch = {}
        key = (name, np.dtype(dtype).str, size)
        if self._scratch.get(name, (None,))[0] != key:
            self._scratch[name] = (key, np.empty(size, dtype=dtype))
        return self._scratch[name][1]


def _rq_table(m, b, sh, beta, fb, lo, hi):
    """``(rq, lo, hi)`` of ``direct.requant_rows``: per sample and channel ``M_n`` (section 11), ``B``, ``sh``.

    ``M_n = (M * beta + 2^(fb-1)) >> fb`` (no rounding term for ``fb = 0``), as
    ``sim.netops.requant_layer`` computes it; int64 throughout (``M_n < 2^16``).
    """
    nb, c_out = beta.shape[0], m.shape[0]
    half = (np.int64(1) << np.int64(fb - 1)) if fb >= 1 else np.int64(0)
    rq = np.empty((nb, c_out, m.shape[1] + 2), dtype=np.int64)
    rq[:, :, :-2] = (m[None, :, :] * beta[:, None, None] + half) >> np.int64(fb)
    rq[:, :, -2] = b[None, :]
    rq[:, :, -1] = sh[None, :]
    return rq, lo, hi


def _k_pad(k):
    """Fan-in length of the int path: ``k`` rounded up to a multiple of INT_K_ALIGN."""
    return (k + INT_K_ALIGN - 1) // INT_K_ALIGN * INT_K_ALIGN


def _cuts(n, parts):
    """Split ``0 .. n`` into ``parts`` ranges at multiples of 8: the boundaries, ``parts + 1`` of them."""
    return [0] + [min(n, (n * t // parts + 7) // 8 * 8) for t in range(1, parts)] + [n]


@lru_cache(maxsize=1)
def _blas_threads_api():
    """``(get, set)`` of the thread count of numpy's bundled OpenBLAS, or None if not found."""
    here = os.path.dirname(np.__file__)
    for path in sorted(glob.glob(os.path.join(here, os.pardir, "numpy.libs", "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "_64_", ""):
            get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, put.restype, put.argtypes = ctypes.c_int, None, [ctypes.c_int]
                return get, put
    return None


_POOL = None          # (workers, ThreadPoolExecutor) of the shares beyond the calling thread
_POOL_LOCK = threading.Lock()


def _shares(macs):
    """Threads that share one GEMM-path call: ``numba.get_num_threads()``, 1 for small calls."""
    n = numba.get_num_threads()
    if n <= 1 or macs < MIN_SHARE_MACS or _blas_threads_api() is None:
        return 1
    return n


def _in_ranges(fn, n_items, work):
    """Run ``fn(r0, r1)`` over ``0 .. n_items`` cut into one range per thread (``numba.get_num_threads()``).

    The kernels release the GIL, so the ranges run in parallel on this thread and pool
    workers; below MIN_SHARE_MACS of ``work`` (multiply-adds) or with one thread, one call.
    """
    global _POOL
    n = min(numba.get_num_threads(), n_items)
    if n <= 1 or work < MIN_SHARE_MACS:
        fn(0, n_items)
        return
    cut = [n_items * s // n for s in range(n + 1)]
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] < n - 1:
            _POOL = (n - 1, ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="sim-share"))
        pool = _POOL[1]
    futures = [pool.submit(fn, cut[s], cut[s + 1]) for s in range(1, n)]
    try:
        fn(cut[0], cut[1])
    finally:
        errors = [f.exception() for f in futures]
    for e in errors:
        if e is not None:
            raise e


def _run_shares(fn, n, barrier):
    """Run ``fn(0) .. fn(n-1)`` on ``n`` threads (this one and pool workers), BLAS single-threaded.

    With ``n == 1`` BLAS keeps its own threads. A failing share aborts ``barrier`` so
    that the others stop too; the first error is raised.
    """
    global _POOL
    if n == 1:
        fn(0)
        return

    def guarded(s):
        try:
            fn(s)
        except BaseException:
            barrier.abort()
            raise

    get, put = _blas_threads_api()
    with _POOL_LOCK:                    # one shared call at a time: the BLAS thread count is process-wide
        if _POOL is None or _POOL[0] < n - 1:
            _POOL = (n - 1, ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="sim-share"))
        prev = get()
        put(1)
        try:
            futures = [_POOL[1].submit(guarded, s) for s in range(1, n)]
            errors = []
            try:
                guarded(0)
            except BaseException as e:  # noqa: BLE001 - re-raised below after the workers stop
                errors.append(e)
            for f in futures:
                e = f.exception()
                if e is not None:
                    errors.append(e)
        finally:
            put(prev)
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if errors:
        raise (real or errors)[0]


def _check_int(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise UserError(f"{name} must be an integer >= {lo}, not {value!r}")
    return int(value)


def _codes(arr, name, ndim):
    a = np.asarray(arr)
    if a.dtype.kind not in "iu":
        raise UserError(f"{name} codes must be an integer array, not {a.dtype}")
    if a.ndim != ndim:
        raise UserError(f"{name} must have {ndim} dimensions, not shape {a.shape}")
    return a


def conv2d(x, w, dp: Datapath, *, stride: int = 1, padding: int = 0, groups: int = 1,
           acc_bits: int | None = None, method: str = "auto") -> np.ndarray:
    """Accumulators of a conv2d layer (docs/datapath.md sections 5 and 8).

    Parameters
    ----------
    x : integer array ``(N, C_in, H, W)`` of activation codes in ``dp.a_range``.
    w : integer array ``(C_out, C_in/G, K_h, K_w)`` of weight codes (``q`` or code words).
    dp : the datapath.
    stride, padding, groups : the layer geometry (zero padding, dilation 1).
    acc_bits : accumulator width ``n`` (2..40); None takes the natural width.
    method : ``"auto"``, ``"exact"`` (integer kernel), ``"gemm"`` (float GEMM) or
        ``"int"`` (int16 GEMM with int32 sums); ``"gemm"`` and ``"int"`` raise
        UserError when their exactness cannot be proved.

    Returns
    -------
    int64 array ``(n_acc, N, C_out, H_o, W_o)``, each value wrapped to ``acc_bits``.
    """
    if not isinstance(dp, Datapath):
        raise UserError(f"dp must be an asqhw.core.params.Datapath, not {type(dp).__name__}")
    x = _codes(x, "activation", 4)
    w = _codes(w, "weight", 4)
    groups = _check_int("groups", groups, 1)
    if x.shape[1] % groups or w.shape[0] % groups:
        raise UserError(f"channels ({x.shape[1]} in, {w.shape[0]} out) must be divisible by groups={groups}")
    layer = Conv2d(w, dp, stride=stride, padding=padding, groups=groups, acc_bits=acc_bits, method=method)
    return layer(x)


def linear(x, w, dp: Datapath, *, acc_bits: int | None = None, method: str = "auto") -> np.ndarray:
    """Accumulators of a linear layer: ``x`` ``(N, K)``, ``w`` ``(C_out, K)`` -> int64 ``(n_acc, N, C_out)``.

    Same rules as :func:`conv2d` (a linear layer is a 1x1 convolution of a 1x1 input).
    """
    x = _codes(x, "activation", 2)
    w = _codes(w, "weight", 2)
    out = conv2d(x[:, :, None, None], w[:, :, None, None], dp, acc_bits=acc_bits, method=method)
    return np.ascontiguousarray(out[:, :, :, 0, 0])
