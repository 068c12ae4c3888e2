"""Synthesis of the layer engine with the flow of ``asqhw synth`` (``hdl.synth_tools``).

The engine's wide configuration inputs (the ``layer`` word and the channel-memory stream
payload) would need more pins than an iCE40 package has, so the synthesised top
(:class:`EngineSynthTop`) loads them through two shift registers from one serial pin;
every other port is a pin. That harness adds the same flip-flops to every design
(``layer`` + channel word bits) and no logic on the datapath. Memories are inferred as
block RAM (``SB_RAM40_4K`` on iCE40, ``DP16KD`` on ECP5), counted in the ``bram`` column.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from asqhw.core import atomic
from asqhw.core.errors import UserError
from asqhw.core.params import Datapath

from ..synth_config import DESIGNS
from .params import EngineConfig
from .top import Engine

__all__ = ["ENGINE_DESIGNS", "SYNTH_DEPTHS", "EngineSynthTop", "engine_configs", "run_engine_synth",
           "BRAM_CELLS"]

#: design -> (format, arch, schedule): the dot-unit designs of ``hdl.synth``, in the engine tables' order
ENGINE_DESIGNS = {d: DESIGNS[d] for d in ("uniform", "uniform-grouped", "pot", "pot-grouped", "post-split",
                                          "post-split-grouped", "post-lut")}
#: engine-only: grouped post split with one accumulator per lane (odd-exponent sum parked, docs/engine.md)
ENGINE_DESIGNS["post-split-grouped1"] = ("post", "split", "grouped1")
SYNTH_DEPTHS = dict(act_depth=2048, term_depth=1024, out_depth=1024, max_channels=64)
BRAM_CELLS = {"ice40": ("SB_RAM40_4K",), "ecp5": ("DP16KD", "PDPW16KD"), "xilinx": ("RAMB18E1", "RAMB36E1")}
FAN_IN = 576


class EngineSynthTop(wiring.Component):
    """The engine with its ``layer`` word and channel-word payload loaded serially."""

    def __init__(self, ecfg: EngineConfig):
        self._e = ecfg
        self.engine = Engine(ecfg)
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1),
            "ser": In(1), "ser_layer": In(1), "ser_param": In(1),
            "w_in": In(stream.Signature(ecfg.term_bits)),
            "a_in": In(stream.Signature(ecfg.dp.a_bits)),
            "p_valid": In(1), "p_ready": Out(1),
            "y_out": Out(stream.Signature(ecfg.out_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = eng = self.engine
        lw = Value.cast(eng.layer).shape().width
        pw = self._e.param_bits
        layer = Signal(lw)
        param = Signal(pw)
        with m.If(self.ser_layer):
            m.d.sync += layer.eq(Cat(self.ser, layer[:-1]))
        with m.If(self.ser_param):
            m.d.sync += param.eq(Cat(self.ser, param[:-1]))
        wiring.connect(m, wiring.flipped(self.w_in), eng.w_in)
        wiring.connect(m, wiring.flipped(self.a_in), eng.a_in)
        wiring.connect(m, eng.y_out, wiring.flipped(self.y_out))
        m.d.comb += [
            eng.start.eq(self.start), self.busy.eq(eng.busy), self.done.eq(eng.done),
            eng.layer.eq(layer), eng.p_in.payload.eq(param), eng.p_in.valid.eq(self.p_valid),
            self.p_ready.eq(eng.p_in.ready),
        ]
        return m


def engine_configs(designs, w_bits, *, a_bits=4, lanes=(8,), out_bits=4, depths=None, rq_pipeline=1):
    """``[(label, EngineConfig)]`` for every design x b_w x lanes."""
    out = []
    for d in designs:
        if d not in ENGINE_DESIGNS:
            raise UserError(f"engine design must be one of {', '.join(ENGINE_DESIGNS)}, not {d!r}")
        fmt, arch, sched = ENGINE_DESIGNS[d]
        for bw in w_bits:
            for n in lanes:
                dp = Datapath(fmt, a_bits, bw, arch=arch)
                ecfg = EngineConfig(dp, n, dp.natural_acc_bits(FAN_IN), out_bits, False, sched,
                                    rq_pipeline=rq_pipeline, **(depths or SYNTH_DEPTHS))
                rq = f" rq={rq_pipeline}" if rq_pipeline != 1 else ""
                out.append((f"engine {d} b_w={bw} b_a={a_bits} lanes={n}{rq}", d, ecfg))
    return out


def _verilog(ecfg):
    from amaranth.back import verilog

    return verilog.convert(EngineSynthTop(ecfg), name="top", emit_src=False)


COLUMNS = ("label", "design", "b_w", "b_a", "lanes", "acc_bits", "rq_pipeline", "target", "lut", "carry",
           "ff", "bram", "dsp", "cells", "fmax_mhz", "fmax_seeds", "error")


def run_engine_synth(configs, targets, *, seeds=1, jobs=1, outdir, force=False, timeout=600.0,
                     progress=lambda s: print(s, file=sys.stderr, flush=True), scheduler=None) -> list[dict]:
    """Synthesise and place-and-route each engine on each target; write engine_synth.{md,csv,json}.

    The tool runs go through the sweep of ``asqhw synth`` (``hdl.synth``): cached results
    are read, the rest are Dask tasks on a local cluster of ``jobs`` threads or on the
    scheduler at ``scheduler`` (``hdl.jobs``).
    """
    from ..jobs import JobRunner
    from ..synth_sweep import seed_summary, sweep, worker_versions
    from ..synth_tools import TARGETS, YOSYS, Cache, default_cache_dir

    out = Path(outdir)
    names = [out / f"engine_synth.{ext}" for ext in ("md", "csv", "json")]
    if not force:
        for p in names:
            if p.exists():
                raise UserError(f"{p} exists; pass --force to overwrite it")
    for t in targets:
        if t not in TARGETS:
            raise UserError(f"unknown target {t!r}; choose from {', '.join(TARGETS)}")
    tools = [YOSYS] + sorted({TARGETS[t].pnr_tool for t in targets if TARGETS[t].pnr_tool})
    cache = Cache(default_cache_dir())
    with JobRunner(jobs, scheduler) as runner:
        versions = worker_versions(runner, tools)      # every tool on every worker, before any work
        sources = [(_verilog(e), 0) for _, _, e in configs]
        labelled = [SimpleNamespace(label=label) for label, _, _ in configs]
        synth, pnr = sweep(runner, labelled, sources, targets, seeds, False, timeout, cache, versions,
                            progress or (lambda line: None))
    rows = []
    for i, (label, design, e) in enumerate(configs):
        for t in targets:
            tg = TARGETS[t]
            s = synth[i, tg.family]
            runs = [pnr[i, t, k] for k in range(1, seeds + 1) if (i, t, k) in pnr]
            seed_row = seed_summary(runs)
            bram = sum(s["cells"].get(c, 0) for c in BRAM_CELLS[tg.family]) if not s["error"] else None
            rows.append({"label": label, "design": design, "b_w": e.dp.w_bits, "b_a": e.dp.a_bits,
                         "lanes": e.lanes, "acc_bits": e.acc_bits, "rq_pipeline": e.rq_pipeline,
                         "target": t, "lut": s["lut"],
                         "carry": s["carry"], "ff": s["ff"], "bram": bram, "dsp": s["dsp"],
                         "cells": seed_row["cells"], "fmax_mhz": seed_row["fmax_mhz"],
                         "fmax_seeds": seed_row["fmax_seeds"],
                         "error": s["error"] or next((r["error"] for r in runs if r["error"]), None)})
    atomic.ensure_dir(out)
    md = ["| " + " | ".join(COLUMNS[:-2]) + " |", "|" + "---|" * (len(COLUMNS) - 2)]
    md += ["| " + " | ".join("-" if r[c] is None else str(r[c]) for c in COLUMNS[:-2]) + " |" for r in rows]
    atomic.write_text(names[0], "\n".join(md) + "\n", force=force)
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=COLUMNS)
    wr.writeheader()
    for r in rows:
        wr.writerow({**r, "fmax_seeds": " ".join(str(v) for v in r["fmax_seeds"])})
    atomic.write_text(names[1], buf.getvalue(), force=force)
    atomic.write_text(names[2], json.dumps({"tools": versions, "depths": SYNTH_DEPTHS, "seeds": seeds,
                                            "rows": rows}, indent=1) + "\n", force=force)
    return rows


def cmd_engine_synth(args) -> int:
    """``asqhw synth --unit engine``."""
    designs = args.design if args.design != DEFAULT_DOT_DESIGNS else list(ENGINE_DESIGNS)
    cfgs = engine_configs(designs, args.w_bits, a_bits=args.a_bits[0], lanes=args.lanes,
                          rq_pipeline=min(max(args.pipeline, 1), 3))
    rows = run_engine_synth(cfgs, args.target, seeds=args.seeds, jobs=args.jobs, outdir=args.out,
                            force=args.force, timeout=args.timeout, scheduler=args.scheduler)
    print(Path(args.out, "engine_synth.md").read_text(), end="")
    return 0 if all(r["error"] is None for r in rows) else 1


#: ``asqhw synth --design`` default (the dot-unit designs): no --design given means every engine design.
DEFAULT_DOT_DESIGNS = list(DESIGNS)
