"""sim.codes: the product of every activation code and weight code, exhaustively at b_a, b_w <= 4.

The expectation is an independent reading of docs/datapath.md sections 3-4 in
exact rationals: each product times its accumulator unit equals (for ``lut``:
is the nearest multiple of ``2^-F`` to) the real value ``A * level``.
"""

from fractions import Fraction
from itertools import product as cartesian

import numpy as np
import pytest

from asqhw import sim
from asqhw.core.params import Datapath

SMALL = [2, 3, 4]


def small_datapaths():
    """Every format/arch at b_a, b_w in 2..4, both signednesses and both E_max choices."""
    out = []
    for b_a, b_w, signed in cartesian(SMALL, SMALL, (False, True)):
        out.append(Datapath(fmt="uniform", a_bits=b_a, w_bits=b_w, a_signed=signed))
        for e_max in (2 ** (b_w - 1) - 2, 2 ** (b_w - 1) - 1):
            out.append(Datapath(fmt="pot", a_bits=b_a, w_bits=b_w, a_signed=signed, e_max=e_max))
            out.append(Datapath(fmt="post", a_bits=b_a, w_bits=b_w, arch="split", a_signed=signed, e_max=e_max))
            lo = -(-e_max // 2)
            for f in sorted({lo, lo + 2}):
                out.append(Datapath(fmt="post", a_bits=b_a, w_bits=b_w, arch="lut", a_signed=signed,
                                    e_max=e_max, frac_bits=f))
    return out


DATAPATHS = small_datapaths()


def _id(dp):
    return f"{dp.fmt}-{dp.arch}-a{dp.a_bits}{'s' if dp.a_signed else 'u'}-w{dp.w_bits}-e{dp.e_max}-f{dp.frac_bits}"


def spec_weight(dp, code):
    """(sign, exponent W) of a pot/post code word, or None if it is zero or invalid (section 3.2)."""
    m_bits = dp.w_bits - 1 if dp.e_max <= 2 ** (dp.w_bits - 1) - 2 else dp.w_bits
    sgn, m = divmod(code, 2**m_bits)
    if code >= 2 ** (1 + m_bits) or m > dp.e_max + 1:
        return "invalid"
    return None if m == 0 else (-1 if sgn else 1, m - 1)


def sqrt2_pow(e):
    """sqrt(2)^e as (Fraction, odd) where the value is Fraction * (sqrt(2) if odd else 1)."""
    return Fraction(2) ** (e // 2), e % 2 == 1


def expected_table(dp):
    """The table sim.product_table must equal, built from the real-value semantics."""
    a_lo, a_hi = dp.a_range
    w_lo, w_hi = dp.w_range
    tab = np.zeros((dp.n_acc, a_hi - a_lo + 1, w_hi - w_lo + 1), dtype=np.int64)
    for code, a in cartesian(range(w_lo, w_hi + 1), range(a_lo, a_hi + 1)):
        i, j = a - a_lo, code - w_lo
        if dp.fmt == "uniform":
            tab[0, i, j] = a * code
            continue
        dec = spec_weight(dp, code)
        if dec in ("invalid", None):
            continue
        s, w = dec
        if dp.arch == "shift":               # P * 2^-E_max = A * s * 2^-W
            p = Fraction(a * s, 2**w) * 2**dp.e_max
            tab[0, i, j] = int(p)
        elif w % 2 == 0:                    # P * 2^-F = A * s * 2^-(W/2), F = frac_bits (S for split)
            tab[0, i, j] = int(Fraction(a * s, 2 ** (w // 2)) * 2**dp.frac_bits)
        elif dp.arch == "split":            # P * 2^-S / sqrt2 = A * s * sqrt2^-W
            tab[1, i, j] = int(Fraction(a * s, 2 ** ((w - 1) // 2)) * 2**dp.frac_bits)
        else:                               # nearest integer r to A * s * 2^F * sqrt2^-W
            target_sq = Fraction(a * a * 2 ** (2 * dp.frac_bits), 2**w)   # (A * 2^F * sqrt2^-W)^2
            r = 0
            while Fraction(2 * r + 1, 2) ** 2 < target_sq:
                r += 1
            tab[0, i, j] = s * (r if a >= 0 else -r)
    return tab


@pytest.mark.parametrize("dp", DATAPATHS, ids=_id)
def test_product_table_matches_spec_exhaustively(dp):
    assert np.array_equal(sim.product_table(dp), expected_table(dp))


@pytest.mark.parametrize("dp", DATAPATHS, ids=_id)
def test_product_terms_sum_to_the_product_table(dp):
    tab = sim.product_table(dp)
    total = np.zeros_like(tab)
    for g, v in sim.product_terms(dp):
        assert g[0 - dp.a_range[0]] == 0
        for k, row in enumerate(v):
            total[k] += np.outer(np.array(g, dtype=np.int64), np.array(row, dtype=np.int64))
    assert np.array_equal(total, tab)


@pytest.mark.parametrize(("w", "f"), [(w, f) for w in range(1, 16, 2) for f in range(-(-w // 2), 17)])
def test_lut_entry_is_nearest_integer_and_never_a_tie(w, f):
    for a in range(-128, 256):
        r = sim.lut_entry(a, w, f)
        x_sq = Fraction(a * a * 2 ** (2 * f), 2**w)       # (|A| * sqrt2^(2F-W))^2
        mag = abs(r)
        assert (Fraction(2 * mag - 1, 2) ** 2 < x_sq or mag == 0) and x_sq < Fraction(2 * mag + 1, 2) ** 2
        assert (r < 0) == (a < 0) or r == 0


def test_lut_entry_hand_values():
    # 5 * 2^(2 - 1/2) = 14.142..., 3 * 2^(3 - 3/2) = 8.485...
    assert (sim.lut_entry(5, 1, 2), sim.lut_entry(-5, 1, 2), sim.lut_entry(3, 3, 3)) == (14, -14, 8)


def test_minus_zero_code_decodes_to_zero():
    dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split")
    assert sim.decode_weight(dp, 0b1000) == (1, None)
    assert not sim.product_table(dp)[:, :, 0b1000].any()


def test_invalid_codes_have_zero_products():
    dp = Datapath(fmt="pot", a_bits=3, w_bits=3, e_max=1)      # m_bits = 2, m = 3 is out of range
    tab = sim.product_table(dp)
    assert not tab[:, :, 0b011].any() and not tab[:, :, 0b111].any()


def test_split_hand_products():
    dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split")    # E_max = 6, S = 3
    # A = 5, code sgn=1 m=4 -> W = 3 (odd): -(5 << (3 - 1)) on acc 1
    assert sim.product(dp, 5, 0b1100) == (-20, 1)
    # A = 5, code m=5 -> W = 4 (even): 5 << (3 - 2) on acc 0
    assert sim.product(dp, 5, 0b0101) == (10, 0)


def test_product_table_shape_and_dtype():
    dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split", e_max=7)
    tab = sim.product_table(dp)
    assert tab.dtype == np.int64 and tab.shape == (2, 16, 32)
