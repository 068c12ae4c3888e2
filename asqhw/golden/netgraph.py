"""The integer form of a live QAT network: steps, constants and nodes of docs/network.md.

The QAT graph (:mod:`golden.qat.graph`) maps node for node onto the integer nodes of
docs/datapath.md sections 10-14; :class:`Exporter` turns its learned scales into integers
(the rules are listed in :mod:`golden.netexport`). Used by the exporter and by integer-exact
QAT (:mod:`golden.qat.intexact`), which both stand on this module.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from asqhw.core.errors import UserError
from asqhw.core.network import m_cap
from asqhw.core.params import Datapath

from .export import acc_units
from .qat.graph import QatNet

__all__ = ["Exporter", "integer_graph", "requant_constants_capped", "input_codes", "HEADROOM", "WIDE_MAX"]

HEADROOM = 2.0
"""Calibrated wide tensors use ``1/HEADROOM`` of the 16-bit range on the recorded data."""
WIDE_MAX = 2**15 - 1
U16 = (0, WIDE_MAX)
S16 = (-(2**15), WIDE_MAX)


def requant_constants_capped(m_k: list[float], bias_over_s_out: float, cap: int = 65535, *,
                             min_sh: int = 0, where: str = "") -> tuple[list[int], int, int]:
    """``(M[k], B, sh)`` by docs/datapath.md section 7 with the multiplier cap ``cap``.

    ``sh`` is the largest value in ``min_sh .. 62`` with ``round(max m_k * 2^sh) <= cap``;
    ``M`` and ``B`` are rounded half to even in float64. Raises UserError when no shift fits or
    ``B`` leaves the 48-bit range.
    """
    m = max(m_k)
    if not (math.isfinite(m) and min(m_k) >= 0 and math.isfinite(bias_over_s_out)):
        raise UserError(f"{where}: requantisation scale must be finite and non-negative, not {m!r}")
    sh = next((s for s in range(62, min_sh - 1, -1) if round(m * 2.0**s) <= cap), None)
    if sh is None:
        raise UserError(f"{where}: scale {m:.6g} needs a multiplier above {cap} even with sh = {min_sh}")
    M = [round(v * 2.0**sh) for v in m_k]
    B = round(bias_over_s_out * 2.0**sh)
    if not -(2**47) <= B <= 2**47 - 1:
        raise UserError(f"{where}: requantisation bias B = {B} leaves the 48-bit range")
    return M, B, sh


def input_codes(x: torch.Tensor, step: float) -> np.ndarray:
    """Signed 8-bit input codes of normalised images: ``clamp(round(x / step), -128, 127)``."""
    v = torch.round(x.to(torch.float64) / step)
    return torch.clamp(v, -128, 127).to(torch.int64).numpy().astype(np.int16)


def _steps(net: QatNet, shapes: dict) -> dict[str, float]:
    """The step of every wide tensor and of the logits (see the module docstring)."""
    steps: dict[str, float] = {}
    for nd in reversed(net.nodes):
        if nd.op in ("input", "quant"):
            continue
        cons = net.consumers(nd.name)
        q = [c for c in cons if c.op == "quant"]
        mp = [c for c in cons if c.op == "maxpool"]
        if len(q) + len(mp) > 1 or (mp and len(cons) > 1):
            raise UserError(f"{nd.name}: a tensor read by a max pool, or by a quantiser, must have one such "
                            f"reader and a max pool no other")
        if q:
            u = net.units[q[0].name]
            steps[nd.name] = u.step * 2.0 ** -u.g
        elif mp:
            steps[nd.name] = steps[mp[0].name]
        else:
            amax = net.amax(nd.name)
            steps[nd.name] = HEADROOM * amax / WIDE_MAX if amax > 0 else 1.0 / WIDE_MAX
    return steps


def _weights_meta(dp: Datapath) -> dict:
    return {"format": dp.fmt, "bits": dp.w_bits, "e_max": dp.e_max, "arch": dp.arch,
            "frac_bits": dp.frac_bits, "storage_bits": dp.storage_bits}


class Exporter:
    def __init__(self, net: QatNet, arch: str):
        self.net, self.arch = net, arch
        self.nodes: list[dict] = []
        self.params: dict[str, np.ndarray] = {}
        with torch.no_grad():
            x = torch.zeros((1,) + net.input_shape, dtype=torch.float64)
            self.shapes = {k: tuple(v.shape[1:]) for k, v in net(x, keep=True).items()}
        self.steps = _steps(net, self.shapes)
        self.names = {nd.name: ("input" if nd.op == "input" else nd.name) for nd in net.nodes}
        # codes steps and the adapter that scales them
        self.code_step: dict[str, float] = {}
        self.beta_of: dict[str, str | None] = {}

    def src(self, name: str) -> str:
        return self.names[name]

    # --- layers ---------------------------------------------------------------------------
    def layer(self, nd):
        net, unit = self.net, self.net.units[nd.name]
        src = nd.inputs[0]
        if src not in self.code_step:
            raise UserError(f"{nd.name}: a conv/linear must read codes (a quantiser or the input)")
        s_in, beta = self.code_step[src], self.beta_of[src]
        a_bits, a_signed = (8, True) if net.node(src).op == "input" else (net.units[src].bits, False)
        wq = unit.wq
        fmt = "uniform" if wq.__class__.__name__ == "LsqWeight" else wq.fmt
        arch = {"uniform": "mul", "pot": "shift", "post": self.arch}[fmt]
        dp = Datapath(fmt=fmt, a_bits=a_bits, w_bits=wq.bits, arch=arch, a_signed=a_signed,
                      e_max=None if fmt == "uniform" else wq.e_max)
        with torch.no_grad():
            w = unit.weight.detach().double()
            codes = wq.codes(w).numpy()
            alpha = wq.alpha.detach().double().numpy()
            bias = unit.bias.detach().double().numpy()
        relu = nd.attrs.get("relu", False)
        lo, hi = U16 if relu else S16
        s_out = self.steps[nd.name]
        units = acc_units(dp)
        ad = None
        cap = 65535
        if beta is not None:
            ad = self._adapter_node(beta)
            cap = m_cap(ad["beta_bits"], ad["beta_frac"])
        c_out = codes.shape[0]
        M = np.zeros((c_out, dp.n_acc), dtype=np.int64)
        B = np.zeros(c_out, dtype=np.int64)
        sh = np.zeros(c_out, dtype=np.int64)
        for c in range(c_out):
            m_k = [s_in * float(alpha[c]) * u / s_out for u in units]
            mc, bc, shc = requant_constants_capped(m_k, float(bias[c]) / s_out, cap, where=f"{nd.name} channel {c}")
            M[c], B[c], sh[c] = mc, bc, shc
        fan = int(np.prod(codes.shape[1:]))
        node = {"name": nd.name, "op": "linear" if nd.op == "linear" else "conv2d", "inputs": [self.src(src)]}
        if nd.op == "linear":
            node |= {"in_features": fan, "out_features": c_out}
        else:
            node |= {"in_channels": unit.cin, "out_channels": unit.cout, "kernel": [unit.kernel, unit.kernel],
                     "stride": unit.stride, "padding": unit.padding, "groups": 1}
        node |= {"activation": {"bits": a_bits, "signed": a_signed}, "weights": _weights_meta(dp),
                 "accumulator": {"bits": dp.natural_acc_bits(fan)}, "output": {"lo": lo, "hi": hi},
                 "beta_from": beta}
        self.nodes.append(node)
        self.params |= {f"{nd.name}/w": codes.astype(np.int16), f"{nd.name}/M": M, f"{nd.name}/B": B,
                        f"{nd.name}/sh": sh}

    def _adapter_node(self, name: str) -> dict:
        return next(n for n in self.nodes if n["name"] == name)

    # --- adapter and quant ----------------------------------------------------------------
    def quant(self, nd):
        unit = self.net.units[nd.name]
        src = nd.inputs[0]
        if self.net.node(src).op in ("input", "quant") or not self._unsigned(src):
            raise UserError(f"{nd.name}: a quantiser must read unsigned wide codes (after a ReLU)")
        ad_name = None
        if unit.adapter is not None:
            ad_name = f"{nd.name}_adapter"
            self.adapter(ad_name, src, unit.adapter)
        self.nodes.append({"name": nd.name, "op": "quant", "inputs": [self.src(src)], "bits": unit.bits,
                           "g": unit.g, "adapter": ad_name})
        self.code_step[nd.name] = unit.step
        self.beta_of[nd.name] = ad_name

    def _unsigned(self, name: str) -> bool:
        nd = self.net.node(name)
        if nd.op in ("conv", "add"):
            return bool(nd.attrs.get("relu"))
        if nd.op in ("maxpool", "avgpool"):
            return self._unsigned(nd.inputs[0])
        return False

    def adapter(self, name: str, src: str, ad):
        c, h, w = self.shapes[src]
        s_z = self.steps[src]
        f_b = ad.beta_frac
        where = f"adapter {name}"
        with torch.no_grad():
            s_p = float(ad.pool_q.s.detach())
            pm, _, psh = requant_constants_capped([s_z / (h * w * s_p)], 0.0, where=where + " pool")
            p = {f"{name}/pool_M": np.array(pm, np.int64), f"{name}/pool_sh": np.array([psh], np.int64)}
            s_prev = s_p
            if ad.hidden:
                s_h = float(ad.hidden_q.s.detach())
                w1 = ad.fc1.weight.detach().double()
                a1 = ad.w1_q.alpha.detach().double()
                M1 = np.zeros((ad.hidden, 1), np.int64)
                B1 = np.zeros(ad.hidden, np.int64)
                sh1 = np.zeros(ad.hidden, np.int64)
                for j in range(ad.hidden):
                    mj, bj, sj = requant_constants_capped([s_p * float(a1[j]) / s_h], float(ad.fc1.bias.detach()[j]) / s_h,
                                                          where=f"{where} hidden {j}")
                    M1[j], B1[j], sh1[j] = mj, bj, sj
                p |= {f"{name}/w1": ad.w1_q.codes(w1).numpy().astype(np.int16), f"{name}/M1": M1,
                      f"{name}/B1": B1, f"{name}/sh1": sh1}
                s_prev = s_h
            w2 = ad.fc2.weight.detach().double()
            a2 = float(ad.w2_q.alpha.detach()[0])
            one = float(1 << f_b)
            m2, b2, sh2 = requant_constants_capped([s_prev * a2 * one], float(ad.fc2.bias.detach()[0]) * one,
                                                   where=f"{where} output")
            p |= {f"{name}/w2": ad.w2_q.codes(w2).numpy().astype(np.int16), f"{name}/M2": np.array([m2], np.int64),
                  f"{name}/B2": np.array([b2], np.int64), f"{name}/sh2": np.array([sh2], np.int64)}
        self.params |= p
        self.nodes.append({"name": name, "op": "adapter", "inputs": [self.src(src)], "channels": c,
                           "hidden": ad.hidden, "beta_bits": ad.beta_bits, "beta_frac": f_b})

    # --- the rest -------------------------------------------------------------------------
    def add(self, nd):
        a, b = nd.inputs
        s_o = self.steps[nd.name]
        M, B, sh = requant_constants_capped([self.steps[a] / s_o, self.steps[b] / s_o], 0.0, min_sh=1,
                                            where=nd.name)
        lo, hi = U16 if nd.attrs.get("relu") else S16
        self.nodes.append({"name": nd.name, "op": "add", "inputs": [self.src(a), self.src(b)],
                           "output": {"lo": lo, "hi": hi}})
        self.params |= {f"{nd.name}/M": np.array(M, np.int64), f"{nd.name}/B": np.array([B], np.int64),
                        f"{nd.name}/sh": np.array([sh], np.int64)}

    def pool(self, nd):
        src = nd.inputs[0]
        if src not in self.steps:
            raise UserError(f"{nd.name}: pools of codes are not exported; pool the wide codes")
        k, st = nd.attrs["kernel"], nd.attrs["stride"]
        node = {"name": nd.name, "op": nd.op, "inputs": [self.src(src)], "kernel": [k, k], "stride": st}
        if nd.op == "maxpool":
            node["padding"] = nd.attrs["padding"]
        else:
            m = self.steps[src] / (k * k * self.steps[nd.name])
            M, _, sh = requant_constants_capped([m], 0.0, where=nd.name)
            lo, hi = U16 if self._unsigned(src) else S16
            node["output"] = {"lo": lo, "hi": hi}
            self.params |= {f"{nd.name}/M": np.array(M, np.int64), f"{nd.name}/sh": np.array([sh], np.int64)}
        self.nodes.append(node)

    def run(self) -> list[dict]:
        for nd in self.net.nodes:
            if nd.op == "input":
                self.code_step[nd.name] = self.net.units[nd.name].step
                self.beta_of[nd.name] = None
            elif nd.op in ("conv", "linear"):
                self.layer(nd)
            elif nd.op == "quant":
                self.quant(nd)
            elif nd.op == "add":
                self.add(nd)
            else:
                self.pool(nd)
        return self.nodes


def integer_graph(net: QatNet, arch: str = "split") -> tuple[list[dict], dict, dict, dict]:
    """The integer form of a float64 QAT network, nothing validated or written.

    Returns the node list of the manifest, the ``NODE/ARRAY`` parameter arrays, the step of
    every wide tensor and of the logits (by QAT node name) and the step of every code tensor
    (by QAT node name; an ASQ ``quant`` node's codes are further scaled by ``beta`` per sample).
    """
    ex = Exporter(net, arch)
    return ex.run(), ex.params, dict(ex.steps), dict(ex.code_step)
