"""Requantisation of accumulators to output codes (docs/datapath.md section 6)."""

from __future__ import annotations

import numpy as np

from asqhw.core.errors import UserError

from . import kernels

__all__ = ["requant"]

_INT16 = (-(1 << 15), (1 << 15) - 1)


def requant(acc, M, B, sh, lo: int, hi: int) -> np.ndarray:
    """Output codes ``y = clamp(floor((sum_k M[c,k]*acc_k + B[c]) / 2^sh[c] + 1/2), lo, hi)``.

    Rounding is ties toward plus infinity (``TIES_POS``); ``sh = 0`` takes ``t`` as is.

    Parameters
    ----------
    acc : int64 ``(n_acc, N, C_out, ...)`` accumulators (``|acc| <= 2^39``).
    M : int ``(C_out, n_acc)`` multipliers in 0..65535.
    B : int ``(C_out,)`` biases in ``-2^47 .. 2^47 - 1``.
    sh : int ``(C_out,)`` shifts in 0..62.
    lo, hi : the output code range.

    Returns
    -------
    ``(N, C_out, ...)`` codes: int16 when ``[lo, hi]`` fits int16, else int32.
    """
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iu" or acc.ndim < 3:
        raise UserError(f"acc must be an integer array (n_acc, N, C_out, ...), not {acc.dtype} {acc.shape}")
    n_acc, nb, c_out = acc.shape[:3]
    M = np.asarray(M, dtype=np.int64)
    B = np.asarray(B, dtype=np.int64)
    sh = np.asarray(sh, dtype=np.int64)
    if M.shape != (c_out, n_acc) or B.shape != (c_out,) or sh.shape != (c_out,):
        raise UserError(f"M, B, sh must have shapes {(c_out, n_acc)}, {(c_out,)}, {(c_out,)}; "
                        f"got {M.shape}, {B.shape}, {sh.shape}")
    if M.size and (M.min() < 0 or M.max() > 65535):
        raise UserError(f"M must be in 0..65535, not {int(M.min())}..{int(M.max())}")
    if B.size and (B.min() < -(1 << 47) or B.max() >= 1 << 47):
        raise UserError("B must be in -2^47 .. 2^47 - 1")
    if sh.size and (sh.min() < 0 or sh.max() > 62):
        raise UserError(f"sh must be in 0..62, not {int(sh.min())}..{int(sh.max())}")
    if acc.size and np.abs(acc).max() > 1 << 39:
        raise UserError("accumulators must be within 40 bits (|acc| <= 2^39)")
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise UserError(f"output range [{lo}, {hi}] is empty")
    a = np.ascontiguousarray(acc, dtype=np.int64).reshape(n_acc, nb, c_out, -1)
    y = np.empty(a.shape[1:], dtype=np.int64)
    kernels.requant_kernel(a, M, B, sh, lo, hi, y)
    dtype = np.int16 if _INT16[0] <= lo and hi <= _INT16[1] else np.int32
    return y.astype(dtype).reshape(acc.shape[1:])
