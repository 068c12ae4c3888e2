"""Integer-exact QAT: a forward pass whose values are the integer network of spec 1.1, bit for bit.

Inside :class:`IntExact` every forward pass of a :class:`~.graph.QatNet`

1. exports the network's current parameters (:func:`golden.netexport.integer_graph`: the
   ``M``, ``B``, ``sh`` of every layer, add, pool and adapter, the weight codes, the steps);
2. turns the input into signed 8-bit codes as the exporter does (float64, half to even);
3. runs the integer network on them (:func:`run_integer`: the golden reference's ``requant``,
   ``quant``, ``adapter``, ``add``, ``maxpool``, ``avgpool`` and per-sample ``M_n`` of
   docs/datapath.md sections 6 and 10-14, 16-bit wide codes, half-up ties, int64);
4. runs the QAT forward pass and replaces every node's output ``y`` by
   ``v + (y - y.detach())``, where ``v`` is that node's integer tensor times its step (times
   ``beta_q[n] / 2^f_b`` for ASQ codes).

The value of every node, and of the logits, is then exactly the integer tensor times its
step (``y - y.detach()`` is exactly 0), so the network's top-1 is the integer network's, the
lowest index on a tie. The gradient is the QAT network's, straight through each node at the
integer network's operating point: every fake quantiser, adapter and step gets the gradient it
gets in ordinary QAT, evaluated on the integer network's activations.

Accumulators: ``mul``, ``shift`` and ``split`` products are linear in the code,
``P(A, w) = A * P(1, w)`` (section 4), so a layer's accumulator ``k`` is a float64
convolution of the codes with the integer kernel ``P(1, w)`` restricted to index ``k``. It
is exact: every product and every partial sum is an integer of magnitude at most
``K * P_max < 2^(n_nat - 1)`` (section 5), and :func:`build_graph` requires ``n_nat <= 53``,
so every float64 operation acts on exactly representable integers and its result is exact,
whatever the summation order. ``lut`` layers use the int64 reference
(:func:`golden.intref.accumulate_conv2d`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as tfn

from asqhw.core.params import Datapath

from .. import intref, netref
from ..netgraph import input_codes, integer_graph
from .graph import QatNet

__all__ = ["IntGraph", "IntExact", "build_graph", "run_integer", "predict_codes", "evaluate_int", "LR_SCALE",
           "default_epochs"]

I64 = torch.int64
LR_SCALE = 0.1
"""Integer-exact epochs run at this fraction of the QAT learning rate (cosine decay again)."""


def default_epochs(data_spec: str) -> int:
    """Integer-exact epochs of ``asqhw train`` by default: 3 on digits, 1 elsewhere (docs/qat.md)."""
    return 3 if data_spec == "digits" else 1
FLOAT_EXACT_BITS = 53
"""Float64 represents every integer of magnitude below ``2^53``."""


@dataclass
class IntGraph:
    """The integer network of a QAT network's current parameters.

    ``nodes``: the manifest's nodes (docs/network.md); ``params``: each node's arrays as
    int64 tensors, by node name; ``steps``: the step of every wide tensor and of the logits,
    ``code_steps``: the step of every code tensor (both by QAT node name); ``input``: the
    QAT name of the input node; ``kernels``: for ``mul``/``shift``/``split`` layers, the
    float64 kernels ``P(1, w)`` of each accumulator.
    """

    nodes: list
    params: dict
    steps: dict
    code_steps: dict
    input: str
    kernels: dict = field(default_factory=dict)

    @property
    def input_step(self) -> float:
        return self.code_steps[self.input]


def datapath(node: dict) -> Datapath:
    """The :class:`Datapath` of a ``conv2d`` or ``linear`` manifest node."""
    a, w = node["activation"], node["weights"]
    return Datapath(fmt=w["format"], a_bits=a["bits"], w_bits=w["bits"], arch=w["arch"],
                    a_signed=bool(a["signed"]), e_max=w.get("e_max"), frac_bits=w.get("frac_bits"))


def _kernels(node: dict, dp: Datapath, w: torch.Tensor) -> list[torch.Tensor] | None:
    """Float64 kernels ``P(1, w)`` per accumulator, or None (``lut``, or a sum not exact in float64)."""
    fan = int(w[0].numel())
    if dp.arch == "lut" or dp.natural_acc_bits(fan) - 1 > FLOAT_EXACT_BITS:
        return None
    p1, k = intref.products(dp, 1, w)
    return [torch.where(k == i, p1, torch.zeros_like(p1)).to(torch.float64) for i in range(dp.n_acc)]


def build_graph(net: QatNet, arch: str = "split") -> IntGraph:
    """Export ``net``'s current parameters as an :class:`IntGraph` (``net`` is not changed)."""
    hook, net.node_hook = net.node_hook, None
    try:
        ref = copy.deepcopy(net)
    finally:
        net.node_hook = hook
    ref = ref.double().eval()
    nodes, arrays, steps, code_steps = integer_graph(ref, arch)
    params: dict[str, dict[str, torch.Tensor]] = {nd["name"]: {} for nd in nodes}
    for key, a in arrays.items():
        name, arr = key.rsplit("/", 1)
        params[name][arr] = torch.as_tensor(a).to(I64)
    g = IntGraph(nodes, params, steps, code_steps, net.nodes[0].name)
    for nd in nodes:
        if nd["op"] in ("conv2d", "linear"):
            kern = _kernels(nd, datapath(nd), params[nd["name"]]["w"])
            if kern is not None:
                g.kernels[nd["name"]] = kern
    return g


