"""Adder-tree building blocks with deferred carries.

A *term* is a pair ``(x, c)`` of a two's complement value and a 1-bit carry that
stands for ``x + c`` (a lane's ``XOR`` form of a negation, docs/datapath.md
section 9). Each tree adder computes ``x0 + x1 + c0`` as one carry-chain adder
with ``c0`` on its carry input and passes ``c1`` on, so ``N`` terms need ``N - 1``
adders and leave one carry for the accumulator adder. Tree nodes carry a
``keep`` attribute so that synthesis keeps one carry-chain adder per node instead
of merging the tree into one multi-operand adder of plain LUTs.
"""

from __future__ import annotations

from amaranth.hdl import Signal, signed

__all__ = ["add_terms", "tree_depth", "register"]


def tree_depth(n: int) -> int:
    """Adder levels of a tree over ``n`` terms: ``ceil(log2(n))``."""
    return max(n - 1, 0).bit_length()


def register(m, value, name: str, *, reset_less: bool = True):
    """A register stage: a ``sync`` copy of ``value`` (reset-less unless told)."""
    r = Signal.like(value, name=name, reset_less=reset_less)
    m.d.sync += r.eq(value)
    return r


def add_terms(m, terms, *, max_bits: int, level: int, name: str):
    """One tree level: add neighbouring terms pairwise.

    Parameters
    ----------
    m : Module
    terms : list of (Value, Value)
        ``(x, c)`` pairs, ``x`` signed.
    max_bits : int
        Results are kept modulo ``2^max_bits`` (the accumulator width).
    level, name : int, str
        For signal names.

    Returns
    -------
    list of (Signal, Value)
        ``ceil(len(terms) / 2)`` terms; an odd last term passes through.
    """
    out = []
    for i in range(0, len(terms) - 1, 2):
        (x0, c0), (x1, c1) = terms[i], terms[i + 1]
        width = min(max(len(x0), len(x1)) + 1, max_bits)
        s = Signal(signed(width), name=f"{name}_l{level}_{i // 2}", attrs={"keep": 1})
        m.d.comb += s.eq(x0 + x1 + c0)
        out.append((s, c1))
    if len(terms) % 2:
        out.append(terms[-1])
    return out
