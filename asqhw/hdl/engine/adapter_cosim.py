"""Verilator co-simulation of the adapter unit on the adapters of a network export.

Per adapter node: the parameters are streamed in (``w_in``, ``q_in`` and the consuming layers'
multipliers on ``m_in``), then per sample the
wide codes ``z`` (``[c][hw]``, one per cycle), ``start`` the cycle after the last code, and
the next sample once the previous one is done. The harness records the cycles in which
``s_valid``, ``p_valid``, ``h_valid``, ``mn_valid`` or ``done`` is high; a sample's cycle count is its
``done`` cycle minus its ``start`` cycle. One build per :class:`AdapterConfig`, cached.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asqhw import __version__
from asqhw.core.spec import SPEC_VERSION

from ..cosim_harness import harness_cpp, input_ports, output_ports, record_columns, words
from .adapter import adapter_cycles
from .adapter_unit import AdapterUnit, check_sizes, pack_q

__all__ = ["AdapterConfig", "AdapterRun", "config_of", "render", "build_adapter", "run_adapter",
           "adapter_jobs", "expected_of", "compare_run", "reciprocal", "multipliers_of",
           "beta_multipliers"]

TRIGGERS = ("s_valid", "p_valid", "h_valid", "mn_valid", "done")
MARGIN = 64        # idle cycles allowed after the model's count before a sample is declared hung


@dataclass(frozen=True)
class AdapterConfig:
    """Everything that changes the adapter unit's design."""

    max_channels: int
    max_hidden: int
    max_hw: int
    max_mults: int = 1
    beta_bits: int = 10
    beta_frac: int = 8

    def tag(self) -> str:
        return (f"c{self.max_channels}_h{self.max_hidden}_hw{self.max_hw}_m{self.max_mults}"
                f"_b{self.beta_bits}f{self.beta_frac}")

    def module(self) -> str:
        return f"asqhw_adapter_{self.tag()}"

    def check(self) -> None:
        """Raise ValueError if the unit cannot be built with these sizes."""
        check_sizes(max_channels=self.max_channels, max_hidden=self.max_hidden, max_hw=self.max_hw,
                    max_mults=self.max_mults, beta_bits=self.beta_bits, beta_frac=self.beta_frac)

    def unit(self) -> AdapterUnit:
        return AdapterUnit(max_channels=self.max_channels, max_hidden=self.max_hidden, max_hw=self.max_hw,
                           max_mults=self.max_mults,
                           beta_bits=self.beta_bits, beta_frac=self.beta_frac)


@dataclass
class AdapterRun:
    """What the unit produced for the samples of one adapter node (arrays per sample)."""

    S: np.ndarray
    P: np.ndarray
    H: np.ndarray
    beta: np.ndarray
    R: np.ndarray
    sh: np.ndarray
    Mn: np.ndarray
    cycles: list
    estimate: int


def hw_of(net, node: dict) -> int:
    """Elements per channel of the tensor adapter ``node`` reads."""
    shape = net.tensors[node["inputs"][0]].shape
    return int(np.prod(shape[1:])) if len(shape) > 1 else 1


def config_of(nets) -> list[AdapterConfig]:
    """The builds that run every adapter of ``nets``: one per (``b_beta``, ``f_b``), sized
    to the largest ``C``, ``C_h`` and ``H*W`` among its adapters."""
    sizes: dict = {}
    for net in nets:
        for nd in net.nodes:
            if nd["op"] == "adapter":
                key = (nd["beta_bits"], nd["beta_frac"])
                c, h, hw, nm = sizes.get(key, (1, 0, 1, 1))
                sizes[key] = (max(c, nd["channels"]), max(h, nd["hidden"]), max(hw, hw_of(net, nd)),
                              max(nm, len(multipliers_of(net, nd["name"]))))
    return [AdapterConfig(c, h, hw, nm, bb, fb) for (bb, fb), (c, h, hw, nm) in sizes.items()]


def multipliers_of(net, adapter: str) -> list[int]:
    """Static multipliers ``M[c][k]`` of every node with ``beta_from = adapter``, in node order."""
    out = []
    for nd in net.nodes:
        if nd.get("beta_from") == adapter:
            out += [int(v) for v in np.asarray(net.param(nd["name"], "M")).reshape(-1)]
    return out


def render(cfg: AdapterConfig) -> tuple[str, str, list[dict]]:
    """``(verilog, module, ports)`` of one adapter unit."""
    from ..verilog import file_header, convert, ports_of

    module = cfg.module()
    params = {"unit": "adapter", "max_channels": cfg.max_channels, "max_hidden": cfg.max_hidden,
              "max_hw": cfg.max_hw, "max_mults": cfg.max_mults,
              "beta_bits": cfg.beta_bits, "beta_frac": cfg.beta_frac,
              "spec_version": SPEC_VERSION, "generator": __version__}
    text = file_header(module, "asqhw.hdl.engine.adapter_cosim.render", params) + convert(cfg.unit(), module)
    return text, module, ports_of(text, module)


