"""Random valid integer networks (docs/network.md) that exercise every node op.

Used by the golden reference, the numba model and the cross-model tests. The constants are
chosen from rough magnitude estimates so that most values land inside their ranges (and a
few saturate), not from any implementation of the spec.
"""

from __future__ import annotations

import numpy as np

from asqhw.core.network import m_cap
from asqhw.core.params import Datapath

__all__ = ["random_network", "random_input", "FORMATS"]

FORMATS = [("uniform", "mul", None), ("pot", "shift", None), ("post", "split", None), ("post", "lut", None),
           ("post", "split", "eq17"), ("pot", "shift", "eq17")]


def _shift_for(m: float, cap: int) -> tuple[int, int]:
    """(M, sh) with M / 2^sh ~ m and M <= cap."""
    sh = 0
    while sh < 62 and m * 2 ** (sh + 1) <= cap:
        sh += 1
    return max(1, min(cap, int(m * 2**sh))), sh


def _weights(rng, dp: Datapath, shape) -> np.ndarray:
    if dp.fmt == "uniform":
        lo, hi = dp.w_range
        return rng.integers(lo, hi + 1, size=shape)
    m = rng.integers(0, dp.e_max + 2, size=shape)
    m[rng.random(shape) < 0.15] = 0
    sgn = rng.integers(0, 2, size=shape)
    return (sgn << dp.m_bits) | m


def _layer_scale(dp: Datapath, fan: int) -> float:
    """Typical |acc| of a layer with random codes."""
    return max(1.0, np.sqrt(fan) * dp.a_max / 2 * dp.p_max / dp.a_max / 2)


