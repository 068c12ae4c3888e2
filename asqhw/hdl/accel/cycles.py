"""Exact cycle count of one image on the accelerator, step by step (docs/accelerator.md).

Every step starts with ``FETCH`` (the descriptor ROM read) and ``GO`` (its units start); the
feeders and the vector unit issue one read per cycle from ``GO + 1`` and their words arrive one
cycle (feeders) or two cycles (vector unit) later:

- ``LAYER``: the loads are idle ``load = max(N + 3, n_chan + 2)`` cycles after ``GO`` (``N``
  activation words; the terms are in the engine's ROM); the engine starts in that cycle and is done
  ``hdl.engine.cycles.run_cycles`` cycles later; the drain then writes one output per cycle:
  ``2 + load + run + out_words``;
- ``VEC`` (pool, add, stored quant): ``N`` reads, outputs two cycles after their window's last
  read: ``N + 4``;
- ``ADAPTER``: the parameter loads are idle ``max(n + 2 over the non-empty loads, 1)`` cycles
  after ``GO``; the unit starts then and is done ``hdl.engine.adapter.adapter_cycles`` later:
  ``2 + load + pass``.

The image's count (register ``CYCLES``) is the sum over the steps: from the first ``FETCH`` to the
cycle that writes the last logit. Around it, with streams that never stall: the ``n_in`` input
beats, one ``WAIT`` cycle, and the logits leave ``m_out`` from :data:`OUT_LATENCY` cycles after
they are written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.adapter import adapter_cycles
from ..engine.cycles import run_cycles
from .program import AccelProgram

__all__ = ["StepCycles", "ImageCycles", "image_cycles", "OUT_LATENCY", "STEP_OVERHEAD"]

STEP_OVERHEAD = 2       # FETCH + GO
OUT_LATENCY = 2         # a logit written in cycle t is on m_out from t + OUT_LATENCY (buffered FIFO)


@dataclass
class StepCycles:
    """Cycles of one step, by phase."""

    step: int
    op: str
    node: str
    total: int
    phases: dict = field(default_factory=dict)


@dataclass
class ImageCycles:
    """Cycles of one image: per step, the total (``CYCLES``) and the stream figures."""

    steps: list
    n_in: int
    classes: int

    @property
    def total(self) -> int:
        return sum(s.total for s in self.steps)

    @property
    def period(self) -> int:
        """Cycles from one image's first input beat to the next one's, streams never stalling."""
        tail = self.classes + OUT_LATENCY - 1      # last logit leaves this many cycles after the end
        return max(self.n_in + 1 + self.total, self.total + tail + 1)

    def by_kind(self) -> dict:
        """Cycles summed by phase kind over the steps."""
        out: dict = {}
        for s in self.steps:
            for k, v in s.phases.items():
                out[k] = out.get(k, 0) + v
        return out


def _load(counts) -> int:
    non_empty = [n + 2 for n in counts if n]
    return max(non_empty + [1])


def image_cycles(prog: AccelProgram) -> ImageCycles:
    """The exact cycle count of one image on ``prog``'s accelerator (the count is the same for
    every image: nothing in the machine depends on the data)."""
    out = []
    for i, s in enumerate(prog.steps):
        f = s.fields
        if s.op == "LAYER":
            ecfg = prog.engines[f["engine"]].ecfg
            load = max(s.act_words + 3, f["p_count"] + 2)
            run = run_cycles(ecfg.lanes, s.shape.engine_geometry, s.counts, ecfg.rq_pipeline).cycles
            ph = {"fetch": STEP_OVERHEAD, "load": load, "run": run, "drain": f["out_words"]}
        elif s.op == "VEC":
            ph = {"fetch": STEP_OVERHEAD, "vector": s.act_words + 2}
        else:
            load = _load([f["aw_count"], f["aq_count"], f["am_count"]])
            ph = {"fetch": STEP_OVERHEAD, "adapter_load": load,
                  "adapter": adapter_cycles(f["channels"], f["hidden"], multipliers=f["am_count"])}
        out.append(StepCycles(i, s.op, s.node, sum(ph.values()), ph))
    return ImageCycles(out, prog.n_in, prog.classes)
