"""The exact path of a conv layer: every product looked up in :func:`sim.codes.product_table`, summed in uint64.

Always applicable: uint64 additions wrap modulo ``2^64``, and ``2^n`` divides ``2^64``, so
the wrap of the stored sum is the spec's wrap of the exact sum for any fan-in and any
product size (docs/sim.md, "Exact kernel").
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from asqhw.core.params import Datapath

from . import kernels, workshare
from .codes import product_table

__all__ = ["exact_table", "run_exact"]


@lru_cache(maxsize=64)
def exact_table(dp: Datapath) -> np.ndarray:
    """Products modulo ``2^64`` as uint64, ``(n_acc, n_weight_codes, n_act_codes)`` (the kernel sums them in uint64)."""
    return np.ascontiguousarray(product_table(dp).transpose(0, 2, 1)).view(np.uint64)


def run_exact(x, w, dp: Datapath, stride: int, pad: int, groups: int, nbits: int, ho: int, wo: int) -> np.ndarray:
    """The accumulators ``(n_acc, N, C_out, H_o, W_o)`` of int16 codes ``x`` and weight codes ``w``.

    One range of ``(n, c_out)`` pairs per thread (:func:`sim.workshare.in_ranges`).
    """
    out = np.empty((dp.n_acc, x.shape[0], w.shape[0], ho, wo), dtype=np.int64)
    tab = exact_table(dp)
    work = x.shape[0] * w.size * ho * wo

    def part(r0, r1):
        kernels.conv_exact(x, w, tab, dp.a_range[0], dp.w_range[0], stride, pad, groups, nbits, out, r0, r1)

    workshare.in_ranges(part, x.shape[0] * w.shape[0], work)
    return out
