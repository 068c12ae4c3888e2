"""Whole-network inference: the numba integer model against a PyTorch float evaluation.

For each network, times ``sim.network.IntNetwork.run(x, keep=False)`` (int8 input codes in,
exact int16 logits out) and a PyTorch float32 network in eval mode built from the same export
(a fake-quant mirror: per layer ``conv(x, w_f) * beta + b`` with the float weights
``w_f = sum_k level_k * M_k / 2^sh`` and bias ``B / 2^sh``, clamping as ReLU, every ``quant``
node a float ``round`` and ``clamp``, the adapter on float tensors with rounded codes, the
pools and the residual add in float), on the same batch and thread count, and prints
images/s of both and the ratio ``integer / torch`` (above 1: the integer model is faster).
The mirror has the QAT network's operations and shapes, so its cost is that of the QAT
model's eval pass; its top-1 agreement with the integer model is printed as a check that it
computes the same network.

With ``--checkpoint CKPT`` (a QAT checkpoint of ``asqhw train``; needs asqhw/golden/qat) the torch side
is the QAT network itself in eval mode (fake quantisation of weights and activations, the float
adapter), the integer side its export, both on the checkpoint's test images; ``agree`` is then
the integer-vs-QAT top-1 agreement on those images.

Networks: ``--model EXPORT`` (any network export), or built in: ``digits`` (the digits CNN
topology of asqhw/golden/qat: conv 16, conv 32, maxpool, conv 32, global avgpool, fc; 1x8x8) and
``resnet20`` (CIFAR ResNet-20, 3x32x32, 1x1 projection shortcuts where the shape changes),
both ASQ (an adapter at every quantiser) with random integer parameters; the weight format
is ``--fmt`` (default post split 4-bit weights, 4-bit activations).

Usage::

    python benchmarks/bench_network.py [--net digits resnet20] [--model EXPORT] [--batch 64]
        [--reps 5] [--quick] [--cpu-time] [--json FILE]

Threads: numba's thread count (NUMBA_NUM_THREADS, default all cores) is given to torch too.
On a machine shared with other work, multi-threaded wall times are dominated by preemption;
``--cpu-time`` with one thread (``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``)
measures process CPU time instead, which other processes barely disturb.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from asqhw import sim  # noqa: E402
from asqhw.core.network import m_cap, read_network, write_network  # noqa: E402
from asqhw.core.params import Datapath  # noqa: E402
from asqhw.sim.network import IntNetwork  # noqa: E402

U16, S16 = (0, 2**15 - 1), (-(2**15), 2**15 - 1)


# --- built-in networks with random integer parameters ---------------------------------------
def _mult(m: float, cap: int) -> tuple[int, int]:
    """``(M, sh)`` with ``M / 2^sh ~ m``, ``M <= cap``."""
    sh = 0
    while sh < 62 and m * 2 ** (sh + 1) <= cap:
        sh += 1
    return max(1, min(cap, round(m * 2**sh))), sh


class _Net:
    """A small builder of valid integer networks (docs/network.md) with random parameters."""

    def __init__(self, seed, dp, a_bits):
        self.rng = np.random.default_rng(seed)
        self.dp, self.a_bits = dp, a_bits
        self.nodes, self.params, self.shape = [], {}, {}

    def _weights(self, dp, shape):
        if dp.fmt == "uniform":
            return self.rng.integers(dp.w_range[0], dp.w_range[1] + 1, size=shape)
        m = self.rng.integers(0, dp.e_max + 2, size=shape)
        return (self.rng.integers(0, 2, size=shape) << dp.m_bits) | m

    def layer(self, name, src, c_out, k=1, stride=1, pad=0, *, dp=None, out=U16, beta=None, linear=False):
        dp = dp or self.dp
        c_in, h, w = self.shape[src]
        if linear:
            fan, wshape, oshape = c_in * h * w, (c_out, c_in * h * w), (c_out,)
        else:
            fan, wshape = c_in * k * k, (c_out, c_in, k, k)
            oshape = (c_out, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)
        typ = np.sqrt(fan) * dp.a_max / 3 * dp.p_max / dp.a_max / 3
        cap = 65535 if beta is None else m_cap(10, 8)
        M, sh = _mult(2000.0 / max(typ, 1.0), cap)
        Ms = np.clip((M * self.rng.uniform(0.7, 1.0, size=(c_out, dp.n_acc))).astype(np.int64), 0, cap)
        node = {"name": name, "op": "linear" if linear else "conv2d", "inputs": [src],
                "activation": {"bits": dp.a_bits, "signed": dp.a_signed},
                "weights": {"format": dp.fmt, "bits": dp.w_bits, "e_max": dp.e_max, "arch": dp.arch,
                            "frac_bits": dp.frac_bits, "storage_bits": dp.storage_bits},
                "accumulator": {"bits": dp.natural_acc_bits(fan)}, "output": {"lo": out[0], "hi": out[1]},
                "beta_from": beta}
        node |= ({"in_features": fan, "out_features": c_out} if linear else
                 {"in_channels": c_in, "out_channels": c_out, "kernel": [k, k], "stride": stride,
                  "padding": pad, "groups": 1})
        self.nodes.append(node)
        self.params |= {f"{name}/w": self._weights(dp, wshape), f"{name}/M": Ms,
                        f"{name}/B": (self.rng.normal(0, 300, size=c_out) * 2**sh).astype(np.int64),
                        f"{name}/sh": np.full(c_out, sh)}
        self.shape[name] = oshape
        return name

    def quant(self, name, src, bits=None):
        """An adapter and its quant node; returns (quant name, adapter name)."""
        c, h, w = self.shape[src]
        bits = bits or self.a_bits
        hid = c // 4 if c >= 8 else 0
        a = f"{name}_ad"
        pm, psh = _mult(100.0 / (h * w * 2000.0), 65535)
        p = {"pool_M": [pm], "pool_sh": [psh]}
        fan = c
        if hid:
            m1, sh1 = _mult(60.0 / (np.sqrt(c) * 100 * 64), 65535)
            p |= {"w1": self.rng.integers(-128, 128, size=(hid, c)), "M1": np.full((hid, 1), m1),
                  "B1": (self.rng.normal(30, 20, size=hid) * 2**sh1).astype(np.int64), "sh1": np.full(hid, sh1)}
            fan = hid
        m2, sh2 = _mult(128.0 / (np.sqrt(fan) * 80 * 64), 65535)
        p |= {"w2": self.rng.integers(-128, 128, size=(1, fan)), "M2": [[m2]], "B2": [256 << sh2], "sh2": [sh2]}
        self.params |= {f"{a}/{k}": np.asarray(v) for k, v in p.items()}
        self.nodes.append({"name": a, "op": "adapter", "inputs": [src], "channels": c, "hidden": hid,
                           "beta_bits": 10, "beta_frac": 8})
        qp = (1 << bits) - 1
        g = 0
        while g < 30 and qp * (1023 / 256) * 2 ** (g + 1) <= 2**15 - 1:
            g += 1
        self.nodes.append({"name": name, "op": "quant", "inputs": [src], "bits": bits, "g": g, "adapter": a})
        self.shape[name] = self.shape[src]
        return name, a

    def add(self, name, a, b):
        M, sh = _mult(0.7, 65535)
        self.params |= {f"{name}/M": np.array([M, M]), f"{name}/B": np.array([0]), f"{name}/sh": np.array([sh])}
        self.nodes.append({"name": name, "op": "add", "inputs": [a, b], "output": {"lo": U16[0], "hi": U16[1]}})
        self.shape[name] = self.shape[a]
        return name

    def pool(self, name, src, op, k, stride, pad=0):
        c, h, w = self.shape[src]
        node = {"name": name, "op": op, "inputs": [src], "kernel": [k, k], "stride": stride}
        if op == "maxpool":
            node["padding"] = pad
        else:
            M, sh = _mult(1.0 / (k * k), 65535)
            node["output"] = {"lo": U16[0], "hi": U16[1]}
            self.params |= {f"{name}/M": np.array([M]), f"{name}/sh": np.array([sh])}
        self.nodes.append(node)
        self.shape[name] = (c, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)
        return name

    def write(self, path, name, shape, out):
        manifest = {"name": name, "description": "random parameters (benchmark)", "classes": 10,
                    "input": {"shape": list(shape), "bits": 8, "signed": True, "step": 1 / 32,
                              "mean": [0.0] * shape[0], "std": [1.0] * shape[0]},
                    "nodes": self.nodes, "output": out, "samples": 0, "meta": {}}
        write_network(path, manifest, self.params)
        return read_network(path)


def _datapaths(fmt, a_bits, w_bits):
    f, arch = fmt.split("-") if "-" in fmt else (fmt, None)
    dp = Datapath(fmt=f, a_bits=a_bits, w_bits=w_bits, arch=arch)
    edge = Datapath(fmt="uniform", a_bits=8, w_bits=8, a_signed=True)
    last = Datapath(fmt="uniform", a_bits=8, w_bits=8)
    return dp, edge, last


def digits_net(path, fmt="post-split", a_bits=4, w_bits=4, seed=0):
    dp, edge, last = _datapaths(fmt, a_bits, w_bits)
    b = _Net(seed, dp, a_bits)
    b.shape["input"] = (1, 8, 8)
    x = b.layer("conv1", "input", 16, 3, 1, 1, dp=edge)
    q, a = b.quant("q1", x)
    x = b.layer("conv2", q, 32, 3, 1, 1, beta=a)
    x = b.pool("pool", x, "maxpool", 2, 2)
    q, a = b.quant("q2", x)
    x = b.layer("conv3", q, 32, 3, 1, 1, beta=a)
    x = b.pool("gap", x, "avgpool", 4, 1)
    q, a = b.quant("q3", x, bits=8)
    b.layer("fc", q, 10, dp=last, out=S16, beta=a, linear=True)
    return b.write(path, "digits_cnn_random", (1, 8, 8), "fc")


def resnet20_net(path, fmt="post-split", a_bits=4, w_bits=4, seed=0):
    dp, edge, last = _datapaths(fmt, a_bits, w_bits)
    b = _Net(seed, dp, a_bits)
    b.shape["input"] = (3, 32, 32)
    x = b.layer("conv1", "input", 16, 3, 1, 1, dp=edge)
    c_in = 16
    for stage, c in enumerate((16, 32, 64)):
        for blk in range(3):
            p = f"l{stage + 1}b{blk}"
            stride = 2 if blk == 0 and stage > 0 else 1
            q, a = b.quant(f"{p}q", x)
            y = b.layer(f"{p}c1", q, c, 3, stride, 1, beta=a)
            q2, a2 = b.quant(f"{p}q1", y)
            y = b.layer(f"{p}c2", q2, c, 3, 1, 1, out=S16, beta=a2)
            sc = b.layer(f"{p}sc", q, c, 1, stride, 0, out=S16, beta=a) if stride != 1 or c_in != c else x
            x = b.add(f"{p}add", y, sc)
            c_in = c
    x = b.pool("gap", x, "avgpool", 8, 1)
    q, a = b.quant("qfc", x, bits=8)
    b.layer("fc", q, 10, dp=last, out=S16, beta=a, linear=True)
    return b.write(path, "resnet20_random", (3, 32, 32), "fc")


# --- the float mirror -----------------------------------------------------------------------
class FloatMirror(torch.nn.Module):
    """A float32 PyTorch network with the operations of an export (eval mode, fake quantisation)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.p = net, {}
        for nd in net.nodes:
            name, op = nd["name"], nd["op"]
            if op in ("conv2d", "linear"):
                dp = net.datapath(nd)
                tab = sim.product_table(dp)                   # (n_acc, n_a, n_w)
                a_top = dp.a_range[1]
                lev = tab[:, a_top - dp.a_range[0], :].astype(np.float64) / a_top    # level of each code
                w = net.param(name, "w").astype(np.int64) - dp.w_range[0]
                M, B, sh = (net.param(name, k).astype(np.float64) for k in ("M", "B", "sh"))
                scale = M / 2.0 ** sh[:, None]                                      # (C, n_acc)
                wf = sum(lev[k][w] * scale[:, k].reshape((-1,) + (1,) * (w.ndim - 1)) for k in range(dp.n_acc))
                self.p[name] = (torch.tensor(wf, dtype=torch.float32), torch.tensor(B / 2.0 ** sh, dtype=torch.float32))
            elif op == "adapter":
                f = {k: torch.tensor(v.astype(np.float64), dtype=torch.float32)
                     for k, v in net.params.items() if k.startswith(name + "/")}
                self.p[name] = f

    @torch.inference_mode()
    def forward(self, x):
        net, v = self.net, {"input": x}
        for nd in net.nodes:
            name, op = nd["name"], nd["op"]
            src = v[nd["inputs"][0]]
            if op in ("conv2d", "linear"):
                wf, bf = self.p[name]
                if op == "linear":
                    y = F.linear(src.flatten(1), wf)
                else:
                    y = F.conv2d(src, wf, stride=nd["stride"], padding=nd["padding"], groups=nd["groups"])
                if nd.get("beta_from"):
                    y = y * v[nd["beta_from"]].reshape((-1,) + (1,) * (y.dim() - 1))
                y = y + bf.reshape((1, -1) + (1,) * (y.dim() - 2))
                v[name] = y.clamp(nd["output"]["lo"], nd["output"]["hi"])
            elif op == "add":
                m = net.param(name, "M") / 2.0 ** net.param(name, "sh")[0]
                v[name] = (src * float(m[0]) + v[nd["inputs"][1]] * float(m[1])).clamp(
                    nd["output"]["lo"], nd["output"]["hi"])
            elif op == "maxpool":
                v[name] = F.max_pool2d(src, nd["kernel"], nd["stride"], nd["padding"])
            elif op == "avgpool":
                kh, kw = nd["kernel"]
                m = float(net.param(name, "M")[0]) / 2.0 ** float(net.param(name, "sh")[0]) * kh * kw
                v[name] = (F.avg_pool2d(src, nd["kernel"], nd["stride"]) * m).clamp(
                    nd["output"]["lo"], nd["output"]["hi"])
            elif op == "adapter":
                f = self.p[name]
                s = src.sum(dim=(2, 3))
                h = (s * (f[f"{name}/pool_M"] / 2 ** f[f"{name}/pool_sh"])).round().clamp(0, 255)
                if nd["hidden"]:
                    h = F.linear(h, f[f"{name}/w1"] * (f[f"{name}/M1"] / 2 ** f[f"{name}/sh1"][:, None]),
                                 f[f"{name}/B1"] / 2 ** f[f"{name}/sh1"]).round().clamp(0, 255)
                b = F.linear(h, f[f"{name}/w2"] * (f[f"{name}/M2"] / 2 ** f[f"{name}/sh2"][:, None]),
                             f[f"{name}/B2"] / 2 ** f[f"{name}/sh2"]).round().clamp(1, 2 ** nd["beta_bits"] - 1)
                v[name] = b.reshape(-1) / 2 ** nd["beta_frac"]
            else:  # quant
                scale = 2.0 ** -nd["g"]
                z = src * scale
                if nd.get("adapter"):
                    z = z / v[nd["adapter"]].reshape(-1, 1, 1, 1)
                v[name] = z.round().clamp(0, 2 ** nd["bits"] - 1)
        return v[net.output]


