"""A network as an ordered node list: the QAT forward pass and the exporter read the same graph.

Nodes (``op``): ``input`` (:class:`~.actquant.InputQuant`), ``conv`` and ``linear``
(:class:`~.layers.QConv` / :class:`~.layers.QLinear`, with a fused ReLU when ``relu``),
``add`` (two inputs, ReLU when ``relu``), ``maxpool``, ``avgpool`` and ``quant``
(:class:`~.actquant.ActQuant`). Each maps to one node of docs/network.md (a ``quant`` with an
adapter to an ``adapter`` and a ``quant`` node). The float network (stage ``float``) and the
QAT network (stage ``qat``: quantisers on, BatchNorm folded, or simulated-folded until
:meth:`QatNet.fold_bn`) are the same graph. The building API (:class:`GraphBuilder`, its
methods and their arguments) is what other front ends (an ONNX importer) build on: keep it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as tfn
from torch import nn

from .actquant import ActQuant, InputQuant
from .layers import QConv, QLinear
from .scheme import Scheme

__all__ = ["Node", "QatNet", "GraphBuilder"]

OPS = ("input", "conv", "linear", "add", "maxpool", "avgpool", "quant")


@dataclass(frozen=True)
class Node:
    """One node: ``name``, ``op``, the names of its ``inputs`` and op ``attrs``."""

    name: str
    op: str
    inputs: tuple = ()
    attrs: dict = field(default_factory=dict)


class QatNet(nn.Module):
    """A network given as nodes (see the module docstring); the last node gives the logits.

    Parameters
    ----------
    name : str
        Network name (``digits_cnn``, ``resnet20``, ``resnet18``).
    nodes : list of Node
        In an order where every input comes earlier.
    units : dict
        Module of every ``input``, ``conv``, ``linear`` and ``quant`` node, by node name.
    scheme : Scheme
    input_shape : tuple
        ``(C, H, W)`` of one sample.
    classes : int
    """

    def __init__(self, name: str, nodes: list, units: dict, scheme: Scheme, input_shape: tuple, classes: int):
        super().__init__()
        self.name, self.nodes, self.scheme = name, list(nodes), scheme
        self.input_shape, self.classes = tuple(input_shape), classes
        self.units = nn.ModuleDict(units)
        self.stage = "float"
        # the quant node (if any) whose wide codes a node's output is: it saturates there
        self.clip_by: dict[str, str] = {}
        for nd in self.nodes:
            if nd.op == "quant":
                src = nd.inputs[0]
                if src in self.clip_by:
                    raise ValueError(f"{src} feeds two quantisers")
                self.clip_by[src] = nd.name
        # tensors read by a quantiser and by another node (a residual branch)
        self.shared = {src for src in self.clip_by if len([n for n in self.nodes if src in n.inputs]) > 1}
        # running max |x| of every node output (calibrates wide-code and logit steps)
        for nd in self.nodes:
            if nd.op in ("conv", "linear", "add", "maxpool", "avgpool"):
                self.register_buffer(f"amax_{nd.name}", torch.zeros((), dtype=torch.float64))
        self.calibrating = False
        # optional ``hook(node, a, y) -> y`` on every node output ``y`` (``a``: the node's first input,
        # the network input for ``input``); golden.qat.intexact replaces values there
        self.node_hook = None

    def node(self, name: str) -> Node:
        return next(nd for nd in self.nodes if nd.name == name)

    def consumers(self, name: str) -> list[Node]:
        return [nd for nd in self.nodes if name in nd.inputs]

    # --- stages ---------------------------------------------------------------------------
    def to_qat(self, keep_bn: bool = False) -> None:
        """Attach the weight quantisers, quantise the adapters and fold every BatchNorm.

        With ``keep_bn`` the BatchNorms stay, simulated-folded (:mod:`.layers`): batch
        statistics in training until :meth:`freeze_bn`; :meth:`fold_bn` folds them for good
        without changing the eval function. Steps keep their defaults; call
        :meth:`init_quantisers` to start from data (a loaded checkpoint overwrites them instead).
        """
        if self.stage == "qat":
            return
        sch = self.scheme
        for nd in self.nodes:
            unit = self.units[nd.name] if nd.name in self.units else None
            if nd.op in ("conv", "linear"):
                if not keep_bn:
                    unit.fold()
                if nd.attrs.get("edge"):
                    unit.quantise("uniform", 8)
                else:
                    unit.quantise(sch.weight_format, sch.bits, sch.e_max_value)
            elif nd.op in ("quant", "input"):
                unit.enable()
        self.stage = "qat"

    def _bn_units(self):
        return [self.units[nd.name] for nd in self.nodes if nd.op == "conv" and self.units[nd.name].bn is not None]

    def freeze_bn(self) -> None:
        """Freeze every simulated-folded BatchNorm at its running statistics."""
        for unit in self._bn_units():
            unit.freeze_bn()

    def fold_bn(self) -> None:
        """Fold every remaining BatchNorm into its weights and bias (the eval function is kept)."""
        for unit in self._bn_units():
            unit.fold()

    def floor_weight_steps(self) -> None:
        """Keep every weight step above its floor (:meth:`.layers.QConv.floor_step`)."""
        for nd in self.nodes:
            if nd.op in ("conv", "linear"):
                self.units[nd.name].floor_step()

    @property
    def has_bn(self) -> bool:
        """Some conv still has its BatchNorm."""
        return bool(self._bn_units())

    @torch.no_grad()
    def init_quantisers(self, x: torch.Tensor, adapter_start: str = "fit") -> None:
        """LSQ-initialise every activation step from the float activations of batch ``x``.

        Adapters start as ``adapter_start`` says (:meth:`.adapter.Adapter.init_quantisers`).
        """
        for nd in self.nodes:
            if nd.op in ("quant", "input"):
                self.units[nd.name].enabled = False
        acts = self.forward(x, keep=True)
        for nd in self.nodes:
            if nd.op == "input":
                self.units[nd.name].enable(x)
            elif nd.op == "quant":
                self.units[nd.name].enable(acts[nd.inputs[0]], adapter_start)

    # --- forward --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, keep: bool = False):
        """Logits; with ``keep`` the dict of every node's output instead."""
        v: dict[str, torch.Tensor] = {}
        for nd in self.nodes:
            a = v[nd.inputs[0]] if nd.inputs else x
            op = nd.op
            if op in ("input", "quant", "conv", "linear"):
                y = self.units[nd.name](a)
                if nd.attrs.get("relu"):
                    y = torch.relu(y)
            elif op == "add":
                y = a + v[nd.inputs[1]]
                if nd.attrs.get("relu"):
                    y = torch.relu(y)
            elif op == "maxpool":
                y = tfn.max_pool2d(a, nd.attrs["kernel"], nd.attrs["stride"], nd.attrs["padding"])
            elif op == "avgpool":
                y = tfn.avg_pool2d(a, nd.attrs["kernel"], nd.attrs["stride"])
            else:
                raise ValueError(f"unknown op {op!r}")
            q = self.clip_by.get(nd.name)
            if q is not None and nd.name in self.shared:  # the quantiser clips its own input
                y = self.units[q].wide_clip(y)
            if self.node_hook is not None:
                y = self.node_hook(nd, a, y)
            if self.calibrating and op not in ("input", "quant"):
                buf = getattr(self, f"amax_{nd.name}")
                buf.copy_(torch.maximum(buf, y.detach().abs().max().to(buf.dtype)))
            v[nd.name] = y
        return v if keep else v[self.nodes[-1].name]

    @torch.no_grad()
    def calibrate(self, batches) -> None:
        """Record max |output| of every node over ``batches`` (eval mode)."""
        self.eval()
        for nd in self.nodes:
            if hasattr(self, f"amax_{nd.name}"):
                getattr(self, f"amax_{nd.name}").zero_()
        self.calibrating = True
        try:
            for xb in batches:
                self.forward(xb)
        finally:
            self.calibrating = False

    def amax(self, name: str) -> float:
        """Calibrated max |output| of a node."""
        return float(getattr(self, f"amax_{name}"))


