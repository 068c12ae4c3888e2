"""Beats of one dot product for ``DotUnit`` (the two schedules of docs/rtl.md).

Cycle cost of one dot product over ``K`` terms with ``lanes`` lanes:

- ``any``: ``max(1, ceil(K / lanes))`` beats, zero weights included;
- ``grouped``: zero weights (``m = 0``, uniform ``q = 0``) are skipped and the
  others grouped by exponent ``W`` (pot/post) or by magnitude ``|q|`` (uniform):
  ``sum over G of ceil(n_G / lanes)`` beats, where ``n_G`` is the number of terms
  in group ``G``; at least 1 (a dot product with no nonzero weight is one
  all-zero beat with ``exp = 0`` / ``mag = 0``). Groups go in increasing order.
  With ``E_max + 1`` exponents in use this costs at most ``E_max`` extra partial
  beats over ``ceil(K' / lanes)`` for the ``K'`` nonzero terms; uniform weights
  have ``2^(b_w-1)`` magnitudes, so up to ``2^(b_w-1) - 1`` extra partial beats.
"""

from __future__ import annotations

from asqhw.core.params import Datapath
from asqhw.core.validate import check_choice, check_int

__all__ = ["beats", "cycles"]


def _check(dp, lanes, schedule, a_vec, w_vec):
    if not isinstance(dp, Datapath):
        raise TypeError(f"dp must be an asqhw.core.params.Datapath, not {dp!r}")
    check_int("lanes", lanes, 1)
    check_choice("schedule", schedule, ("any", "grouped"))
    if schedule == "grouped" and dp.arch not in ("shift", "split", "mul"):
        raise ValueError(f"schedule 'grouped' needs arch shift, split or mul, not {dp.arch!r}")
    a = [int(v) for v in a_vec]
    w = [int(v) for v in w_vec]
    if len(a) != len(w):
        raise ValueError(f"a_vec and w_vec differ in length: {len(a)} != {len(w)}")
    lo, hi = dp.a_range
    bad = [v for v in a if not lo <= v <= hi]
    if bad:
        raise ValueError(f"activation code {bad[0]} outside {lo}..{hi}")
    lo, hi = dp.w_range
    bad = [v for v in w if not lo <= v <= hi or (dp.fmt != "uniform" and v & ((1 << dp.m_bits) - 1) > dp.e_max + 1)]
    if bad:
        raise ValueError(f"weight code {bad[0]} is out of range")
    return a, w


def _pack(values, bits):
    mask = (1 << bits) - 1
    out = 0
    for i, v in enumerate(values):
        out |= (v & mask) << (i * bits)
    return out


def _groups(dp, a, w):
    """Nonzero terms as ``{W: [(A, sgn), ...]}`` (uniform: ``{|q|: ...}``) in input order."""
    mb = dp.m_bits
    groups: dict[int, list[tuple[int, int]]] = {}
    if dp.fmt == "uniform":
        for av, wv in zip(a, w):
            if wv:
                groups.setdefault(abs(wv), []).append((av, int(wv < 0)))
        return groups
    for av, wv in zip(a, w):
        m = wv & ((1 << mb) - 1)
        if m:
            groups.setdefault(m - 1, []).append((av, wv >> mb))
    return groups


def beats(dp: Datapath, lanes: int, schedule: str, a_vec, w_vec) -> list[dict[str, int]]:
    """Port values of every beat of one dot product, in order.

    Parameters
    ----------
    dp : Datapath
    lanes : int
    schedule : str
        ``"any"`` or ``"grouped"``.
    a_vec, w_vec : sequence of int
        Activation codes and weight codes (as stored in the vector files) of the fan-in.

    Returns
    -------
    list of dict
        Keys ``valid``, ``first``, ``last``, ``a`` and ``w`` (``any``) or ``neg`` and
        ``exp`` (``grouped``; ``mag`` for uniform); lane fields already packed into integers.
    """
    a, w = _check(dp, lanes, schedule, a_vec, w_vec)
    out = []
    if schedule == "any":
        for i in range(0, max(len(a), 1), lanes):
            ca, cw = a[i:i + lanes], w[i:i + lanes]
            ca += [0] * (lanes - len(ca))
            cw += [0] * (lanes - len(cw))
            out.append({"a": _pack(ca, dp.a_bits), "w": _pack(cw, dp.storage_bits)})
    else:
        key = "mag" if dp.fmt == "uniform" else "exp"
        for group, terms in sorted(_groups(dp, a, w).items()):
            for i in range(0, len(terms), lanes):
                chunk = terms[i:i + lanes]
                out.append({"a": _pack([t[0] for t in chunk], dp.a_bits),
                            "neg": _pack([t[1] for t in chunk], 1), key: group})
        if not out:
            out.append({"a": 0, "neg": 0, key: 0})
    for i, beat in enumerate(out):
        beat.update(valid=1, first=int(i == 0), last=int(i == len(out) - 1))
    return out


def cycles(dp: Datapath, lanes: int, schedule: str, a_vec, w_vec) -> int:
    """Number of beats ``beats`` returns (see the module docstring for the formula)."""
    a, w = _check(dp, lanes, schedule, a_vec, w_vec)
    if schedule == "any":
        return max(1, -(-len(a) // lanes))
    return max(1, sum(-(-len(t) // lanes) for t in _groups(dp, a, w).values()))
