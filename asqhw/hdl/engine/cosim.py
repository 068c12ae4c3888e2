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
           "compare_y", "conform_engine", "stall_summary", "read_y_stream", "DEFAULT_DEPTHS", "STALL"]

DEFAULT_DEPTHS = dict(act_depth=8192, term_depth=4096, out_depth=2048, max_channels=32)
TRIGGERS = ("done", "y_out__valid")
STALL = 0.25        # conform --stall: share of idle input cycles and of low y_out ready


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
    io: dict | None = None     # load/read-out cycles measured and without stalls (run_engine)


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


def _stalled_cycles(rng, n_words: int, stall: float) -> np.ndarray:
    """Cycles (from 0) in which the words of a stream are valid, with random idle cycles between them.

    Before each word, every further cycle is idle with probability ``stall`` (geometric gaps).
    """
    gaps = rng.geometric(1.0 - stall, size=n_words) - 1 if n_words else np.zeros(0, dtype=np.int64)
    return np.cumsum(gaps + 1) - 1


def read_y_stream(valid_at, payload, ready, done: int, name: str = "run"):
    """The codes that moved on ``y_out``, checked against the stream rules; ``(codes, last cycle)``.

    ``valid_at``: the cycles with ``valid`` high, ``payload`` their payloads, ``ready`` the
    ready input per cycle. A code moves in a cycle with valid and ready. Raises RuntimeError
    unless valid is high in every cycle from ``done + 1`` to the last move (with no stall: one
    code per cycle, the cycle model's read-out figure, ``hdl.engine.cycles.io_cycles``) and a
    code waiting for ready keeps its payload.
    """
    valid_at = np.asarray(valid_at, dtype=np.int64)
    payload = np.asarray(payload)
    moved = np.asarray(ready)[valid_at] == 1
    last = int(valid_at[moved][-1]) if moved.any() else done
    if not np.array_equal(valid_at, np.arange(done + 1, last + 1)):
        raise RuntimeError(f"{name}: the output stream was not valid in every cycle from done + 1 "
                           f"to its last code")
    held = np.nonzero(~moved[:-1])[0]
    changed = payload[held + 1] != payload[held]
    if np.any(changed):
        raise RuntimeError(f"{name}: y_out changed its payload while ready was low "
                           f"(cycle {int(valid_at[held[np.argmax(changed)]])})")
    return payload[moved], last


def run_engine(ecfg: EngineConfig, exe: Path, sidecar: dict, shape, x, w, M, B, sh, *, name="run",
               stall: float = 0.0, seed: int = 0, io: dict | None = None):
    """Run one layer on a built engine; return ``(y, cycles, estimate, missing, wall_s)``.

    ``stall`` > 0: the three load streams get random idle cycles between words (``valid`` low)
    and ``y_out__ready`` is low in a random share ``stall`` of the cycles (seeded by ``seed``);
    the output is then checked against the AXI-Stream rules (a stalled code stays valid and
    unchanged; codes move only with ``ready``). Stalls fall before ``start`` and after ``done``,
    so ``cycles`` (start to done) is the no-stall count. ``io``, if given, receives the load and
    read-out cycles measured and their no-stall counts (``hdl.engine.cycles.io_cycles``).
    """
    if not 0.0 <= stall < 1.0:
        raise UserError(f"stall must be a probability in [0, 1), not {stall!r}")
    prog = build_program(ecfg, shape, x, w, M, B, sh)
    est = run_cycles(ecfg.lanes, shape.engine_geometry, prog.counts, ecfg.rq_pipeline).cycles
    rng = np.random.default_rng(seed)
    streams = (("w_in", prog.terms), ("a_in", prog.act), ("p_in", prog.params))
    at = {prefix: (_stalled_cycles(rng, len(data), stall) if stall else np.arange(len(data)))
          for prefix, data in streams}
    load = max(int(a[-1]) + 1 if a.size else 0 for a in at.values())
    s = load
    n_out = shape.out_words
    n = s + 1 + 2 * est + 200 + (int(4 * n_out / (1.0 - stall)) + 64 if stall else n_out)
    ports = sidecar["ports"]
    ins, outs = input_ports(ports), output_ports(ports)
    ready = np.ones(n, dtype=np.uint64)
    if stall:
        ready = (rng.random(n) >= stall).astype(np.uint64)
    values = {"layer": pack_layer(ecfg, prog.layer), "y_out__ready": ready}
    start = np.zeros(n, dtype=np.uint64)
    start[s] = 1
    values["start"] = start
    for prefix, data in streams:
        valid = np.zeros(n, dtype=np.uint64)
        valid[at[prefix]] = 1
        payload = [0] * n
        for c, word in zip(at[prefix].tolist(), data):
            payload[c] = word
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
    valid_at = cyc[col["y_out__valid"] == 1]
    codes, last = read_y_stream(valid_at, col["y_out__payload"][col["y_out__valid"] == 1], ready,
                                int(done_at[0]), name)
    if io is not None:
        io.update(load=load, out=last - int(done_at[0]), load_model=max(len(d) for _, d in streams),
                  out_model=n_out)
    ys = codes & ((1 << ecfg.out_bits) - 1)
    if ecfg.out_signed:
        ys = np.where(ys >> (ecfg.out_bits - 1) & 1, ys - (1 << ecfg.out_bits), ys)
    missing = abs(n_out - ys.size)
    vals = np.full(n_out, np.iinfo(np.int16).min, dtype=np.int64)
    vals[:min(n_out, ys.size)] = ys[:n_out]
    return unpack_outputs(shape, vals), cycles, est, missing, wall