class _Builder:
    def __init__(self, rng, samples):
        self.rng = rng
        self.nodes, self.params = [], {}
        self.samples = samples

    def layer(self, name, src, op, *, dp, fan, target, out, beta=None, **fields):
        rng = self.rng
        c = fields["out_channels"] if op == "conv2d" else fields["out_features"]
        if op == "conv2d":
            kh, kw = fields["kernel"]
            wshape = (c, fields["in_channels"] // fields["groups"], kh, kw)
        else:
            wshape = (c, fields["in_features"])
        cap = 65535 if beta is None else m_cap(beta[0], beta[1])
        m = target / _layer_scale(dp, fan)
        M0, sh = _shift_for(m, cap)
        M = np.clip((M0 * rng.uniform(0.6, 1.0, size=(c, dp.n_acc))).astype(np.int64), 0, cap)
        if dp.arch == "split":
            M[:, 1] = (M[:, 0] * 0.7071).astype(np.int64)
        B = (rng.normal(0, target / 4, size=c) * 2**sh).astype(np.int64)
        self.params |= {f"{name}/w": _weights(rng, dp, wshape), f"{name}/M": M, f"{name}/B": B,
                        f"{name}/sh": np.full(c, sh, dtype=np.int64)}
        node = {"name": name, "op": op, "inputs": [src], **fields,
                "activation": {"bits": dp.a_bits, "signed": dp.a_signed},
                "weights": {"format": dp.fmt, "bits": dp.w_bits, "e_max": dp.e_max, "arch": dp.arch,
                            "frac_bits": dp.frac_bits, "storage_bits": dp.storage_bits},
                "accumulator": {"bits": dp.natural_acc_bits(fan)}, "output": {"lo": out[0], "hi": out[1]},
                "beta_from": beta[2] if beta else None}
        self.nodes.append(node)

    def adapter(self, name, src, channels, hw, z_typ, *, beta_bits=10, beta_frac=8):
        rng = self.rng
        hidden = channels // 4 if channels >= 8 else 0
        pm, psh = _shift_for(100.0 / (hw * max(z_typ, 1.0)), 65535)
        self.params |= {f"{name}/pool_M": [pm], f"{name}/pool_sh": [psh]}
        fan = channels
        if hidden:
            w1 = rng.integers(-128, 128, size=(hidden, channels))
            m1, sh1 = _shift_for(60.0 / (np.sqrt(channels) * 100 * 64), 65535)
            self.params |= {f"{name}/w1": w1, f"{name}/M1": np.full((hidden, 1), m1),
                            f"{name}/B1": (rng.normal(30, 20, size=hidden) * 2**sh1).astype(np.int64),
                            f"{name}/sh1": np.full(hidden, sh1)}
            fan, typ = hidden, 60.0
        else:
            typ = 100.0
        one = 1 << beta_frac
        w2 = rng.integers(-128, 128, size=(1, fan))
        m2, sh2 = _shift_for(one * 0.25 / (np.sqrt(fan) * typ * 64), 65535)
        self.params |= {f"{name}/w2": w2, f"{name}/M2": [[m2]], f"{name}/B2": [one << sh2], f"{name}/sh2": [sh2]}
        self.nodes.append({"name": name, "op": "adapter", "inputs": [src], "channels": channels,
                           "hidden": hidden, "beta_bits": beta_bits, "beta_frac": beta_frac})
        return (beta_bits, beta_frac, name)

    def quant(self, name, src, bits, adapter=None):
        qp = (1 << bits) - 1
        bmax = 1.0 if adapter is None else ((1 << adapter[0]) - 1) / (1 << adapter[1])
        g = 0
        while g < 30 and qp * bmax * 2 ** (g + 1) <= 2**15 - 1:
            g += 1
        self.nodes.append({"name": name, "op": "quant", "inputs": [src], "bits": bits, "g": g,
                           "adapter": adapter[2] if adapter else None})
        return qp * 2**g / 2 * (1 if adapter is None else 1)


def random_network(seed: int = 0, *, fmt: tuple | None = None, a_bits: int = 4, w_bits: int = 4,
                   samples: int = 3, size: int = 6, channels: int = 8, asq: bool = True) -> tuple[dict, dict]:
    """A valid random network (manifest without format keys, params) using every node op.

    input (signed 8-bit) -> conv -> [adapter] quant -> {conv, 1x1 shortcut conv} -> add (ReLU)
    -> maxpool (padded) -> [adapter] quant -> grouped conv -> avgpool -> [adapter] quant (8-bit)
    -> linear (logits). ``fmt`` is one of :data:`FORMATS` (default: drawn from the seed).
    """
    rng = np.random.default_rng(seed)
    fmt = fmt or FORMATS[int(rng.integers(len(FORMATS)))]
    f, arch, emax = fmt
    e_max = None if emax is None else 2 ** (w_bits - 1) - 1

    def dp(bits=a_bits, signed=False, wb=w_bits):
        if f == "uniform":
            return Datapath(fmt="uniform", a_bits=bits, w_bits=wb, a_signed=signed)
        return Datapath(fmt=f, a_bits=bits, w_bits=wb, arch=arch, a_signed=signed, e_max=e_max)

    b = _Builder(rng, samples)
    c, s = channels, size
    U, S = (0, 2**15 - 1), (-(2**15), 2**15 - 1)
    d0 = dp(8, True)
    b.layer("c1", "input", "conv2d", dp=d0, fan=3 * 9, target=3000, out=U, in_channels=3, out_channels=c,
            kernel=[3, 3], stride=1, padding=1, groups=1)
    a1 = b.adapter("a1", "c1", c, s * s, 3000) if asq else None
    b.quant("q1", "c1", a_bits, a1)
    d1 = dp()
    b.layer("c2", "q1", "conv2d", dp=d1, fan=c * 9, target=2500, out=S, beta=a1, in_channels=c,
            out_channels=c, kernel=[3, 3], stride=1, padding=1, groups=1)
    b.layer("sc", "q1", "conv2d", dp=d1, fan=c, target=2500, out=S, beta=a1, in_channels=c,
            out_channels=c, kernel=[1, 1], stride=1, padding=0, groups=1)
    m0, sh = _shift_for(0.8, 65535)
    b.params |= {"add/M": [m0, int(m0 * 0.9)], "add/B": [0], "add/sh": [max(sh, 1)]}
    b.nodes.append({"name": "add", "op": "add", "inputs": ["c2", "sc"], "output": {"lo": U[0], "hi": U[1]}})
    b.nodes.append({"name": "mp", "op": "maxpool", "inputs": ["add"], "kernel": [3, 3], "stride": 2, "padding": 1})
    s2 = (s + 2 - 3) // 2 + 1
    a2 = b.adapter("a2", "mp", c, s2 * s2, 3000) if asq else None
    b.quant("q2", "mp", a_bits, a2)
    c3 = 2 * c
    b.layer("c3", "q2", "conv2d", dp=d1, fan=c // 2 * 4, target=3000, out=U, beta=a2, in_channels=c,
            out_channels=c3, kernel=[2, 2], stride=1, padding=0, groups=2)
    s3 = s2 - 1
    m, sh = _shift_for(1.0 / (s3 * s3), 65535)
    b.params |= {"gap/M": [m], "gap/sh": [sh]}
    b.nodes.append({"name": "gap", "op": "avgpool", "inputs": ["c3"], "kernel": [s3, s3], "stride": 1,
                    "output": {"lo": U[0], "hi": U[1]}})
    a4 = b.adapter("a4", "gap", c3, 1, 3000) if asq else None
    b.quant("q4", "gap", 8, a4)
    d8 = dp(8, False, 8) if f == "uniform" else Datapath(fmt="uniform", a_bits=8, w_bits=8)
    b.layer("fc", "q4", "linear", dp=d8, fan=c3, target=2000, out=S, beta=a4, in_features=c3, out_features=10)
    manifest = {"name": f"random_{seed}", "description": "random network for tests", "classes": 10,
                "input": {"shape": [3, s, s], "bits": 8, "signed": True, "step": 1 / 64,
                          "mean": [0.0] * 3, "std": [1.0] * 3},
                "nodes": b.nodes, "output": "fc", "samples": 0, "meta": {"fmt": list(fmt)}}
    params = {k: np.asarray(v) for k, v in b.params.items()}
    return manifest, params


def random_input(seed: int, manifest: dict, n: int) -> np.ndarray:
    """Random signed 8-bit input codes for ``n`` samples."""
    rng = np.random.default_rng(seed + 7919)
    return rng.integers(-128, 128, size=(n, *manifest["input"]["shape"])).astype(np.int16)