# --- timing ---------------------------------------------------------------------------------
_CLOCK = time.perf_counter


def _best(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = _CLOCK()
        fn()
        ts.append(_CLOCK() - t0)
    return min(ts)


def bench(net, batch, reps, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(batch, *net.manifest["input"]["shape"])).astype(np.int16)
    mirror = FloatMirror(net).eval()
    xf = torch.from_numpy(x.astype(np.float32))
    return _compare(net, net.name, x, lambda: mirror(xf), reps)


def _compare(net, name, codes, torch_fn, reps):
    """The integer model of ``net`` on ``codes`` against ``torch_fn()``: images/s, first call, top-1 agreement."""
    batch = codes.shape[0]
    model = IntNetwork(net)
    t_first = time.perf_counter()
    ilog = model.run(codes, keep=False)[f"vec/{net.output}"]
    t_first = time.perf_counter() - t_first
    with torch.inference_mode():
        flog = torch_fn().numpy()
        time.sleep(0.2)
        t_int = _best(lambda: model.run(codes, keep=False), reps)
        time.sleep(0.2)
        t_torch = _best(torch_fn, reps)
    agree = float(np.mean(np.argmax(ilog, axis=1) == np.argmax(flog, axis=1)))
    return {"network": name, "batch": batch, "int_images_per_s": batch / t_int,
            "torch_images_per_s": batch / t_torch, "ratio_int_over_torch": t_torch / t_int,
            "first_call_s": t_first, "top1_agreement_mirror": agree, "threads": numba.get_num_threads()}


def bench_checkpoint(path, out_dir, batch, reps):
    """The QAT network of a checkpoint (asqhw/golden/qat, eval mode) against its integer export.

    Both read the checkpoint's test images (tiled to ``batch``): the QAT network the normalised
    floats, the integer model their input codes; the top-1 agreement is over those images.
    """
    try:
        from asqhw.golden.netexport import build_network
        from asqhw.golden.qat.checkpoint import load_checkpoint, net_from_checkpoint
    except ImportError as e:
        raise SystemExit(f"--checkpoint needs golden.qat and golden.netexport ({e})") from None
    ckpt = load_checkpoint(path)
    manifest, params, _ = build_network(ckpt, samples=0)
    write_network(out_dir / "ckpt.npz", manifest, params)
    net = read_network(out_dir / "ckpt.npz")
    qat = net_from_checkpoint(ckpt).eval()
    xs = ckpt["samples_x"].float()
    xf = xs[torch.arange(batch) % xs.shape[0]]
    step = float(manifest["input"]["step"])
    codes = np.clip(np.round(xf.double().numpy() / step), -128, 127).astype(np.int16)
    return _compare(net, net.name + " (QAT)", codes, lambda: qat(xf), reps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", nargs="*", default=["digits", "resnet20"], choices=["digits", "resnet20"])
    ap.add_argument("--model", action="append", default=[], help="a network export (repeatable)")
    ap.add_argument("--checkpoint", action="append", default=[],
                    help="a QAT checkpoint (repeatable): its QAT network in eval mode against its integer export")
    ap.add_argument("--fmt", default="post-split", help="uniform, pot, post-split or post-lut (built-in nets)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="batch 8, 1 repetition (a smoke run)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time process CPU time instead of wall time (meaningful with one thread)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    global _CLOCK
    if args.cpu_time:
        _CLOCK = time.process_time
    if args.quick:
        args.batch, args.reps = 8, 1
    torch.set_num_threads(numba.get_num_threads())
    nets = [read_network(p) for p in args.model]
    with tempfile.TemporaryDirectory() as d:
        for name in args.net:
            build = digits_net if name == "digits" else resnet20_net
            nets.append(build(Path(d) / f"{name}.npz", fmt=args.fmt))
        rows = [bench(net, args.batch, args.reps) for net in nets]
        rows += [bench_checkpoint(p, Path(d), args.batch, args.reps) for p in args.checkpoint]
    print(f"{'network':22} {'batch':>5} {'int img/s':>10} {'torch img/s':>12} {'int/torch':>9} "
          f"{'first s':>8} {'agree':>6}  (threads {numba.get_num_threads()})")
    for r in rows:
        print(f"{r['network']:22} {r['batch']:5d} {r['int_images_per_s']:10.0f} {r['torch_images_per_s']:12.0f} "
              f"{r['ratio_int_over_torch']:9.2f} {r['first_call_s']:8.2f} {100 * r['top1_agreement_mirror']:5.0f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