def _accumulate(g: IntGraph, node: dict, dp: Datapath, x: torch.Tensor) -> torch.Tensor:
    """``acc`` (n_acc, N, C_out[, H_o, W_o]) of a layer, wrapped to its accumulator bits."""
    bits = node["accumulator"]["bits"]
    w = g.params[node["name"]]["w"]
    kern = g.kernels.get(node["name"])
    if kern is None:
        if node["op"] == "linear":
            return intref.accumulate_linear(dp, x.reshape(x.shape[0], -1), w, bits)
        return intref.accumulate_conv2d(dp, x, w, stride=node["stride"], padding=node["padding"],
                                        groups=node["groups"], acc_bits=bits)
    lo, hi = dp.a_range
    if x.numel() and (int(x.min()) < lo or int(x.max()) > hi):
        raise ValueError(f"{node['name']}: activation codes outside [{lo}, {hi}]")
    xf = x.to(torch.float64)
    if node["op"] == "linear":
        acc = torch.stack([xf.reshape(x.shape[0], -1) @ k.T for k in kern])
    elif node["groups"] == 1:  # one convolution for every accumulator: kernels stacked on C_out
        y = tfn.conv2d(xf, torch.cat(kern), stride=node["stride"], padding=node["padding"])
        acc = y.reshape(y.shape[0], len(kern), -1, *y.shape[2:]).transpose(0, 1)
    else:
        acc = torch.stack([tfn.conv2d(xf, k, stride=node["stride"], padding=node["padding"], groups=node["groups"])
                           for k in kern])
    acc = acc.to(I64)  # exact integers (module docstring)
    return acc if bits >= dp.natural_acc_bits(int(w[0].numel())) else intref.wrap(acc, bits)


def _layer(g: IntGraph, node: dict, x: torch.Tensor, beta_q, beta_frac) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer node (section 11): ``(acc, y)``, with the per-sample ``M_n`` when ``beta_q`` is given."""
    p = g.params[node["name"]]
    acc = _accumulate(g, node, datapath(node), x)
    lo, hi = node["output"]["lo"], node["output"]["hi"]
    if beta_q is None:
        return acc, intref.requantize(acc, p["M"], p["B"], p["sh"], lo, hi)
    mn = netref.beta_multipliers(p["M"], beta_q, beta_frac)  # N, C, n_acc
    view = (acc.shape[1], acc.shape[2]) + (1,) * (acc.dim() - 3)
    y = netref.requant([acc[k] for k in range(acc.shape[0])], [mn[:, :, k].reshape(view) for k in range(acc.shape[0])],
                       p["B"].reshape(view[1:]), p["sh"].reshape(view[1:]), lo, hi)
    return acc, y


def run_integer(g: IntGraph, codes, keep_acc: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor of the integer network for signed 8-bit input ``codes`` (N, C, H, W).

    Keys are the manifest's node names (``input``, layers, ``NAME_adapter``, ...): int64
    outputs; an adapter gives its ``beta_q`` (N,), and ``NAME/S``, ``NAME/P``, ``NAME/H``,
    ``NAME/beta`` as :func:`golden.netref.adapter`; with ``keep_acc`` also ``NAME/acc``.
    """
    x = torch.as_tensor(codes).to(I64)
    if x.numel() and (int(x.min()) < -128 or int(x.max()) > 127):
        raise ValueError("input codes must be signed 8-bit")
    vals: dict[str, torch.Tensor] = {"input": x}
    fracs: dict[str, int] = {}
    for nd in g.nodes:
        name, op = nd["name"], nd["op"]
        p = g.params[name]
        src = vals[nd["inputs"][0]]
        if op in ("conv2d", "linear"):
            ad = nd.get("beta_from")
            acc, y = _layer(g, nd, src, vals[ad] if ad else None, fracs.get(ad))
            if keep_acc:
                vals[f"{name}/acc"] = acc
        elif op == "add":
            y = netref.add(src, vals[nd["inputs"][1]], p["M"], p["B"], p["sh"], nd["output"]["lo"], nd["output"]["hi"])
        elif op == "maxpool":
            y = netref.maxpool(src, nd["kernel"], nd["stride"], nd["padding"])
        elif op == "avgpool":
            y = netref.avgpool(src, nd["kernel"], nd["stride"], p["M"], p["sh"], nd["output"]["lo"], nd["output"]["hi"])
        elif op == "adapter":
            res = netref.adapter(src, nd, p)
            vals |= {f"{name}/{k}": v for k, v in res.items()}
            y = res["beta"]
            fracs[name] = nd["beta_frac"]
        elif op == "quant":
            ad = nd["adapter"]
            y = netref.quant(src, nd["bits"], nd["g"], vals[ad] if ad else None, fracs.get(ad))
        else:
            raise ValueError(f"unknown integer op {op!r}")
        vals[name] = y
    return vals