class GraphBuilder:
    """Helper that the reference networks use to write their node lists."""

    def __init__(self, scheme: Scheme):
        self.scheme = scheme
        self.nodes: list[Node] = []
        self.units: dict[str, nn.Module] = {}

    def input(self, name="input_q"):
        self.units[name] = InputQuant()
        self.nodes.append(Node(name, "input"))
        return name

    def conv(self, name, src, cin, cout, k, stride=1, padding=0, *, relu=True, edge=False):
        self.units[name] = QConv(cin, cout, k, stride, padding)
        self.nodes.append(Node(name, "conv", (src,), {"relu": relu, "edge": edge}))
        return name

    def linear(self, name, src, cin, cout, *, edge=True):
        self.units[name] = QLinear(cin, cout)
        self.nodes.append(Node(name, "linear", (src,), {"relu": False, "edge": edge}))
        return name

    def quant(self, name, src, channels, bits=None):
        s = self.scheme
        self.units[name] = ActQuant(bits or s.bits, channels, s.adapter, reduction=s.reduction,
                                    beta_bits=s.beta_bits, beta_frac=s.beta_frac)
        self.nodes.append(Node(name, "quant", (src,), {}))
        return name

    def add(self, name, a, b, *, relu=True):
        self.nodes.append(Node(name, "add", (a, b), {"relu": relu}))
        return name

    def maxpool(self, name, src, kernel, stride, padding=0):
        self.nodes.append(Node(name, "maxpool", (src,), {"kernel": kernel, "stride": stride, "padding": padding}))
        return name

    def avgpool(self, name, src, kernel, stride=None):
        self.nodes.append(Node(name, "avgpool", (src,), {"kernel": kernel, "stride": stride or kernel}))
        return name

    def build(self, name: str, input_shape: tuple, classes: int) -> QatNet:
        return QatNet(name, self.nodes, self.units, self.scheme, input_shape, classes)
