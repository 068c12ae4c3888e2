"""Verilator co-simulation of golden layer cases through the engine.

Per case the host program (``hdl.engine.program``) is streamed in (terms, activations
and channel words in parallel, one word per cycle each), ``start`` is pulsed, and the
output stream is read after ``done`` (checked: one code per cycle from ``done + 1``). The harness (``hdl.cosim_harness``) records the
cycles in which ``done`` or ``y_out__valid`` is high; the run's cycle count is the
``done`` cycle minus the ``start`` cycle. One build per ``EngineConfig``, cached.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asqhw.core.errors import UserError
from asqhw.core.validate import check_int

from ..cosim_harness import harness_cpp, input_ports, output_ports, words
from .cycles import run_cycles
from .params import EngineConfig
from .program import build_program, pack_layer, shape_of_case, unpack_outputs

__all__ = ["EngineResult", "engine_config", "build_engine", "run_engine", "run_cases_engine",
           "compare_y", "conform_engine", "DEFAULT_DEPTHS"]

DEFAULT_DEPTHS = dict(act_depth=8192, term_depth=4096, out_depth=2048, max_channels=32)
TRIGGERS = ("done", "y_out__valid")


@dataclass
class EngineResult:
    """What the engine produced for one case."""

    name: str
    y: np.ndarray
    cycles: int          # start to done, measured
    estimate: int        # hdl.engine.cycles.run_cycles
    missing: int
    module: str
    wall_s: float
    error: str | None = None   # the engine runs raise instead; kept for conform's table


def engine_config(case, *, lanes: int, schedule: str = "auto", depths: dict | None = None) -> EngineConfig:
    """The engine build that runs ``case``; ``auto`` is grouped for pot and post split."""
    dp = case.datapath
    if schedule == "auto":
        schedule = "grouped" if dp.arch in ("shift", "split") else "any"
    out = case.manifest["output"]
    return EngineConfig(dp, lanes, case.acc_bits, out["bits"], bool(out["signed"]), schedule,
                        **(depths or DEFAULT_DEPTHS))


def build_engine(ecfg: EngineConfig, cache=None):
    """Compile (or fetch from the cache) the Verilator simulator of one engine build."""
    from ..verilator import build
    from .emit import render

    text, sidecar = render(ecfg)
    module = sidecar["module"]
    exe = build(text, module, harness_cpp(module, sidecar["ports"], triggers=TRIGGERS), cache=cache)
    return exe, sidecar


def _columns(n, ins, values):
    """uint32 stimulus matrix: per input port, ``values[name]`` is an int array (or scalar)."""
    cols = []
    for p in ins:
        v = values.get(p["name"], 0)
        for i in range(words(p["width"])):
            if isinstance(v, np.ndarray):
                cols.append(((v >> (32 * i)) & 0xFFFFFFFF).astype(np.uint32))
            else:
                cols.append(np.full(n, (int(v) >> (32 * i)) & 0xFFFFFFFF, dtype=np.uint32))
    return np.stack(cols, axis=1)


def _stream(n, start, words_list):
    """Valid and payload columns of a stream carrying ``words_list`` from cycle ``start``."""
    valid = np.zeros(n, dtype=np.uint64)
    valid[start:start + len(words_list)] = 1
    payload = [0] * n
    payload[start:start + len(words_list)] = words_list
    return valid, payload


def run_engine(ecfg: EngineConfig, exe: Path, sidecar: dict, shape, x, w, M, B, sh, *, name="run"):
    """Run one layer on a built engine; return ``(y, cycles, estimate, missing, wall_s)``."""
    prog = build_program(ecfg, shape, x, w, M, B, sh)
    est = run_cycles(ecfg.lanes, shape.engine_geometry, prog.counts, ecfg.rq_pipeline).cycles
    load = max(len(prog.terms), len(prog.act), len(prog.params))
    s = load
    n_out = shape.out_words
    n = s + 1 + 2 * est + 200 + n_out
    ports = sidecar["ports"]
    ins, outs = input_ports(ports), output_ports(ports)
    values = {"layer": pack_layer(ecfg, prog.layer), "y_out__ready": 1}
    start = np.zeros(n, dtype=np.uint64)
    start[s] = 1
    values["start"] = start
    for prefix, data in (("w_in", prog.terms), ("a_in", prog.act), ("p_in", prog.params)):
        valid, payload = _stream(n, 0, data)
        values[f"{prefix}__valid"] = valid
        width = next(p["width"] for p in ins if p["name"] == f"{prefix}__payload")
        values[f"{prefix}__payload"] = payload if width > 64 else np.array(payload, dtype=np.uint64)
    cols = []
    for p in ins:
        v = values.get(p["name"], 0)
        for i in range(words(p["width"])):
            if isinstance(v, list):
                cols.append(np.fromiter(((x >> (32 * i)) & 0xFFFFFFFF for x in v), dtype=np.uint32, count=n))
            elif isinstance(v, np.ndarray):
                cols.append(((v >> np.uint64(32 * i)) & np.uint64(0xFFFFFFFF)).astype(np.uint32))
            else:
                cols.append(np.full(n, (int(v) >> (32 * i)) & 0xFFFFFFFF, dtype=np.uint32))
    data = np.stack(cols, axis=1)
    with tempfile.TemporaryDirectory(prefix="asqhw-engine-") as tmp:
        stim, out = Path(tmp) / "stim.bin", Path(tmp) / "out.bin"
        with open(stim, "wb") as f:
            f.write(np.uint32(n).tobytes())
            f.write(data.tobytes())
        t0 = time.perf_counter()
        proc = subprocess.run([str(exe), str(stim), str(out)], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{exe} failed on {name}: {proc.stderr.strip()}")
        raw = np.fromfile(out, dtype=np.uint32)
    out_words = sum(words(p["width"]) for p in outs)
    raw = raw.reshape(-1, 1 + out_words)
    col, off = {}, 1
    for p in outs:
        col[p["name"]] = raw[:, off].astype(np.int64)   # every output here is <= 32 bits
        off += words(p["width"])
    cyc = raw[:, 0].astype(np.int64)
    done_at = cyc[col["done"] == 1]
    if done_at.size != 1:
        raise RuntimeError(f"{name}: engine raised done {done_at.size} times (expected once)")
    cycles = int(done_at[0]) - s
    out_cycles = cyc[col["y_out__valid"] == 1]
    if not np.array_equal(out_cycles, np.arange(1, n_out + 1) + done_at[0]):
        # the cycle model's drain figure (hdl.engine.cycles.io_cycles) assumes this
        raise RuntimeError(f"{name}: the output stream did not run one code per cycle from done + 1")
    ys = col["y_out__payload"][col["y_out__valid"] == 1] & ((1 << ecfg.out_bits) - 1)
    if ecfg.out_signed:
        ys = np.where(ys >> (ecfg.out_bits - 1) & 1, ys - (1 << ecfg.out_bits), ys)
    missing = abs(n_out - ys.size)
    vals = np.full(n_out, np.iinfo(np.int16).min, dtype=np.int64)
    vals[:min(n_out, ys.size)] = ys[:n_out]
    return unpack_outputs(shape, vals), cycles, est, missing, wall


def run_cases_engine(cases, *, lanes: int = 8, schedule: str = "auto", cache=None,
                     depths: dict | None = None, progress=None) -> list[EngineResult]:
    """Run golden cases through the engine in Verilator; one result per case, in order."""
    cases = list(cases)
    check_int("lanes", lanes, 1)
    cfgs = [engine_config(c, lanes=lanes, schedule=schedule, depths=depths) for c in cases]
    distinct = list(dict.fromkeys(cfgs))
    with ThreadPoolExecutor(max_workers=2) as pool:
        builds = dict(zip(distinct, pool.map(lambda c: build_engine(c, cache), distinct)))
    results = []
    for i, (case, ecfg) in enumerate(zip(cases, cfgs)):
        exe, sidecar = builds[ecfg]
        shape = shape_of_case(case)
        y, cycles, est, missing, wall = run_engine(ecfg, exe, sidecar, shape, case["x"], case["w"],
                                                   case["M"], case["B"], case["sh"], name=case.name)
        results.append(EngineResult(case.name, y.astype(np.int16), cycles, est, missing,
                                    sidecar["module"], wall))
        if progress is not None:
            progress(i + 1, len(cases), case.name)
    return results


def compare_y(case, y) -> "CaseReport":
    """Mismatch report of the engine's output codes against the case's ``y``.

    The engine exposes output codes only, so its conformance is on ``y``; the
    accumulators are checked by the ``top`` unit's co-simulation.
    """
    from asqhw.core.conform import CaseReport, find_mismatches

    bad, listed = find_mismatches(case.name, "engine:y", case["y"], y)
    return CaseReport(case.name, int(bad.size), int(np.count_nonzero(bad)), listed)


def conform_engine(cases, args):
    """``asqhw conform --rtl --unit engine``: ``[(result, report)]`` per case."""
    import sys

    if args.simulator != "verilator":
        raise UserError("the engine co-simulation runs in Verilator only (--simulator verilator)")
    sched = {"any": "any", "grouped": "grouped"}.get(args.schedule, "auto")

    def progress(i, n, name):
        if not args.quiet:
            print(f"[{i}/{n}] {name}", file=sys.stderr, flush=True)

    results = run_cases_engine(cases, lanes=8 if args.lanes is None else args.lanes, schedule=sched, progress=progress)
    out = []
    for case, r in zip(cases, results):
        rep = compare_y(case, r.y)
        if r.missing and not rep.mismatches:
            rep.mismatches = r.missing
        r.seconds = r.wall_s
        out.append((r, rep))
    return out
