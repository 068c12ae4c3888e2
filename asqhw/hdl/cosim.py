"""Co-simulation of the RTL (DotRequant) against golden-vector cases.

Every output value of a case is one dot product: its fan-in terms (the linear
row, or the im2col patch of the convolution with zero padding, groups and
stride) are cut into beats by :func:`hdl.schedule.beats`, the channel's
``M``/``B``/``sh`` ride along, and the dot products are sent back to back.
The RTL's ``acc`` (where ``out_valid``) and ``y`` (where ``y_valid``) are read
back in order.  Simulators: Verilator (a generated C++ harness, compiled once
per hardware configuration and cached) or Amaranth's own simulator. Each
hardware configuration, its build and the runs of its cases, is one task on Dask
(:mod:`hdl.jobs`), on a local cluster or on the user's.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asqhw.core.errors import UserError
from asqhw.core.params import Datapath
from asqhw.core.validate import check_int
from asqhw.core.vectors import Case

from .cosim_harness import harness_cpp, input_ports, output_ports, words
from .jobs import JobRunner, check_jobs, scheduler_address

__all__ = ["CaseResult", "HwConfig", "auto_schedule", "hw_config", "fan_in_vectors",
           "stimulus", "run_cases_rtl", "SIMULATORS", "SCHEDULES"]

SIMULATORS = ("verilator", "amaranth")
SCHEDULES = ("auto", "any", "grouped")
PIPELINE = 1


@dataclass
class CaseResult:
    """What the RTL produced for one case.

    ``acc`` and ``y`` have the shapes and dtypes of the case's ``acc`` (int64)
    and ``y`` (int16); an output the RTL never produced holds the dtype's
    minimum and ``missing`` counts such outputs. ``error`` is set (and every
    output missing) when the case's task failed: build error, dead worker.
    """

    name: str
    acc: np.ndarray
    y: np.ndarray
    cycles: int
    wall_s: float
    simulator: str
    schedule: str
    lanes: int
    module: str
    missing: int = 0
    build_s: float = 0.0
    error: str | None = None

    @property
    def seconds(self) -> float:
        """Wall time of the simulation alone (same as ``wall_s``)."""
        return self.wall_s

    @property
    def cycles_per_s(self) -> float:
        """Simulated cycles per second of wall time (simulation only)."""
        return self.cycles / self.wall_s if self.wall_s > 0 else float("inf")


@dataclass(frozen=True)
class HwConfig:
    """Everything that selects one compiled design."""

    dp: Datapath
    lanes: int
    acc_bits: int
    out_bits: int
    out_signed: bool
    schedule: str
    pipeline: int = PIPELINE

    def kwargs(self) -> dict:
        return dict(lanes=self.lanes, acc_bits=self.acc_bits, out_bits=self.out_bits,
                    out_signed=self.out_signed, schedule=self.schedule, pipeline=self.pipeline)


def auto_schedule(dp: Datapath) -> str:
    """"grouped" for the shift-based pot and post split archs, "any" otherwise."""
    return "grouped" if dp.arch in ("shift", "split") else "any"


def hw_config(case: Case, *, lanes: int, schedule: str, pipeline: int = PIPELINE) -> HwConfig:
    """The hardware configuration that runs ``case``."""
    dp = case.datapath
    if schedule == "auto":
        schedule = auto_schedule(dp)
    out = case.manifest["output"]
    return HwConfig(dp, lanes, case.acc_bits, out["bits"], bool(out["signed"]), schedule, pipeline)


def fan_in_vectors(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Activation and weight-code vectors of every output, in ``y``'s C order.

    Returns ``(a, w)``, both int64 of shape ``(n_outputs, K)``.  For a
    convolution row ``i`` is the zero-padded patch of output ``(n, c, oy, ox)``
    in ``(j, ky, kx)`` order, matching ``w[c].ravel()``.
    """
    layer = case.layer
    x = case["x"].astype(np.int64)
    w = case["w"].astype(np.int64)
    if layer["kind"] == "linear":
        n, k = x.shape
        c = w.shape[0]
        a = np.broadcast_to(x[:, None, :], (n, c, k)).reshape(-1, k)
        wv = np.broadcast_to(w[None, :, :], (n, c, k)).reshape(-1, k)
        return np.ascontiguousarray(a), np.ascontiguousarray(wv)
    g = layer["groups"]
    st, pad = layer["stride"], layer["padding"]
    kh, kw = layer["kernel"]
    n, ci, h, wd = x.shape
    co = w.shape[0]
    cg, og = ci // g, co // g
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::st, ::st]  # n, ci, ho, wo, kh, kw
    ho, wo = win.shape[2], win.shape[3]
    k = cg * kh * kw
    # cols[n, grp, ho, wo, (j, ky, kx)]
    cols = win.reshape(n, g, cg, ho, wo, kh, kw).transpose(0, 1, 3, 4, 2, 5, 6).reshape(n, g, ho, wo, k)
    grp = np.arange(co) // og
    a = cols[:, grp]  # n, co, ho, wo, k
    wv = np.broadcast_to(w.reshape(1, co, 1, 1, k), (n, co, ho, wo, k))
    return np.ascontiguousarray(a.reshape(-1, k)), np.ascontiguousarray(wv.reshape(-1, k))