def _real(g: IntGraph, name: str, op: str, ints: dict) -> torch.Tensor:
    """The real value (float64) of QAT node ``name``'s integer tensor."""
    if op == "input":
        return ints["input"].to(torch.float64) * g.input_step
    if op != "quant":
        return ints[name].to(torch.float64) * g.steps[name]
    q = next(nd for nd in g.nodes if nd["name"] == name)
    v = ints[name].to(torch.float64) * g.code_steps[name]
    if q["adapter"] is None:
        return v
    frac = next(nd for nd in g.nodes if nd["name"] == q["adapter"])["beta_frac"]
    beta = ints[q["adapter"]].to(torch.float64) * 2.0 ** -frac
    return v * beta.reshape((-1,) + (1,) * (v.dim() - 1))


class IntExact:
    """Context manager: ``with IntExact(net): net(x)`` is the integer network (module docstring).

    Parameters
    ----------
    net : QatNet
        A network in the ``qat`` stage with calibrated ranges (:meth:`QatNet.calibrate`).
    arch : {"split", "lut"}
        Architecture of POST layers, as at export.

    After a forward pass, ``graph`` and ``ints`` hold the integer network and its tensors.
    """

    def __init__(self, net: QatNet, arch: str = "split"):
        if net.stage != "qat":
            raise ValueError("integer-exact mode needs a network in the qat stage")
        self.net, self.arch = net, arch
        self.graph: IntGraph | None = None
        self.ints: dict[str, torch.Tensor] = {}

    def __enter__(self) -> "IntExact":
        if self.net.node_hook is not None:
            raise RuntimeError("the network already has a node hook")
        self.net.node_hook = self._hook
        return self

    def __exit__(self, *exc) -> None:
        self.net.node_hook = None

    def _hook(self, nd, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if nd.op == "input":
            self.graph = build_graph(self.net, self.arch)
            self.ints = run_integer(self.graph, input_codes(a.detach(), self.graph.input_step))
        v = _real(self.graph, nd.name, nd.op, self.ints).to(y.dtype)
        return v + (y - y.detach()) if y.requires_grad else v


@torch.no_grad()
def predict_codes(net: QatNet, codes, *, arch: str = "split", batch: int = 500) -> torch.Tensor:
    """Top-1 class (int64, N) of the integer network of ``net``'s parameters for input ``codes``.

    The lowest index wins a tie of the integer logits (section 11).
    """
    g = build_graph(net, arch)
    codes = torch.as_tensor(codes)
    out = [run_integer(g, codes[i:i + batch])[g.nodes[-1]["name"]].argmax(1) for i in range(0, len(codes), batch)]
    return torch.cat(out) if out else torch.zeros(0, dtype=I64)


def evaluate_int(net: QatNet, x: torch.Tensor, y: torch.Tensor, *, arch: str = "split") -> float:
    """Top-1 accuracy (%) of the integer network on normalised images ``x`` (codes as the exporter makes them)."""
    step = build_graph(net, arch).input_step
    pred = predict_codes(net, input_codes(x, step), arch=arch)
    return 100.0 * float((pred == y).to(torch.float64).mean()) if len(y) else 0.0
