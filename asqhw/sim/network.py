"""The integer model of a whole network (docs/datapath.md sections 10-14).

Runs the nodes of an :class:`asqhw.core.network.Network` in order on input codes and
returns every tensor under the vector keys of docs/network.md. Layers run on
:class:`sim.layers.Conv2d` (any of its exact paths), the operations between them
on the kernels of :mod:`sim.netops`. Independent of ``asqhw/golden/``.
"""

from __future__ import annotations

import numba
import numpy as np

from asqhw.core.errors import UserError
from asqhw.core.network import Network

from . import blas, netops, workshare
from .layers import METHODS, Conv2d

__all__ = ["IntNetwork", "run_network", "predict", "set_threads"]

_EMPTY = np.zeros(0, dtype=np.int64)
PAR_MIN_WORK = 1 << 18   # a node with less work (MACs or elements) runs its kernels on one thread


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


class IntNetwork:
    """A network with its layers bound once (weights prepared for the GEMM paths).

    Parameters
    ----------
    net : a validated network export (:func:`asqhw.core.network.read_network`).
    method : the layer path of :class:`sim.layers.Conv2d`: ``"auto"``, ``"exact"``,
        ``"gemm"`` or ``"int"``. The adapters' small FC layers always run ``"exact"``.
    """

    def __init__(self, net: Network, method: str = "auto"):
        if not isinstance(net, Network):
            raise UserError(f"net must be an asqhw.core.network.Network, not {type(net).__name__}")
        if method not in METHODS:
            raise UserError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        self.net, self.method = net, method
        self.layers: dict[str, Conv2d] = {}
        self._keep = True                             # run(keep=...): False fuses each layer's requantisation
        self.adapters: dict[str, tuple] = {}
        adp = net.adapter_datapath()
        for nd in net.nodes:
            name, op = nd["name"], nd["op"]
            if op in ("conv2d", "linear"):
                w = net.param(name, "w")
                if op == "linear":
                    self.layers[name] = Conv2d(w[:, :, None, None], net.datapath(nd),
                                               acc_bits=nd["accumulator"]["bits"], method=method)
                else:
                    self.layers[name] = Conv2d(w, net.datapath(nd), stride=nd["stride"], padding=nd["padding"],
                                               groups=nd["groups"], acc_bits=nd["accumulator"]["bits"],
                                               method=method)
            elif op == "adapter":
                hid = nd["hidden"]
                fc1 = Conv2d(net.param(name, "w1")[:, :, None, None], adp, method="exact") if hid else None
                fc2 = Conv2d(net.param(name, "w2")[:, :, None, None], adp, method="exact")
                self.adapters[name] = (fc1, fc2)
        # work per sample: multiply-adds of a layer, elements read by any other node
        self.work: dict[str, int] = {}
        for nd in net.nodes:
            src = net.tensors[nd["inputs"][0]]
            n_in = int(np.prod(src.shape))
            if nd["op"] in ("conv2d", "linear"):
                self.work[nd["name"]] = int(np.prod(net.tensors[nd["name"]].shape)) * self.layers[nd["name"]].fan_in
            else:
                self.work[nd["name"]] = n_in * (2 if nd["op"] == "add" else 1)
        # the last node that reads each tensor: with keep=False a tensor is dropped after it
        self.last_use: dict[str, int] = {}
        for i, nd in enumerate(net.nodes):
            for src in nd["inputs"]:
                self.last_use[src] = i
            for key in ("beta_from", "adapter"):
                if nd.get(key):
                    self.last_use[nd[key]] = i

    def run(self, x_codes, *, keep: bool = True) -> dict[str, np.ndarray]:
        """Every tensor of the network for the input codes ``x_codes`` ``(N, C, H, W)``.

        Returns a dict with the docs/network.md keys: ``vec/input``, ``vec/NODE`` (int16),
        ``vec/NODE/acc`` (int64 ``(n_acc, N, ...)``), and per adapter ``vec/NODE/S``
        (int64), ``vec/NODE/P``, ``vec/NODE/H`` (int16) and ``vec/NODE/beta`` (int64).
        With ``keep=False`` only ``vec/OUTPUT``, the logits, is returned.
        """
        net = self.net
        x = np.asarray(x_codes)
        shape = net.tensors["input"].shape
        if x.dtype.kind not in "iu":
            raise UserError(f"input codes must be an integer array, not {x.dtype}")
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
            raise UserError(f"input codes have shape {list(x.shape)}, the network expects N x {list(shape)}")
        if x.shape[0] == 0:
            raise UserError("input codes hold no samples")
        if x.size and (int(x.min()) < -128 or int(x.max()) > 127):
            raise UserError(f"input codes span [{int(x.min())}, {int(x.max())}], outside the signed 8-bit range")
        self._keep = keep
        vals = {"input": np.ascontiguousarray(x, dtype=np.int16)}
        out = {"vec/input": vals["input"]} if keep else {}
        threads = numba.get_num_threads()
        for i, nd in enumerate(net.nodes):
            name, op = nd["name"], nd["op"]
            # small nodes run serially: a fork/join costs more than it saves, and far more when
            # the cores are shared (a parallel kernel waits for its slowest thread)
            serial = threads > 1 and self.work[name] * x.shape[0] < PAR_MIN_WORK
            if serial:
                numba.set_num_threads(1)
            try:
                res = getattr(self, "_" + op)(nd, vals)
            finally:
                if serial:
                    numba.set_num_threads(threads)
            for key, arr in res.items():
                if keep:
                    out[f"vec/{name}{key}"] = arr
            vals[name] = res["/beta"] if op == "adapter" else res[""]
            if not keep:
                for src in list(vals):
                    if self.last_use.get(src, -1) <= i and src != net.output:
                        del vals[src]
        if not keep:
            out[f"vec/{net.output}"] = vals[net.output]
        return out

    # --- nodes: each returns {key suffix: array} -----------------------------------------
    def _layer(self, nd, vals):
        name = nd["name"]
        x = vals[nd["inputs"][0]]
        nb = x.shape[0]
        if nd["op"] == "linear":
            x = x.reshape(nb, -1, 1, 1)
        net = self.net
        beta_from = nd.get("beta_from")
        if beta_from:
            beta, fb = vals[beta_from], net.node(beta_from)["beta_frac"]
        else:
            beta, fb = np.ones(nb, dtype=np.int64), 0
        if not self._keep:                            # the codes only: the requantisation fused into the layer
            y = self.layers[name].requantized(x, _i64(net.param(name, "M")), _i64(net.param(name, "B")),
                                              _i64(net.param(name, "sh")), _i64(beta), fb, nd["output"]["lo"],
                                              nd["output"]["hi"])
            return {"": y.reshape(nb, -1) if nd["op"] == "linear" else y}
        acc = self.layers[name](x)
        n_acc, _, c = acc.shape[:3]
        y = np.empty((nb, c) + acc.shape[3:], dtype=np.int16)
        _ranged(netops.requant_layer, nb * c, y.size * n_acc,
                acc.reshape(n_acc, nb, c, -1), _i64(net.param(name, "M")), _i64(net.param(name, "B")),
                _i64(net.param(name, "sh")), _i64(beta), fb, nd["output"]["lo"], nd["output"]["hi"],
                y.reshape(nb, c, -1))
        if nd["op"] == "linear":
            acc, y = acc.reshape(n_acc, nb, c), y.reshape(nb, c)
        return {"/acc": acc, "": y}

    _conv2d = _linear = _layer

    def _add(self, nd, vals):
        a, b = (vals[s] for s in nd["inputs"])
        name = nd["name"]
        m, bias, sh = (self.net.param(name, k) for k in ("M", "B", "sh"))
        z = np.empty(a.shape, dtype=np.int16)
        nb = a.shape[0]
        _ranged(netops.add2, nb, z.size, a.reshape(nb, -1), b.reshape(nb, -1), int(m[0]), int(m[1]), int(bias[0]),
                int(sh[0]), nd["output"]["lo"], nd["output"]["hi"], z.reshape(nb, -1))
        return {"": z}

    def _maxpool(self, nd, vals):
        x = vals[nd["inputs"][0]]
        t = self.net.tensors[nd["name"]]
        y = np.empty((x.shape[0],) + t.shape, dtype=np.int16)
        (kh, kw), st = nd["kernel"], nd["stride"]
        _ranged(netops.maxpool, y.shape[0] * y.shape[1], y.size * kh * kw, x, kh, kw, st, nd["padding"], y)
        return {"": y}

    def _avgpool(self, nd, vals):
        x = vals[nd["inputs"][0]]
        name = nd["name"]
        t = self.net.tensors[name]
        y = np.empty((x.shape[0],) + t.shape, dtype=np.int16)
        (kh, kw), st = nd["kernel"], nd["stride"]
        _ranged(netops.avgpool, y.shape[0] * y.shape[1], y.size * kh * kw, x, kh, kw, st,
                int(self.net.param(name, "M")[0]), int(self.net.param(name, "sh")[0]), nd["output"]["lo"],
                nd["output"]["hi"], y)
        return {"": y}

    def _adapter(self, nd, vals):
        net, name = self.net, nd["name"]
        z = vals[nd["inputs"][0]]
        nb, c = z.shape[:2]
        s = np.empty((nb, c), dtype=np.int64)
        _ranged(netops.pool_sums, nb * c, z.size, z.reshape(nb, c, -1), s)
        p = np.empty((nb, c), dtype=np.int64)
        netops.requant_scalar(s.reshape(-1), int(net.param(name, "pool_M")[0]), int(net.param(name, "pool_sh")[0]),
                              0, 255, p.reshape(-1))
        p16 = p.astype(np.int16)
        res = {"/S": s, "/P": p16}
        fc1, fc2 = self.adapters[name]
        ones = np.ones(nb, dtype=np.int64)
        h16 = p16
        if fc1 is not None:
            acc = fc1(p16[:, :, None, None])
            hid = acc.shape[2]
            h16 = np.empty((nb, hid), dtype=np.int16)
            _ranged(netops.requant_layer, nb * hid, h16.size, acc.reshape(1, nb, hid, 1), _i64(net.param(name, "M1")),
                    _i64(net.param(name, "B1")), _i64(net.param(name, "sh1")), ones, 0, 0, 255, h16.reshape(nb, hid, 1))
            res["/H"] = h16
        acc = fc2(h16[:, :, None, None])
        beta = np.empty((nb, 1, 1), dtype=np.int16)
        _ranged(netops.requant_layer, nb, nb, acc.reshape(1, nb, 1, 1), _i64(net.param(name, "M2")),
                _i64(net.param(name, "B2")), _i64(net.param(name, "sh2")), ones, 0, 1, (1 << nd["beta_bits"]) - 1, beta)
        res["/beta"] = beta.reshape(nb).astype(np.int64)
        return res

    def _quant(self, nd, vals):
        z = vals[nd["inputs"][0]]
        nb = z.shape[0]
        ad = nd.get("adapter")
        beta = _i64(vals[ad]) if ad else _EMPTY
        fb = self.net.node(ad)["beta_frac"] if ad else 0
        a = np.empty(z.shape, dtype=np.int16)
        _ranged(netops.quant, nb, a.size, z.reshape(nb, -1), beta, nd["g"], fb, (1 << nd["bits"]) - 1,
                a.reshape(nb, -1))
        return {"": a}