def _out_channels(case: Case) -> np.ndarray:
    """Output channel of every output in ``y``'s C order."""
    y = case["y"]
    c = np.arange(y.shape[1]).reshape((1, -1) + (1,) * (y.ndim - 2))
    return np.broadcast_to(c, y.shape).ravel()


def stimulus(case: Case, cfg: HwConfig, ports: list[dict], latency: int) -> list[dict]:
    """Per-cycle input port values (dicts) for the whole case, flush cycles included."""
    from .schedule import beats

    a, w = fan_in_vectors(case)
    chan = _out_channels(case)
    n_acc = cfg.dp.n_acc
    M, B, sh = case["M"], case["B"], case["sh"]
    params = []
    for c in range(M.shape[0]):
        mw = 0
        for k in range(n_acc):
            mw |= int(M[c, k]) << (16 * k)
        params.append({"m": mw, "b": int(B[c]) & ((1 << 48) - 1), "sh": int(sh[c])})
    records = []
    for i in range(a.shape[0]):
        extra = params[chan[i]]
        for beat in beats(cfg.dp, cfg.lanes, cfg.schedule, a[i].tolist(), w[i].tolist()):
            rec = dict(beat)
            rec.update(extra)
            records.append(rec)
    records.extend({} for _ in range(latency + 2))
    return records


def _pack(records: list[dict], ins: list[dict]) -> np.ndarray:
    cols = []
    for p in ins:
        name, width = p["name"], p["width"]
        mask = (1 << width) - 1
        vals = [r.get(name, 0) & mask for r in records]
        for i in range(words(width)):
            cols.append(np.fromiter(((v >> (32 * i)) & 0xFFFFFFFF for v in vals), dtype=np.uint32,
                                    count=len(vals)))
    if not cols:
        return np.zeros((len(records), 0), dtype=np.uint32)
    return np.stack(cols, axis=1)


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


class _Collector:
    """Turns the RTL's valid output samples into the case's acc and y arrays."""

    def __init__(self, case: Case, cfg: HwConfig):
        self.case, self.cfg = case, cfg
        self.accs: list[list[int]] = []
        self.ys: list[int] = []

    def sample(self, values: dict):
        ab = self.cfg.acc_bits
        if values.get("out_valid"):
            word = values["acc"]
            self.accs.append([_signed((word >> (k * ab)) & ((1 << ab) - 1), ab)
                              for k in range(self.cfg.dp.n_acc)])
        if values.get("y_valid"):
            y = values["y"] & ((1 << self.cfg.out_bits) - 1)
            self.ys.append(_signed(y, self.cfg.out_bits) if self.cfg.out_signed else y)

    def result(self, **kw) -> CaseResult:
        exp_acc, exp_y = self.case["acc"], self.case["y"]
        n = exp_y.size
        acc = np.full((exp_acc.shape[0], n), np.iinfo(np.int64).min, dtype=np.int64)
        y = np.full(n, np.iinfo(np.int16).min, dtype=np.int16)
        got_acc = np.array(self.accs[:n], dtype=np.int64).reshape(-1, exp_acc.shape[0])
        acc[:, :len(got_acc)] = got_acc.T
        got_y = np.array(self.ys[:n], dtype=np.int64)
        y[:len(got_y)] = got_y
        missing = max(n - len(self.accs), n - len(self.ys), 0)
        extra = max(len(self.accs) - n, len(self.ys) - n, 0)
        return CaseResult(name=self.case.name, acc=acc.reshape(exp_acc.shape),
                          y=y.reshape(exp_y.shape), missing=missing + extra, **kw)


