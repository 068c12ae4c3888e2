"""A direct, slow reading of docs/datapath.md on Python integers, shared by the RTL tests.

Written from the spec alone (not from asqhw/golden/, asqhw/sim/ or asqhw/hdl/), so the RTL tests
compare the hardware against the text rather than against another implementation.
"""

from math import isqrt

__all__ = ["spec_product", "spec_wrap"]


def spec_product(dp, a, code):
    """(P, k) of section 4 for activation code ``a`` and stored weight code ``code``."""
    if dp.fmt == "uniform":
        return a * code, 0
    m = code & ((1 << dp.m_bits) - 1)
    if m == 0:
        return 0, 0
    sgn, w = code >> dp.m_bits, m - 1
    if dp.arch == "shift":
        p, k = a << (dp.e_max - w), 0
    elif dp.arch == "split":
        s = dp.frac_bits
        p, k = (a << (s - w // 2), 0) if w % 2 == 0 else (a << (s - (w - 1) // 2), 1)
    elif w % 2 == 0:
        p, k = a << (dp.frac_bits - w // 2), 0
    else:
        mag = (isqrt(a * a << (2 * dp.frac_bits - w + 2)) + 1) >> 1
        p, k = (-mag if a < 0 else mag), 0
    return (-p if sgn else p), k


def spec_wrap(x, n):
    """Two's complement wrap of section 5: ((x + 2^(n-1)) mod 2^n) - 2^(n-1)."""
    return ((x + (1 << (n - 1))) % (1 << n)) - (1 << (n - 1))
