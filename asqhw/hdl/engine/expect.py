"""Weight-code statistics for the cycle model when no weights are given.

The stated model: weights ``w ~ N(0, 1)`` i.i.d., quantised to the nearest level of the
format with the levels scaled so that the largest magnitude is ``clip`` standard
deviations; by default ``clip`` is the one that minimises the mean squared quantisation
error of ``N(0, 1)`` for that level set (:func:`mse_clip`, a grid search), the scale a
trained quantiser (LSQ, APoT) approaches. Under it, :func:`expected_entries` is the exact expectation of
the entry count of one channel's term list (``hdl.engine.program.channel_entries``);
:func:`sample_codes` draws weight codes from the same model ("realistic weights" for
tests and examples). Floats appear only here, never in the datapath.
"""

from __future__ import annotations

from math import erf, sqrt

import numpy as np

from asqhw.core.params import Datapath

from .params import EngineConfig
from .program import term_levels

__all__ = ["DEFAULT_CLIP", "mse_clip", "code_values", "code_probabilities", "sample_codes", "expected_entries"]

DEFAULT_CLIP = None      # None: the MSE-optimal clip of the level set


def code_values(dp: Datapath) -> dict[int, float]:
    """Real level (in units of the largest magnitude) of every canonical weight code."""
    if dp.fmt == "uniform":
        top = 2 ** (dp.w_bits - 1)
        return {q: q / top for q in range(-top, top)}
    base = 2.0 if dp.fmt == "pot" else sqrt(2.0)
    out = {0: 0.0}
    for m in range(1, dp.e_max + 2):
        v = base ** -(m - 1)
        out[m] = v
        out[(1 << dp.m_bits) | m] = -v
    return out


def _phi(x: float) -> float:
    return 0.5 * (1.0 + erf(x / sqrt(2.0)))


def mse_clip(dp: Datapath) -> float:
    """Clip (largest level in standard deviations) minimising the MSE of quantising N(0, 1).

    Grid search over 0.50 .. 8.00 in steps of 0.01 with the error integrated numerically
    on 4001 points over [-8, 8].
    """
    return _mse_clip(dp.fmt, dp.w_bits, dp.e_max, dp.m_bits)


_CLIPS: dict = {}


def _mse_clip(fmt, w_bits, e_max, m_bits):
    key = (fmt, w_bits, e_max)
    if key not in _CLIPS:
        dp = Datapath(fmt, 4, w_bits, e_max=e_max, arch="split" if fmt == "post" else None)  # levels only
        vals = np.array(sorted(set(code_values(dp).values())))
        x = np.linspace(-8, 8, 4001)
        pdf = np.exp(-x * x / 2)
        best = None
        for clip in np.arange(0.5, 8.0001, 0.01):
            lv = vals * clip
            idx = np.abs(x[:, None] - lv[None, :]).argmin(axis=1)
            err = float(np.sum((x - lv[idx]) ** 2 * pdf))
            if best is None or err < best[0]:
                best = (err, round(float(clip), 2))
        _CLIPS[key] = best[1]
    return _CLIPS[key]


def _bins(dp: Datapath, clip):
    if clip is None:
        clip = mse_clip(dp)
    vals = code_values(dp)
    items = sorted(vals.items(), key=lambda kv: kv[1])
    codes = [c for c, _ in items]
    levels = np.array([v * clip for _, v in items])
    edges = (levels[1:] + levels[:-1]) / 2
    return codes, levels, edges


def code_probabilities(dp: Datapath, clip=DEFAULT_CLIP) -> dict[int, float]:
    """Probability of each canonical code under the Gaussian model."""
    codes, _, edges = _bins(dp, clip)
    cdf = [0.0] + [_phi(e) for e in edges] + [1.0]
    return {c: cdf[i + 1] - cdf[i] for i, c in enumerate(codes)}


def sample_codes(dp: Datapath, shape, rng: np.random.Generator, clip=DEFAULT_CLIP) -> np.ndarray:
    """Weight codes (as stored) drawn from the Gaussian model."""
    codes, _, edges = _bins(dp, clip)
    idx = np.searchsorted(edges, rng.standard_normal(shape))
    return np.asarray(codes, dtype=np.int64)[idx]


def expected_entries(ecfg: EngineConfig, fan_in: int, clip=DEFAULT_CLIP) -> float:
    """Expected entries of one channel's term list over ``fan_in`` i.i.d. weights.

    ``any``: ``E[max(1, nnz)] = K (1 - p0) + p0^K``. ``grouped``: the count is
    ``T + s_max - D + 1`` (``T`` terms, ``D`` distinct shift levels, ``s_max`` the largest;
    1 if no term), so ``E = E[T] + sum_{s>=1} (1 - r_s^K) - sum_l (1 - (1 - q_l)^K) + 1`` with
    ``q_l`` the probability that one weight has a term at level ``l`` and ``r_s`` that it
    has none at a level ``>= s``. ``grouped1``: the sum of that expectation over the
    odd-W terms and over the even-W terms (two lists, each at least one entry).
    """
    probs = code_probabilities(ecfg.dp, clip)
    k = fan_in
    if not ecfg.grouped:
        p0 = probs[0]
        return k * (1 - p0) + p0 ** k
    if ecfg.one_acc:        # grouped1: the odd-W list and the even-W list, each counted so
        return sum(_grouped_entries(probs, {c: [t[0] for t in term_levels(ecfg, [c]) if t[3] == acc]
                                            for c in probs}, k) for acc in (1, 0))
    return _grouped_entries(probs, {c: [t[0] for t in term_levels(ecfg, [c])] for c in probs}, k)


def _grouped_entries(probs: dict, per_code: dict, k: int) -> float:
    """``E[T + s_max - D + 1]`` of one Horner list over ``k`` weights (:func:`expected_entries`)."""
    top = max((max(v) for v in per_code.values() if v), default=0)
    e_terms = sum(p * len(per_code[c]) for c, p in probs.items())
    q = [sum(p for c, p in probs.items() if lvl in per_code[c]) for lvl in range(top + 1)]
    e_levels = sum(1 - (1 - ql) ** k for ql in q)
    e_smax = 0.0
    for s in range(1, top + 1):
        r = sum(p for c, p in probs.items() if all(lvl < s for lvl in per_code[c]))
        e_smax += 1 - r ** k
    return k * e_terms + e_smax - e_levels + 1