def _ranged(kernel, n_items, work, *args):
    """``kernel(*args, i0, i1)`` over ``0 .. n_items`` in one range per thread (:func:`sim.workshare.in_ranges`)."""
    workshare.in_ranges(lambda i0, i1: kernel(*args, i0, i1), n_items, work)


def run_network(net, x_codes, *, method: str = "auto", keep: bool = True) -> dict[str, np.ndarray]:
    """Run the integer network on input codes; every vector (``keep``) or only the logits.

    Parameters
    ----------
    net : :class:`asqhw.core.network.Network`, or an :class:`IntNetwork` to reuse its bound layers.
    x_codes : integer array ``(N, C, H, W)`` of signed 8-bit input codes.
    method : layer path (see :class:`IntNetwork`); ignored when ``net`` is an IntNetwork.
    keep : return every tensor (the docs/network.md ``vec/...`` keys) or, if False, only
        ``vec/OUTPUT`` (the int16 logits ``(N, classes)``), dropping tensors after their last use.

    Returns
    -------
    dict of ``vec/...`` keys to arrays with the dtypes of docs/network.md.
    """
    model = net if isinstance(net, IntNetwork) else IntNetwork(net, method)
    return model.run(x_codes, keep=keep)


def predict(net, x_codes, *, method: str = "auto") -> np.ndarray:
    """Predicted classes (int64 ``(N,)``): the index of the largest logit, the lowest on a tie."""
    model = net if isinstance(net, IntNetwork) else IntNetwork(net, method)
    logits = model.run(x_codes, keep=False)[f"vec/{model.net.output}"]
    return np.argmax(logits, axis=1).astype(np.int64)


def set_threads(n: int) -> None:
    """Use ``n`` threads in this thread's numba kernels and in every loaded BLAS (process-wide).

    A layer that one numba thread runs leaves its GEMMs to OpenBLAS's own threads
    (docs/sim.md, "Threads"); limiting only numba would leave those at all cores.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise UserError(f"threads must be in 1..{numba.config.NUMBA_NUM_THREADS}, not {n!r}")
    numba.set_num_threads(n)
    blas.set_threads(n)
