"""Layer accumulators (docs/datapath.md sections 5 and 8): conv2d and linear, and the choice of path.

Four interchangeable paths compute the same integers, each in its own module:

- ``exact`` (:mod:`sim.exact_path`): every product looked up in
  :func:`sim.codes.product_table`; always applicable.
- ``gemm`` (:mod:`sim.gemm_path`): im2col of the activation terms plus a float GEMM
  (BLAS), used only when :mod:`sim.plan` proves every partial sum an exactly
  representable integer (docs/sim.md, "Exactness of the GEMM path"); single identity
  terms may be centred (``A - c``, "Centred activations").
- ``int``: the separable terms of :mod:`sim.terms` as integer operands with int32 sums,
  used only when every operand fits int16 and every output's sum of ``|a*w|`` is below
  ``2^31`` (docs/sim.md, "Integer GEMM path"): for uint8 activation terms and int8
  weights the direct byte kernels (:mod:`sim.direct_path`, "Direct convolution
  kernels"), else the portable integer GEMM (:mod:`sim.int_path`).

``method="auto"`` takes the direct kernels whenever they apply (and the layer is not
tiny), the portable int kernel for long mul/shift fan-ins over few positions, else
``gemm`` when its proof goes through, else ``exact``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from asqhw.core.errors import UserError
from asqhw.core.params import MAX_ACC_BITS, Datapath

from . import netops
from .codes import product_terms
from .direct_path import DirectPath, rq_table
from .exact_path import run_exact
from .gemm_path import GemmPath, images_per_block
from .int_path import IntPath
from .plan import GemmPlan, GemmWeights, plan_cost
from .terms import byte_terms

__all__ = ["conv2d", "linear", "Conv2d", "GemmPlan", "METHODS", "CENTRE_MODE", "SIMD_MODE", "SIMD_ORDER"]

METHODS = ("auto", "exact", "gemm", "int")
CENTRE_MODE = "auto"  # centred activations on the float path: "auto" (when the plan gets cheaper), "always", "never"
CENTRE_MIN_CHUNKS = 4   # auto: centre only plans with at least this many fan-in chunks (saving calls pays there)
INT_AUTO_ARCHS = ("mul", "shift")   # auto: int path only for these (split needs 2*C_out rows, lut int16 operands)
INT_MIN_FAN_IN = 1024         # auto: int path only for at least this many GEMM rows (fan-in * terms) ...
INT_MAX_COLS = 1024           # ... and at most this many output positions (N * H_o * W_o); see docs/sim.md
SIMD_ORDER = ("vnni512", "vnni256", "avx2")   # direct byte kernels (sim.direct), fastest measured first
SIMD_MODE = "auto"            # "auto": the first of SIMD_ORDER the CPU has and the bounds allow; a variant name; "none"


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
        self.gemm_path = GemmPath(self)
        self.int_path = IntPath(self)
        self.direct_path = DirectPath(self)

    def gemm_weights(self) -> GemmWeights:
        """The weight side of the float GEMM path (made on first use and kept)."""
        if self._gemm is None:
            self._gemm = GemmWeights(self.w16, self.dp, self.groups, self.acc_bits)
        return self._gemm

    def int_weights(self) -> GemmWeights:
        """The weight side of the int paths: the float path's, unless :func:`sim.terms.byte_terms` changes the terms."""
        if self._int is None:
            g, v = byte_terms(self.dp, self.acc_bits)
            fl = self.gemm_weights()
            same = g.shape == fl.g_tab.shape and (g == fl.g_tab).all() and v.shape == fl.v.shape and (v == fl.v).all()
            self._int = fl if same else GemmWeights(self.w16, self.dp, self.groups, self.acc_bits, (g, v))
        return self._int

    def plan(self, xmin: int, xmax: int, cols: int | None = None) -> GemmPlan | None:
        """The GEMM plan proved exact for activation codes in ``[xmin, xmax]``, or None.

        ``cols``: GEMM columns per call (images per block times ``H_o*W_o``), used
        to choose between the packed and the two-row ``split`` plan; None prefers packing.
        """
        gw = self.gemm_weights()
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
        return centred if plan_cost(centred) < plan_cost(plain) else plain

    def int_exact(self, xmin: int, xmax: int) -> bool:
        """True when the integer GEMM path is proved exact for activation codes in ``[xmin, xmax]``."""
        gw = self.int_weights()
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
                table = None if fused is None else rq_table(*fused)
                return self.direct_path(x16, xmin, xmax, ho, wo, variant, table)
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
                return self.int_path(x16, xmin, xmax, ho, wo)
            if method == "int":
                raise UserError("the integer GEMM is not provably exact for these codes; use method='exact'")
        if method != "exact":
            gw = self.gemm_weights()
            blk = images_per_block(nb, gw.n_t * gw.k, ho * wo, 4)   # GEMM columns per call (float32 block)
            plan = self.plan(xmin, xmax, blk * ho * wo)
            if plan is not None:
                return self.gemm_path(x16, plan, ho, wo)
            if method == "gemm":
                raise UserError("no float GEMM is provably exact for these codes; use method='exact'")
        return run_exact(x16, w, dp, st, pad, groups, self.acc_bits, ho, wo)

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

    def simd_variant(self, xmin: int, xmax: int) -> str | None:
        """The direct byte kernel (``sim.direct``) the int path runs for codes in ``[xmin, xmax]``, or None.

        Needs the int path's proof (``int_exact``), unsigned 8-bit activation terms and
        signed 8-bit weights; ``avx2`` interleaves zero bytes when ``2 * max|a| * max|w|``
        exceeds ``2^15 - 1`` (:meth:`sim.direct_path.DirectPath.spread`).
        """
        if SIMD_MODE == "none":
            return None
        return self.direct_path.variant(xmin, xmax, SIMD_ORDER if SIMD_MODE == "auto" else (SIMD_MODE,))


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