def run_cases_engine(cases, *, lanes: int = 8, schedule: str = "auto", cache=None,
                     depths: dict | None = None, progress=None, stall: float = 0.0) -> list[EngineResult]:
    """Run golden cases through the engine in Verilator; one result per case, in order.

    ``stall``: random stalls on the engine's streams (:func:`run_engine`), seeded per case by
    the CRC-32 of its name, so a run is reproducible.
    """
    import zlib

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
        io = {}
        y, cycles, est, missing, wall = run_engine(ecfg, exe, sidecar, shape, case["x"], case["w"],
                                                   case["M"], case["B"], case["sh"], name=case.name,
                                                   stall=stall, seed=zlib.crc32(case.name.encode()), io=io)
        results.append(EngineResult(case.name, y.astype(np.int16), cycles, est, missing,
                                    sidecar["module"], wall, io=io))
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
    sched = {"any": "any", "grouped": "grouped", "grouped1": "grouped1"}.get(args.schedule, "auto")

    def progress(i, n, name):
        if not args.quiet:
            print(f"[{i}/{n}] {name}", file=sys.stderr, flush=True)

    stall = STALL if getattr(args, "stall", False) else 0.0
    results = run_cases_engine(cases, lanes=8 if args.lanes is None else args.lanes, schedule=sched,
                               progress=progress, stall=stall)
    out = []
    for case, r in zip(cases, results):
        rep = compare_y(case, r.y)
        if r.missing and not rep.mismatches:
            rep.mismatches = r.missing
        r.seconds = r.wall_s
        out.append((r, rep))
    return out


def stall_summary(results, stall: float) -> tuple[dict, str]:
    """The stall figures of an engine conform run: a JSON record and one line for the table's foot.

    Stalls fall in the loads (before ``start``) and the read-out (after ``done``), so the
    ``rtl cycles`` column (start to done) is the count of the no-stall run and must equal the
    cycle model; the loads and the read-out are reported measured and without stalls.
    """
    io = [r.io for r in results if r.io]
    rec = {"stall": stall, "load_cycles": sum(i["load"] for i in io),
           "load_cycles_no_stall": sum(i["load_model"] for i in io),
           "readout_cycles": sum(i["out"] for i in io),
           "readout_cycles_no_stall": sum(i["out_model"] for i in io)}
    if stall:
        line = (f"stalls (p = {stall}): random idle cycles between the words of w_in/a_in/p_in and ready low on "
                f"y_out; load {rec['load_cycles']} cycles (no stall {rec['load_cycles_no_stall']}), read-out "
                f"{rec['readout_cycles']} (no stall {rec['readout_cycles_no_stall']}); rtl cycles count start to "
                f"done, which no stall reaches: the no-stall run the cycle model counts")
    else:
        line = (f"no stalls: load {rec['load_cycles']} cycles, read-out {rec['readout_cycles']} (one word per "
                f"cycle); rtl cycles count start to done (--stall adds random valid/ready stalls)")
    return rec, line
