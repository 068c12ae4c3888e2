"""Compile and cache every numba kernel of the model ahead of time: ``python -m asqhw.sim.warm``.

``make setup`` runs it after installing, so that a new user's first ``asqhw conform`` or
``asqhw run`` loads kernels from the on-disk cache instead of compiling them (about 10 s
from an empty cache, once per machine and numba version). Runs on tiny inputs: every
path of the four benchmark formats, the direct kernel of this CPU in one share and in
one per thread, the requantiser and every operation between layers of a network.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from asqhw.core.errors import UserError
from asqhw.core.params import Datapath

from . import direct_path
from .layers import Conv2d, conv2d
from .network import IntNetwork
from .requant import requant

__all__ = ["FORMATS", "warm"]

FORMATS = (Datapath(fmt="uniform", a_bits=8, w_bits=8), Datapath(fmt="pot", a_bits=4, w_bits=4),
           Datapath(fmt="post", a_bits=4, w_bits=4, arch="split"), Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut"))


def _codes(rng, dp, x_shape, w_shape):
    x = rng.integers(max(0, dp.a_range[0]), dp.a_range[1] + 1, size=x_shape).astype(np.int16)
    w = rng.integers(dp.w_range[0], dp.w_range[1] + 1, size=w_shape).astype(np.int16)
    if dp.fmt != "uniform":
        w[(w & ((1 << dp.m_bits) - 1)) > dp.e_max + 1] = 0
    return x, w


def warm(network: str | None = None) -> float:
    """Run every kernel once (compiling it into numba's on-disk cache); the seconds taken.

    ``network``: a network export to run on one sample as well (the operations between layers).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    for dp in FORMATS:
        x, w = _codes(rng, dp, (1, 8, 12, 12), (8, 8, 3, 3))
        for method in ("exact", "gemm", "int"):
            if method != "int" or Conv2d(w, dp, padding=1).int_exact(int(x.min()), int(x.max())):
                conv2d(x, w, dp, padding=1, method=method)
        x, w = _codes(rng, dp, (2, 32, 20, 20), (32, 32, 3, 3))       # above DIRECT_SHARE_MACS: one share per thread
        layer = Conv2d(w, dp, padding=1)
        if layer.simd_variant(int(x.min()), int(x.max())) is not None:
            old = direct_path.DIRECT_SHARE_MACS
            direct_path.DIRECT_SHARE_MACS = 0
            try:
                layer(x)
            finally:
                direct_path.DIRECT_SHARE_MACS = old
    acc = np.zeros((1, 1, 8, 4), dtype=np.int64)
    requant(acc, np.ones((8, 1), np.int64), np.zeros(8, np.int64), np.ones(8, np.int64), 0, 15)
    if network is not None:
        from asqhw.core.network import read_network
        net = read_network(network)
        x = np.zeros((1,) + tuple(net.tensors["input"].shape), dtype=np.int16)
        IntNetwork(net).run(x, keep=False)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("asqhw: error: usage: python -m asqhw.sim.warm [NETWORK.npz]", file=sys.stderr)
        return 2
    try:
        seconds = warm(args[0] if args else None)
    except UserError as e:
        print(f"asqhw: error: {e}", file=sys.stderr)
        return 2
    print(f"asqhw: numba kernels compiled and cached in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