def build_adapter(cfg: AdapterConfig, cache=None) -> tuple[Path, list[dict]]:
    """Compile (or fetch from the cache) the Verilator simulator of one adapter unit."""
    from ..verilator import build

    text, module, ports = render(cfg)
    return build(text, module, harness_cpp(module, ports, triggers=TRIGGERS), cache=cache), ports


def reciprocal(beta_q: int, g: int, beta_frac: int) -> tuple[int, int]:
    """``(R, sh)`` of spec section 14 in Python integers (the expected values)."""
    L = int(beta_q).bit_length()
    return ((1 << (L + 15)) + beta_q) // (2 * beta_q), L + 14 + g - beta_frac


def _param_streams(hidden: int, params: dict) -> tuple[list[int], list[int]]:
    w = []
    q = [pack_q(params["pool_M"][0], 0, params["pool_sh"][0])]
    if hidden:
        w += [int(v) & 0xFF for v in np.asarray(params["w1"]).reshape(-1)]
        for jj in range(hidden):
            q.append(pack_q(np.asarray(params["M1"]).reshape(-1)[jj], params["B1"][jj], params["sh1"][jj]))
    w += [int(v) & 0xFF for v in np.asarray(params["w2"]).reshape(-1)]
    q.append(pack_q(np.asarray(params["M2"]).reshape(-1)[0], params["B2"][0], params["sh2"][0]))
    return w, q


