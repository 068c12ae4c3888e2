"""The exactness proofs and the cost model of the GEMM paths (docs/sim.md, "Exactness of the GEMM path").

A float GEMM over integers is exact when every partial sum stays within ``2^24``
(float32) or ``2^53`` (float64): :meth:`GemmWeights.plan` cuts the fan-in into chunks
that keep every output row's bound ``sum_t T_t * L1_t`` within the limit and chooses
float32 or float64, and for ``split`` a packed plan (``v0 + 2^b * v1`` in one GEMM) when
its cost model says it pays. The integer GEMM is exact when every operand fits int16 and
every row's bound stays below ``2^31`` (:meth:`GemmWeights.int_exact`, docs/sim.md,
"Integer GEMM path"). The limits are module constants: a test may lower them, which only
makes the plans more cautious.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .terms import term_tables

__all__ = ["GemmPlan", "GemmWeights", "plan_cost", "k_pad", "F32_EXACT", "F64_EXACT", "I16_MAX", "I32_LIMIT"]

F32_EXACT = 1 << 24   # every integer of magnitude <= 2^24 is a float32
F64_EXACT = 1 << 53   # every integer of magnitude <= 2^53 is a float64
MIN_CHUNK = 128       # float32 chunks shorter than this on average: take float64 instead
PACK_BITS = (6, 16)           # packing widths b tried for split (S0 + 2^b * S1 in one float32)
PACK_MAX_TERM = 1 << 12       # pack only when every term is at most this large
MIN_PACKED_CHUNK = 32         # packed chunks shorter than this on average: two-row GEMM instead
PACK_SAVED_S_PER_MAC = 1 / 40e9    # rough cost model of the packed split plan (one thread, seconds)
PACK_CALL_S = 5e-6
PACK_EXTRACT_S_PER_OUT = 0.4e-9
I16_MAX = (1 << 15) - 1       # int path: every operand of magnitude <= this fits int16
I32_LIMIT = 1 << 31           # int path: every output's sum of |a*w| must stay below this
INT_K_ALIGN = 64              # int path: fan-in padded with zeros to a multiple of this (whole vectors)


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


def k_pad(k: int) -> int:
    """Fan-in length of the int path: ``k`` rounded up to a multiple of INT_K_ALIGN."""
    return (k + INT_K_ALIGN - 1) // INT_K_ALIGN * INT_K_ALIGN


class GemmWeights:
    """The weight side of the GEMM paths, prepared once per weight tensor: norms, proofs, plans, matrices.

    ``w16`` int16 weight codes ``(C_out, C_in/G, K_h, K_w)``; ``terms`` ``(g, v)`` (default
    :func:`sim.terms.term_tables`). Kept: per group the code indices ``codes`` ``(C_g, K)`` and
    the saturating per-row L1 norms ``l1`` ``(n_t, n_acc*C_g)`` of every term's weights, and
    the matrices and plans made from them.
    """

    def __init__(self, w16, dp, groups, nbits, terms=None):
        self.dp, self.groups, self.nbits = dp, groups, nbits
        self.g_tab, v = term_tables(dp, nbits) if terms is None else terms
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
                m = np.zeros(((rows + 3) // 4 * 4, k_pad(self.k * self.n_t)), dtype=dtype)
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
        """float GEMM weights ``(n_acc*C_g, K*n_t)`` of ``dtype`` per group: row ``k*C_g + c``, column ``i*n_t + t``."""
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


def plan_cost(plan: GemmPlan) -> tuple:
    """Rough order of plans: float64 after float32, two-row split after packed, then more chunks after fewer."""
    return (np.dtype(plan.dtype).itemsize, plan.pack_bits == 0, sum(len(c) for c in plan.chunks))
