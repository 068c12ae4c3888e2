"""Accumulator sums beyond the int64 range wrap by definition (uint64), not by luck.

An 8-bit ``pot`` layer with ``E_max = 127`` has products up to ``255 << 127``; with a
40-bit accumulator and ``2^17`` terms, the model's int64 partial sums (products modulo
``2^64``, float-GEMM chunk sums up to ``2^47`` each) leave the int64 range many times
over. docs/datapath.md section 5 only asks for the sum modulo ``2^40``.
"""

import numpy as np
import pytest

from asqhw import sim
from asqhw.core.params import Datapath

K = 1 << 17
POT8 = Datapath(fmt="pot", a_bits=8, w_bits=8, e_max=127)


def _wrap(v: int, n: int) -> int:
    return ((v + (1 << (n - 1))) & ((1 << n) - 1)) - (1 << (n - 1))


def _layer():
    rng = np.random.default_rng(17)
    x = rng.integers(128, 256, size=(1, K)).astype(np.int16)
    # shifts 127 - W of 36..39 (products near 2^47: their int64 sum reaches 2^64) and of
    # 50..63 (near 2^63 modulo 2^64, but 0 modulo 2^40)
    shift = np.where(rng.integers(0, 2, size=(2, K)) == 1, rng.integers(36, 40, size=(2, K)),
                     rng.integers(50, 64, size=(2, K)))
    expo = 127 - shift
    sgn = rng.integers(0, 2, size=(2, K))
    w = ((sgn << POT8.m_bits) | (expo + 1)).astype(np.int16)
    want = []
    for c in range(2):
        total = 0
        for a, e, s in zip(x[0].tolist(), expo[c].tolist(), sgn[c].tolist()):
            p = a << (127 - e)
            total += -p if s else p
        want.append(_wrap(total, 40))
    return x, w, want


@pytest.mark.parametrize("method", ["exact", "gemm"])
def test_pot8_emax127_40bit_accumulator_2pow17_terms_wraps_exactly(method):
    x, w, want = _layer()
    got = sim.linear(x, w, POT8, acc_bits=40, method=method)
    assert got[0, 0].tolist() == want


def test_the_wrap_test_can_fail():
    x, w, want = _layer()
    i = int(np.flatnonzero((w[1] & 0x7F) >= 127 - 39 + 1)[0])     # a term with shift 36..39
    w[1, i] += 1                              # its exponent one larger: the product halves
    got = sim.linear(x, w, POT8, acc_bits=40, method="exact")
    assert got[0, 0, 0] == want[0] and got[0, 0, 1] != want[1]
