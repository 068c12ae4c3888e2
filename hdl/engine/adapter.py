"""Cycle model of the ASQ adapter pass as a companion unit of the engine (spec sections 13-15).

Not built in RTL yet: this is the specification the model counts, so its figures are a
model, not a measurement. The unit sits beside the engine and reuses its output path:

1. **Pool**, fused into the drain: the engine writes the wide codes ``z`` in order
   ``[c][n][oy][ox]``, so one running adder per sample sums each channel as its codes
   are written: no extra cycle.
2. **Mean codes**: ``C`` requantisations, one per cycle through one requantiser.
3. **FC layers**: one 8x8-bit multiply-add per cycle, ``C*C_h + C_h`` cycles
   (``C`` without a hidden layer); each output's requantisation overlaps the next MACs.
4. **Reciprocal**: the restoring divider of section 15, 16 cycles.
5. **Per-sample requantisation** of ``z``: fused into the next layer's activation load
   (one code per cycle, counted by ``hdl.engine.cycles.io_cycles``).

Per sample: ``C + fc_macs + 16 + 3`` cycles (3: the requantiser tail of steps 2 and 3 and
the hand-over to the divider), serial after the layer that produces ``z`` (the adapter
is a barrier, section 15).
"""

from __future__ import annotations

__all__ = ["ADAPTER_TAIL", "DIVIDER_CYCLES", "adapter_cycles"]

DIVIDER_CYCLES = 16
ADAPTER_TAIL = 3


def adapter_cycles(channels: int, hidden: int, batch: int = 1) -> int:
    """Cycles of the adapter pass over ``batch`` samples of a ``channels``-channel tensor."""
    fc = channels * hidden + hidden if hidden else channels
    return batch * (channels + fc + DIVIDER_CYCLES + ADAPTER_TAIL)