def _design(cfg: HwConfig):
    from .verilog import module_name, render

    text, sidecar = render("top", cfg.dp, **cfg.kwargs())
    return text, sidecar, module_name("top", cfg.dp, **cfg.kwargs())


def _build_verilator(design, cache):
    from .verilator import build

    text, sidecar, module = design
    t0 = time.perf_counter()
    exe = build(text, module, harness_cpp(module, sidecar["ports"]), cache=cache)
    return exe, sidecar, time.perf_counter() - t0


def _verilator_ready(cache) -> str:
    """Verilator, perl, make, a C++ compiler and a writable build cache, or a UserError."""
    from asqhw.core.atomic import ensure_dir

    from .verilator import cache_dir, check_build_tools, verilator_version

    check_build_tools()
    version = verilator_version()
    ensure_dir(Path(cache) if cache is not None else cache_dir())
    return version


def _simulate(cfg: HwConfig, cases: list, simulator: str, design, cache) -> list[CaseResult]:
    """One task: build the configuration's simulator (Verilator) and run its cases."""
    if simulator == "amaranth":
        return [_run_amaranth(case, cfg, cfg.schedule) for case in cases]
    exe, sidecar, build_s = _build_verilator(design, cache)
    results = []
    for case in cases:
        res = _run_verilator(case, cfg, exe, sidecar, cfg.schedule)
        res.build_s = build_s
        results.append(res)
    return results


def _failed(case: Case, cfg: HwConfig, simulator: str, error: str) -> CaseResult:
    return _Collector(case, cfg).result(cycles=0, wall_s=0.0, simulator=simulator,
                                        schedule=cfg.schedule, lanes=cfg.lanes, module="",
                                        error=error)


def _run_verilator(case: Case, cfg: HwConfig, exe: Path, sidecar: dict, sched: str) -> CaseResult:
    ports = sidecar["ports"]
    ins, outs = input_ports(ports), output_ports(ports)
    records = stimulus(case, cfg, ports, sidecar["latency"])
    data = _pack(records, ins)
    with tempfile.TemporaryDirectory(prefix="asqhw-cosim-") as tmp:
        stim, out = Path(tmp) / "stim.bin", Path(tmp) / "out.bin"
        with open(stim, "wb") as f:
            f.write(np.uint32(len(records)).tobytes())
            f.write(data.tobytes())
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([str(exe), str(stim), str(out)], capture_output=True, text=True)
        except OSError as e:
            proc = subprocess.CompletedProcess([str(exe)], -1, "", e.strerror or str(e))
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not out.is_file():
            from .verilator import discard_entry

            discard_entry(exe.parent)          # a broken simulator is rebuilt by the next run
            reason = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise UserError(f"the cached simulator {exe} failed on {case.name} ({reason}); "
                            f"it was removed, run again to rebuild it")
        raw = np.fromfile(out, dtype=np.uint32)
    out_words = sum(words(p["width"]) for p in outs)
    if raw.size % (1 + out_words):
        raise UserError(f"the simulator {exe} wrote a truncated result file on {case.name}")
    raw = raw.reshape(-1, 1 + out_words)
    col = _Collector(case, cfg)
    for row in raw:
        values, off = {}, 1
        for p in outs:
            v = 0
            for i in range(words(p["width"])):
                v |= int(row[off + i]) << (32 * i)
            values[p["name"]] = v
            off += words(p["width"])
        col.sample(values)
    return col.result(cycles=len(records) + 2, wall_s=wall, simulator="verilator", schedule=sched,
                      lanes=cfg.lanes, module=sidecar["module"])


