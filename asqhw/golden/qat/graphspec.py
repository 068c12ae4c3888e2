"""A QAT graph as plain data, so that a checkpoint can rebuild a network no builder function makes.

The reference networks are rebuilt by name (:mod:`.models`); an imported network
(``asqhw import``: an ONNX model, or ResNet-18 with another class count) carries its graph in
the checkpoint instead, under the key ``graph``::

    {"name": "mynet", "input_shape": [C, H, W], "classes": K,
     "nodes": [{"name": "conv1", "op": "conv", "inputs": ["input_q"],
                "attrs": {"relu": true, "edge": true},
                "unit": {"cin": 3, "cout": 16, "kernel": 3, "stride": 1, "padding": 1}}, ...]}

``unit`` sizes the node's module: ``conv`` ``cin, cout, kernel, stride, padding``; ``linear``
``cin, cout``; ``quant`` ``bits, channels``; ``input`` and the unit-less ops ``{}``. ``attrs``
are the :class:`~.graph.Node` attributes (``relu``, ``edge``; pools ``kernel``, ``stride``,
``padding``). A checkpoint is user input: :func:`build_from_spec` checks every field and raises
UserError on anything malformed.
"""

from __future__ import annotations

import re

import torch

from asqhw.core.errors import UserError

from .graph import GraphBuilder, QatNet
from .scheme import Scheme

__all__ = ["spec_of", "build_from_spec", "safe_name", "NAME_RE", "MAX_NODES"]

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_NODES = 4096
MAX_UNIT_PARAMS = 1 << 27
MAX_INPUT = 1 << 24
_UNIT = {"conv": ("cin", "cout", "kernel", "stride", "padding"), "linear": ("cin", "cout"),
         "quant": ("bits", "channels"), "input": (), "add": (), "maxpool": (), "avgpool": ()}
_ATTRS = {"conv": ("relu", "edge"), "linear": ("edge",), "add": ("relu",), "maxpool": ("kernel", "stride", "padding"),
          "avgpool": ("kernel", "stride"), "quant": (), "input": ()}
_LIMIT = 1 << 16


def safe_name(text: str, limit: int = 40) -> str:
    """``text`` as a node or network name: lower case, ``[a-z0-9_]``, starting with a letter."""
    base = re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", text.lower())).strip("_")[:limit] or "n"
    return base if base[0].isalpha() else "n" + base


@torch.no_grad()
def spec_of(net: QatNet) -> dict:
    """The graph spec of a float-stage network (channels of each quantiser from one zero image)."""
    acts = net(torch.zeros((1,) + tuple(net.input_shape)), keep=True)
    nodes = []
    for nd in net.nodes:
        u = net.units[nd.name] if nd.name in net.units else None
        if nd.op == "conv":
            unit = {"cin": u.cin, "cout": u.cout, "kernel": u.kernel, "stride": u.stride, "padding": u.padding}
        elif nd.op == "linear":
            unit = {"cin": u.cin, "cout": u.cout}
        elif nd.op == "quant":
            unit = {"bits": u.bits, "channels": int(acts[nd.inputs[0]].shape[1])}
        else:
            unit = {}
        attrs = {k: nd.attrs[k] for k in _ATTRS[nd.op] if k in nd.attrs}
        nodes.append({"name": nd.name, "op": nd.op, "inputs": list(nd.inputs), "attrs": attrs, "unit": unit})
    return {"name": net.name, "input_shape": list(net.input_shape), "classes": net.classes, "nodes": nodes}


def _int(v, what: str, lo: int = 0, hi: int = _LIMIT) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise UserError(f"checkpoint graph: {what} must be an integer in {lo}..{hi}, not {v!r}")
    return v


