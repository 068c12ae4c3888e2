"""Cycle model of the ASQ adapter pass, exact for the companion unit ``hdl.engine.adapter_unit``.

The unit (spec sections 13-15) sits beside the engine and reuses its output path:

1. **Pool**, fused into the drain: the wide codes ``z`` arrive in order ``[c][hw]``, one
   per cycle, and one running adder sums each channel as its codes are written: no cycle
   after the last code.
2. **Mean codes**: ``C`` requantisations, one per cycle through one requantiser.
3. **FC layers**: one 8x8-bit multiply-add per cycle, ``C*C_h + C_h`` cycles
   (``C`` without a hidden layer); each output's requantisation overlaps the next MACs.
   A MAC waits for its input code when that code is still in the requantiser: one
   cycle when ``C = 1``, and ``3 - C_h`` cycles when ``C_h`` is 1 or 2 (the output layer
   reads the last hidden code two cycles after its row's last MAC).
4. **Reciprocal**: the restoring divider of section 15, 16 cycles; alongside it the
   per-sample multipliers ``M_n`` of the consuming layers (section 11), one per cycle,
   so ``n_M`` multipliers add ``max(0, n_M - 16)`` cycles.
5. **Per-sample requantisation** of ``z``: fused into the next layer's activation load
   (one code per cycle, counted by ``hdl.engine.cycles.io_cycles``).

Per sample, from ``start`` to ``done``: ``C + fc_macs + stalls + max(16, n_M) + 3`` cycles (3: the
start cycle, the requantiser's output cycle of ``beta_q`` and the ``done`` cycle), serial
after the layer that produces ``z`` (the adapter is a barrier, section 15).
"""

from __future__ import annotations

__all__ = ["ADAPTER_TAIL", "DIVIDER_CYCLES", "adapter_cycles", "adapter_stalls"]

DIVIDER_CYCLES = 16
ADAPTER_TAIL = 3


def adapter_stalls(channels: int, hidden: int) -> int:
    """Cycles the unit's multiply-add waits for a code still in the requantiser."""
    return max(0, 2 - channels) + (max(0, 3 - hidden) if hidden else 0)


def adapter_cycles(channels: int, hidden: int, batch: int = 1, multipliers: int = 0) -> int:
    """Cycles of the adapter pass over ``batch`` samples of a ``channels``-channel tensor.

    ``multipliers``: the number ``n_M`` of per-sample multipliers made alongside the divider
    (0: none; ``asqhw cycles`` passes ``C_out * n_acc`` of the consuming layers).
    """
    fc = channels * hidden + hidden if hidden else channels
    return batch * (channels + fc + adapter_stalls(channels, hidden) + max(DIVIDER_CYCLES, multipliers)
                    + ADAPTER_TAIL)