def _run_amaranth(case: Case, cfg: HwConfig, sched: str) -> CaseResult:
    from amaranth.lib.wiring import In
    from amaranth.sim import Simulator

    from .top import DotRequant
    from .verilog import module_name

    dut = DotRequant(cfg.dp, **cfg.kwargs())
    ports = [{"name": name, "direction": "input" if member.flow == In else "output",
              "width": len(getattr(dut, name))}
             for name, member in dut.signature.members.items()]
    ins = [p["name"] for p in ports if p["direction"] == "input"]
    outs = [p["name"] for p in ports if p["direction"] == "output"]
    records = stimulus(case, cfg, ports, dut.latency)
    col = _Collector(case, cfg)
    widths = {p["name"]: p["width"] for p in ports}

    in_sigs = [(name, getattr(dut, name), (1 << widths[name]) - 1) for name in ins]
    out_sigs = [(name, getattr(dut, name)) for name in outs]

    async def bench(ctx):
        prev = {}
        for rec in records:
            for name, sig, mask in in_sigs:  # set only what changed: each set costs a settle
                v = rec.get(name, 0) & mask
                if prev.get(name) != v:
                    ctx.set(sig, v)
                    prev[name] = v
            if ctx.get(dut.out_valid) or ctx.get(dut.y_valid):
                col.sample({name: ctx.get(sig) for name, sig in out_sigs})
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    t0 = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - t0
    return col.result(cycles=len(records), wall_s=wall, simulator="amaranth", schedule=sched,
                      lanes=cfg.lanes, module=module_name("top", cfg.dp, **cfg.kwargs()))


def run_cases_rtl(cases, *, lanes: int = 16, schedule: str = "auto", simulator: str = "verilator",
                  progress=None, cache=None, pipeline: int = PIPELINE, jobs: int = 2,
                  scheduler: str | None = None) -> list[CaseResult]:
    """Run every case through the RTL; return one CaseResult per case, in order.

    The cases of one hardware configuration form one task (build and runs) on Dask;
    a task that fails (build error, dead worker) gives its cases a result with
    ``error`` set and every output missing, and the others go on.

    Parameters
    ----------
    cases : iterable of asqhw.core.vectors.Case
    lanes : int
        Lanes of the dot unit.
    schedule : {"auto", "any", "grouped"}
        "auto" is "grouped" for pot and post split weights, "any" otherwise
        (uniform included: "grouped" for uniform must be asked for). "grouped" with
        post lut weights raises UserError.
    simulator : {"verilator", "amaranth"}
    progress : callable, optional
        Called as ``progress(done, total, case_name)`` as results arrive (done counts from 1).
    cache : path-like, optional
        Verilator build cache of this machine (default :func:`hdl.verilator.cache_dir`);
        workers of a remote cluster keep theirs in their own default place.
    pipeline : int
        ``pipeline`` of the DotRequant (default 1).
    jobs : int
        Tasks at the same time on the local cluster (ignored with a scheduler).
    scheduler : str, optional
        Address of a running Dask scheduler (default ``$ASQHW_SCHEDULER``, else a local
        cluster in this process).

    Raises
    ------
    UserError
        On bad parameters, a missing tool (on any worker) or an unreachable scheduler.
    """
    cases = list(cases)
    if simulator not in SIMULATORS:
        raise UserError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if schedule not in SCHEDULES:
        raise UserError(f"schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
    check_int("lanes", lanes, 1)
    check_jobs(jobs)
    scheduler_address(scheduler)        # an empty address fails now
    cfgs = [hw_config(c, lanes=lanes, schedule=schedule, pipeline=pipeline) for c in cases]
    for case, cfg in zip(cases, cfgs):
        if cfg.schedule == "grouped" and cfg.dp.arch not in ("shift", "split", "mul"):
            raise UserError(f"{case.name}: schedule 'grouped' needs uniform, pot or post split "
                            f"weights, not arch {cfg.dp.arch!r}")
    groups: dict[HwConfig, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(cfg, []).append(i)
    designs = {}
    for cfg in groups:                 # parameter errors now, on this machine, before any task
        if simulator == "verilator":
            designs[cfg] = _design(cfg)
        else:
            from .verilog import validate_unit

            validate_unit("top", cfg.dp, **cfg.kwargs())
    results: list = [None] * len(cases)
    done = 0
    with JobRunner(jobs, scheduler) as runner:
        local_cache = None if runner.remote else cache    # workers elsewhere use their own
        if simulator == "verilator":
            runner.on_workers(_verilator_ready, local_cache)
        for cfg, idx in groups.items():
            runner.submit(_simulate, cfg, [cases[i] for i in idx], simulator, designs.get(cfg),
                          local_cache, tag=(cfg, idx), name=simulator)
        for outcome in runner.results():
            cfg, idx = outcome.tag
            for n, i in enumerate(idx):
                results[i] = (outcome.value[n] if outcome.error is None
                              else _failed(cases[i], cfg, simulator, outcome.error))
                done += 1
                if progress is not None:
                    progress(done, len(cases), cases[i].name)
    return results