def run_adapter(cfg: AdapterConfig, exe: Path, ports: list[dict], node: dict, params: dict, z,
                g: int, mults=(), *, name: str = "adapter") -> AdapterRun:
    """Run the samples of ``z`` (N, C, ...) of adapter ``node`` through a built unit.

    ``params`` holds the node's arrays (``pool_M``, ``w2``, ...); ``g`` is the ``G`` of its
    ``quant`` node; ``mults`` the consuming layers' multipliers (:func:`multipliers_of`).
    """
    C, Ch = node["channels"], node["hidden"]
    z = np.asarray(z, dtype=np.int64)
    hw = int(np.prod(z.shape[2:])) if z.ndim > 2 else 1
    mults = [int(v) for v in mults]
    if C > cfg.max_channels or Ch > cfg.max_hidden or hw > cfg.max_hw or len(mults) > cfg.max_mults:
        raise ValueError(f"{name}: C={C}, C_h={Ch}, H*W={hw}, {len(mults)} multipliers exceed "
                         f"the build {cfg.tag()}")
    z = z.reshape(len(z), C * hw)
    n_s = z.shape[0]
    est = adapter_cycles(C, Ch, multipliers=len(mults))
    w, q = _param_streams(Ch, params)
    period = z.shape[1] + 1 + est + MARGIN
    first = max(len(w), len(q), len(mults))
    n = first + n_s * period + 1
    cols = {p["name"]: np.zeros(n, dtype=np.uint64) for p in input_ports(ports)}
    cols["w_in__valid"][:len(w)] = 1
    cols["w_in__payload"][:len(w)] = w
    qv = np.array(q, dtype=object)
    q_payload = [0] * n
    q_payload[:len(q)] = list(qv)
    cols["q_in__valid"][:len(q)] = 1
    cols["m_in__valid"][:len(mults)] = 1
    cols["m_in__payload"][:len(mults)] = mults
    cols["n_mults"][:] = len(mults)
    cols["g"][:] = g
    cols["channels"][:], cols["hidden"][:], cols["hw"][:] = C, Ch, hw
    starts = []
    for s in range(n_s):
        at = first + s * period
        cols["z_in__valid"][at:at + z.shape[1]] = 1
        cols["z_in__payload"][at:at + z.shape[1]] = z[s]
        starts.append(at + z.shape[1])
        cols["start"][starts[-1]] = 1
    mats = []
    for p in input_ports(ports):
        for k in range(words(p["width"])):
            if p["name"] == "q_in__payload":
                mats.append(np.fromiter(((v >> (32 * k)) & 0xFFFFFFFF for v in q_payload),
                                        dtype=np.uint32, count=n))
            else:
                part = (cols[p["name"]] >> np.uint64(32 * k)) & np.uint64(0xFFFFFFFF)
                mats.append(part.astype(np.uint32))
    data = np.stack(mats, axis=1)
    outs = output_ports(ports)
    with tempfile.TemporaryDirectory(prefix="asqhw-adapter-") as tmp:
        stim, out = Path(tmp) / "stim.bin", Path(tmp) / "out.bin"
        with open(stim, "wb") as f:
            f.write(np.uint32(n).tobytes())
            f.write(data.tobytes())
        proc = subprocess.run([str(exe), str(stim), str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{exe} failed on {name}: {proc.stderr.strip()}")
        raw = np.fromfile(out, dtype=np.uint32).astype(np.int64)
    col = record_columns(raw, outs)
    cyc = col["cycle"]
    S = np.full((n_s, C), -1, dtype=np.int64)
    P = np.full((n_s, C), -1, dtype=np.int64)
    H = np.full((n_s, Ch), -1, dtype=np.int64)
    Mn = np.full((n_s, len(mults)), -1, dtype=np.int64)
    beta, R, sh = (np.full(n_s, -1, dtype=np.int64) for _ in range(3))
    cycles = []
    for s, at in enumerate(starts):
        win = (cyc >= at) & (cyc < at + period - z.shape[1])
        for key, arr, val in (("s_valid", S, "s_data"), ("p_valid", P, "code"), ("h_valid", H, "code"),
                              ("mn_valid", Mn, "mn")):
            got = col[val][win & (col[key] == 1)]
            if got.size != arr.shape[1]:
                raise RuntimeError(f"{name} sample {s}: {got.size} values on {key}, expected {arr.shape[1]}")
            arr[s] = got
        d = np.flatnonzero(win & (col["done"] == 1))
        if d.size != 1:
            raise RuntimeError(f"{name} sample {s}: done raised {d.size} times (expected once)")
        beta[s], R[s], sh[s] = col["beta"][d[0]], col["r"][d[0]], col["sh"][d[0]]
        cycles.append(int(cyc[d[0]]) - at)
    return AdapterRun(S, P, H, beta, R, sh, Mn, cycles, est)


def expected_of(net, node: dict, vectors: dict) -> dict:
    """Golden ``S``, ``P``, ``H``, ``beta`` of adapter ``node`` and, from the golden ``beta``,
    ``R``, ``sh`` (section 14) and ``Mn`` (section 11), per sample."""
    name = node["name"]
    exp = {"S": vectors[f"vec/{name}/S"], "P": vectors[f"vec/{name}/P"], "beta": vectors[f"vec/{name}/beta"]}
    if node["hidden"]:
        exp["H"] = vectors[f"vec/{name}/H"]
    g = quant_g(net, name)
    rs = [reciprocal(int(b), g, node["beta_frac"]) for b in exp["beta"]]
    exp["R"] = np.array([r for r, _ in rs], dtype=np.int64)
    exp["sh"] = np.array([s for _, s in rs], dtype=np.int64)
    exp["Mn"] = beta_multipliers(multipliers_of(net, name), exp["beta"], node["beta_frac"])
    return exp


def beta_multipliers(mults, beta, beta_frac: int) -> np.ndarray:
    """``M_n = (M * beta_q + h) >> f_b`` (spec section 11) per sample and multiplier."""
    h = 1 << (beta_frac - 1) if beta_frac >= 1 else 0
    return np.array([[(int(mv) * int(b) + h) >> beta_frac for mv in mults] for b in beta],
                    dtype=np.int64).reshape(len(beta), len(mults))


def quant_g(net, adapter: str) -> int:
    """``G`` of the ``quant`` node that names ``adapter`` (0 if none does)."""
    for nd in net.nodes:
        if nd["op"] == "quant" and nd.get("adapter") == adapter:
            return int(nd["g"])
    return 0


def adapter_jobs(net, vectors: dict | None = None) -> list[tuple[str, dict, dict, np.ndarray, int, list]]:
    """``(name, node, params, z, g, mults)`` per adapter node of ``net``."""
    vectors = net.vectors if vectors is None else vectors
    jobs = []
    for nd in net.nodes:
        if nd["op"] != "adapter":
            continue
        name = nd["name"]
        params = {k.split("/", 1)[1]: v for k, v in net.params.items() if k.startswith(name + "/")}
        jobs.append((name, nd, params, vectors[f"vec/{nd['inputs'][0]}"],
                     quant_g(net, name), multipliers_of(net, name)))
    return jobs


def compare_run(case: str, node: str, run: AdapterRun, exp: dict) -> list:
    """Every mismatch of one adapter's run, as :class:`asqhw.core.conform.Mismatch`
    ``(case, node, array, sample, index, expected, got)``."""
    from asqhw.core.conform import find_mismatches

    got = {"S": run.S, "P": run.P, "H": run.H, "beta": run.beta, "R": run.R, "sh": run.sh, "Mn": run.Mn}
    bad = []
    for key, want in exp.items():
        want = np.asarray(want, dtype=np.int64).reshape(got[key].shape)
        bad += find_mismatches(case, key, want, got[key], node=node, sample_axis=0, limit=None)[1]
    return bad