def _node(g: GraphBuilder, nd, seen: set) -> None:
    if not isinstance(nd, dict):
        raise UserError(f"checkpoint graph: a node must be an object, not {type(nd).__name__}")
    name, op = nd.get("name"), nd.get("op")
    if not isinstance(name, str) or not NAME_RE.match(name) or name in ("input", "vec") or name in seen:
        raise UserError(f"checkpoint graph: bad or repeated node name {name!r}")
    if op not in _UNIT:
        raise UserError(f"checkpoint graph: node {name} has unknown op {op!r}")
    ins, attrs, unit = nd.get("inputs"), nd.get("attrs"), nd.get("unit")
    n_in = {"input": 0, "add": 2}.get(op, 1)
    if not isinstance(ins, list) or len(ins) != n_in or any(i not in seen for i in ins):
        raise UserError(f"checkpoint graph: node {name} needs {n_in} input(s) among the earlier nodes, not {ins!r}")
    if not isinstance(attrs, dict) or not isinstance(unit, dict) or set(unit) != set(_UNIT[op]) \
            or not set(attrs) <= set(_ATTRS[op]):
        raise UserError(f"checkpoint graph: node {name} has malformed attrs or unit")
    u = {k: _int(unit[k], f"{name}.{k}", 0 if k == "padding" else 1) for k in unit}
    size = u.get("cin", 0) * u.get("cout", 0) * u.get("kernel", 1) ** 2
    if size > MAX_UNIT_PARAMS:
        raise UserError(f"checkpoint graph: node {name} would have {size} weights, more than {MAX_UNIT_PARAMS}")
    flags = {k: attrs.get(k, False) for k in ("relu", "edge")}
    if any(not isinstance(v, bool) for v in flags.values()):
        raise UserError(f"checkpoint graph: node {name}: relu and edge must be true or false")
    src = ins[0] if ins else None
    if op == "input":
        g.input(name)
    elif op == "conv":
        g.conv(name, src, u["cin"], u["cout"], u["kernel"], u["stride"], u["padding"], relu=flags["relu"],
               edge=flags["edge"])
    elif op == "linear":
        g.linear(name, src, u["cin"], u["cout"], edge=flags["edge"])
    elif op == "quant":
        g.quant(name, src, u["channels"], bits=_int(u["bits"], f"{name}.bits", 2, 8))
    elif op == "add":
        g.add(name, ins[0], ins[1], relu=flags["relu"])
    elif op == "maxpool":
        k = _int(attrs.get("kernel"), f"{name}.kernel", 1)
        g.maxpool(name, src, k, _int(attrs.get("stride"), f"{name}.stride", 1),
                  _int(attrs.get("padding", 0), f"{name}.padding", 0, k // 2))
    else:
        g.avgpool(name, src, _int(attrs.get("kernel"), f"{name}.kernel", 1), _int(attrs.get("stride"), f"{name}.stride", 1))
    seen.add(name)


def build_from_spec(spec, scheme: Scheme) -> QatNet:
    """The float-stage network of a graph spec (weights at their initial values)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), list) or not 1 <= len(spec["nodes"]) <= MAX_NODES:
        raise UserError("checkpoint graph: expected an object with 1..4096 nodes")
    shape = spec.get("input_shape")
    if not isinstance(shape, list) or len(shape) != 3:
        raise UserError(f"checkpoint graph: input_shape must be [C, H, W], not {shape!r}")
    shape = [_int(v, "input_shape", 1) for v in shape]
    if shape[0] * shape[1] * shape[2] > MAX_INPUT:
        raise UserError(f"checkpoint graph: an input of {'x'.join(map(str, shape))} is more than {MAX_INPUT} values")
    classes = _int(spec.get("classes"), "classes", 1)
    name = spec.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError(f"checkpoint graph: bad network name {name!r}")
    g = GraphBuilder(scheme)
    seen: set = set()
    for nd in spec["nodes"]:
        _node(g, nd, seen)
    if g.nodes[0].op != "input" or sum(nd.op == "input" for nd in g.nodes) != 1 or g.nodes[-1].op != "linear":
        raise UserError("checkpoint graph: the first node must be the input and the last a linear layer")
    try:
        return g.build(name, tuple(shape), classes)
    except ValueError as e:
        raise UserError(f"checkpoint graph: {e}") from None
