"""A float ONNX model as a QAT graph (``asqhw import``, docs/import.md).

The model is read with the ``onnx`` package from bytes (:func:`read_onnx`: at most
:data:`MAX_BYTES`, no external data files, ``onnx.checker``, then ``onnx.shape_inference`` in
strict mode) and mapped node by node (:func:`convert`):

=====================================================  =========================================
ONNX                                                   QAT graph (:mod:`.graph`)
=====================================================  =========================================
``Conv`` [``BatchNormalization``] [``Relu``]           ``conv`` (BatchNorm kept for folding)
``Add`` of two tensors [``Relu``]                      ``add``
``MaxPool``; ``AveragePool`` (no padding)              ``maxpool``; ``avgpool``
``GlobalAveragePool`` (square input)                   ``avgpool`` over the whole map
``Flatten`` (axis 1), ``Reshape`` to ``N x -1``,       nothing (a linear layer flattens C, H, W)
``Identity``, ``Dropout``, ``Constant``
``Gemm`` / ``MatMul`` [``Add`` bias] giving the output ``linear`` (the logits)
any other ``Gemm`` / ``MatMul`` [``Relu``]             ``conv`` whose kernel covers its input
=====================================================  =========================================

A ``Relu`` right after a ``MaxPool`` moves before it (the two commute), onto the conv or add
the pool reads. Square kernels, equal strides and pads, dilation 1 and one group only. Quantisers go where the
integer network needs them: one ``quant`` node (ASQ with an adapter, or LSQ, as the scheme says)
in front of every conv or linear layer that does not read the network input, shared by all
readers of one tensor, 8-bit in front of the output layer. A conv that reads the input and the
output layer have 8-bit weights (``edge``). Anything else is refused with one line naming the
ONNX node and its op.

A conv without a ``BatchNormalization`` gets an identity BatchNorm (mean 0, variance 1, scale
``sqrt(1 + eps)``, shift the conv's bias), so that every conv folds the same way;
:func:`fit_identity_batchnorms` then moves its statistics to the data's (scale and shift
compensate, the function stays), so that batch statistics in training stay near the identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as tfn

from asqhw.core.errors import UserError

from .graph import QatNet
from .graphspec import MAX_NODES, build_from_spec, safe_name
from .scheme import Scheme

__all__ = ["Imported", "read_onnx", "convert", "import_onnx", "build_net", "fit_identity_batchnorms",
           "MAX_BYTES", "SUPPORTED"]

MAX_BYTES = 1 << 29
"""Largest ONNX file read (512 MiB)."""
MAX_PARAMS = 1 << 28
SUPPORTED = ("Conv", "BatchNormalization", "Relu", "Add", "MaxPool", "AveragePool", "GlobalAveragePool",
             "Flatten", "Reshape", "Gemm", "MatMul", "Identity", "Dropout", "Constant")


@dataclass
class Imported:
    """A converted model: its graph spec (:mod:`.graphspec`) and float weights by unit name.

    ``weights[name]`` holds ``weight`` (numpy float32), ``bias`` (or None) and, for a conv,
    ``bn``: ``(gamma, beta, mean, var, eps)`` of its BatchNormalization or None.
    """

    spec: dict
    weights: dict = field(default_factory=dict)


def read_onnx(path):
    """Read and check ``path`` as an ONNX model with inferred shapes; UserError on anything wrong."""
    import onnx
    from onnx import shape_inference

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise UserError(f"{path}: {size} bytes is more than the {MAX_BYTES >> 20} MiB an ONNX model may have here")
    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    except Exception as e:  # noqa: BLE001 - a protobuf decoding error of any kind
        raise UserError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    g = model.graph
    if not g.node and not g.input:
        raise UserError(f"{path}: not an ONNX model (no graph)")
    if len(g.node) > MAX_NODES:
        raise UserError(f"{path}: {len(g.node)} nodes is more than {MAX_NODES}")
    for t in g.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise UserError(f"{path}: initializer {t.name!r} is stored in an external file; save the model as one file")
    if g.sparse_initializer:
        raise UserError(f"{path}: sparse initializers are not supported")
    try:
        onnx.checker.check_model(model)
        model = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:  # noqa: BLE001 - checker and inference raise several types
        msg = str(e).strip().splitlines()
        raise UserError(f"{path}: invalid ONNX model ({type(e).__name__}: {msg[0][:200] if msg else ''})") from None
    return model


def _label(node, i: int) -> str:
    return f"node {node.name or f'#{i}'!r} ({node.op_type})"


class _Namer:
    """Unique graph names ``[a-z][a-z0-9_]*`` made from ONNX names."""

    def __init__(self):
        self.used = {"input", "vec"}

    def __call__(self, text: str) -> str:
        base = safe_name(text)
        name, k = base, 2
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name


@dataclass
class _Rec:
    """One node of the graph being built (before quantisers are placed)."""

    name: str
    op: str                 # input, conv, fc, add, maxpool, avgpool
    inputs: list
    shape: tuple            # C, H, W of the output
    label: str
    attrs: dict = field(default_factory=dict)
    unit: dict = field(default_factory=dict)


class _Converter:
    def __init__(self, model, name: str):
        from onnx import numpy_helper

        self.np = numpy_helper
        self.g = model.graph
        self.name = name
        self.inits = {t.name: t for t in self.g.initializer}
        self.consts: dict[str, np.ndarray] = {}
        self.shapes = {}
        for vi in list(self.g.value_info) + list(self.g.input) + list(self.g.output):
            self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                                    for d in vi.type.tensor_type.shape.dim]
        self.names = _Namer()
        self.recs: list[_Rec] = []
        self.by_name: dict[str, _Rec] = {}
        self.prod: dict[str, str] = {}      # ONNX tensor -> record name
        self.weights: dict = {}
        self.n_params = 0

    # --- helpers --------------------------------------------------------------------------
    def const(self, tensor: str, where: str) -> np.ndarray:
        if tensor in self.consts:
            arr = self.consts[tensor]
        elif tensor in self.inits:
            arr = self.array(self.inits[tensor], where)
            self.n_params += arr.size
            if self.n_params > MAX_PARAMS:
                raise UserError(f"{where}: the model has more than {MAX_PARAMS} parameters")
        else:
            raise UserError(f"{where}: operand {tensor!r} must be a constant (an initializer)")
        if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)):
            raise UserError(f"{where}: constant {tensor!r} must hold finite floating-point values")
        self.consts[tensor] = arr.astype(np.float32)
        return self.consts[tensor]

    def array(self, t, where: str) -> np.ndarray:
        """An initializer as numpy, its declared size bounded first."""
        if int(np.prod([int(d) for d in t.dims], dtype=object)) > MAX_PARAMS:
            raise UserError(f"{where}: constant {t.name!r} declares more than {MAX_PARAMS} values")
        try:
            return self.np.to_array(t)
        except Exception as e:  # noqa: BLE001 - a malformed tensor of any kind
            raise UserError(f"{where}: constant {t.name!r} is malformed ({type(e).__name__})") from None

    def src(self, tensor: str, where: str) -> _Rec:
        if tensor not in self.prod:
            raise UserError(f"{where}: input {tensor!r} is not a tensor this importer computes")
        return self.by_name[self.prod[tensor]]

    def chw(self, tensor: str, where: str) -> tuple:
        dims = self.shapes.get(tensor)
        if dims is None or len(dims) not in (2, 4) or any(d is None or d < 1 for d in dims[1:]):
            raise UserError(f"{where}: output {tensor!r} needs a static N x C x H x W or N x K shape, not {dims}")
        return tuple(dims[1:]) if len(dims) == 4 else (dims[1], 1, 1)

    def add_rec(self, node, i, op, inputs, tensor, **kw) -> _Rec:
        rec = _Rec(self.names(node.name or f"{node.op_type}_{i}"), op, inputs, self.chw(tensor, _label(node, i)),
                   _label(node, i), **kw)
        self.recs.append(rec)
        self.by_name[rec.name] = rec
        self.prod[tensor] = rec.name
        return rec

    def single_reader(self, rec: _Rec, node, i) -> None:
        """``node`` may merge into ``rec`` only if every tensor ``rec`` made so far has one reader."""
        outs = [t for t, r in self.prod.items() if r == rec.name]
        if any(t in self.outputs or self.readers.get(t, 0) != 1 for t in outs):
            raise UserError(f"{_label(node, i)}: the output of {rec.label} is also read elsewhere, so it cannot "
                            f"be merged into that layer")

    @staticmethod
    def attrs(node) -> dict:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def window(self, node, i, kernel_default=None, allowed=()) -> tuple[int, int, int]:
        """``(kernel, stride, pad)`` of a Conv/pool, refusing what the graph cannot hold."""
        a = self.attrs(node)
        where = _label(node, i)
        extra = set(a) - {"kernel_shape", "strides", "pads", "dilations", "auto_pad", *allowed}
        if extra:
            raise UserError(f"{where}: attribute {sorted(extra)[0]} is not supported")
        ks = list(a.get("kernel_shape", kernel_default or []))
        strides = list(a.get("strides", [1, 1]))
        pads = list(a.get("pads", [0, 0, 0, 0]))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto not in ("NOTSET", "VALID"):
            raise UserError(f"{where}: auto_pad {auto} is not supported (give explicit pads)")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise UserError(f"{where}: dilation {list(a['dilations'])} is not supported")
        if len(ks) != 2 or ks[0] != ks[1]:
            raise UserError(f"{where}: kernel {ks} is not supported (square 2-D kernels only)")
        if len(strides) != 2 or strides[0] != strides[1]:
            raise UserError(f"{where}: strides {strides} are not supported (equal strides only)")
        if len(pads) != 4 or len(set(pads)) != 1:
            raise UserError(f"{where}: pads {pads} are not supported (the same padding on every side only)")
        return int(ks[0]), int(strides[0]), int(pads[0])

    # --- ops ------------------------------------------------------------------------------
    def op_conv(self, node, i):
        where = _label(node, i)
        a = self.attrs(node)
        if a.get("group", 1) != 1:
            raise UserError(f"{where}: group {a['group']} is not supported (groups 1 only)")
        x = self.src(node.input[0], where)
        w = self.const(node.input[1], where)
        if w.ndim != 4:
            raise UserError(f"{where}: weights must be 4-D, not {list(w.shape)}")
        k, stride, pad = self.window(node, i, w.shape[2:], ("group",))
        if w.shape[2] != k or w.shape[1] != x.shape[0]:
            raise UserError(f"{where}: weights {list(w.shape)} do not fit the kernel {k} and {x.shape[0]} input channels")
        bias = self.const(node.input[2], where) if len(node.input) > 2 and node.input[2] else None
        rec = self.add_rec(node, i, "conv", [x.name], node.output[0], attrs={"relu": False},
                           unit={"cin": int(w.shape[1]), "cout": int(w.shape[0]), "kernel": k, "stride": stride,
                                 "padding": pad})
        self.weights[rec.name] = {"weight": w, "bias": bias, "bn": None}

    def op_batchnormalization(self, node, i):
        where = _label(node, i)
        a = self.attrs(node)
        if a.get("training_mode", 0) or len([o for o in node.output if o]) != 1:
            raise UserError(f"{where}: only inference-mode BatchNormalization (one output) is supported")
        rec = self.src(node.input[0], where)
        wt = self.weights.get(rec.name)
        if rec.op != "conv" or wt["bn"] is not None or rec.attrs["relu"]:
            raise UserError(f"{where}: a BatchNormalization must follow a Conv directly")
        self.single_reader(rec, node, i)
        gamma, beta, mean, var = (self.const(t, where) for t in node.input[1:5])
        c = rec.unit["cout"]
        if any(v.shape != (c,) for v in (gamma, beta, mean, var)) or np.any(var < 0):
            raise UserError(f"{where}: scale, bias, mean and variance must be {c} values (variance >= 0)")
        eps = float(a.get("epsilon", 1e-5))
        if wt["bias"] is not None:       # conv bias b: BN(y + b) = BN'(y) with mean - b
            mean = mean - wt["bias"]
            wt["bias"] = None
        wt["bn"] = (gamma, beta, mean, var, eps)
        self.prod[node.output[0]] = rec.name

    def op_relu(self, node, i):
        where = _label(node, i)
        rec = self.src(node.input[0], where)
        if rec.op == "maxpool":
            # relu(maxpool(x)) = maxpool(relu(x)): both are monotone and a padded window keeps a real
            # element; the ReLU moves onto the pool's source (the authors' ResNet stem pools first)
            src = self.by_name[rec.inputs[0]]
            if src.op in ("conv", "add", "fc") and not src.attrs.get("relu"):
                self.single_reader(src, node, i)
                self.single_reader(rec, node, i)
                src.attrs["relu"] = True
                self.prod[node.output[0]] = rec.name
                return
        if rec.op not in ("conv", "add", "fc") or rec.attrs.get("relu"):
            raise UserError(f"{where}: a Relu must follow a Conv, BatchNormalization, Add or Gemm/MatMul "
                            f"directly, not {rec.label}")
        self.single_reader(rec, node, i)
        rec.attrs["relu"] = True
        self.prod[node.output[0]] = rec.name

    def op_add(self, node, i):
        where = _label(node, i)
        a, b = node.input[0], node.input[1]
        const = [t for t in (a, b) if t not in self.prod]
        if len(const) == 1:                                   # MatMul + bias
            rec = self.src(b if const[0] == a else a, where)
            bias = self.const(const[0], where)
            wt = self.weights.get(rec.name)
            if rec.op != "fc" or wt["bias"] is not None or rec.attrs.get("relu"):
                raise UserError(f"{where}: adding a constant is supported only as the bias of a MatMul")
            self.single_reader(rec, node, i)
            c = rec.unit["cout"]
            if bias.size not in (1, c):
                raise UserError(f"{where}: bias of {bias.size} values for {c} outputs")
            wt["bias"] = np.broadcast_to(bias.reshape(-1), (c,)).astype(np.float32)
            self.prod[node.output[0]] = rec.name
            return
        ra, rb = self.src(a, where), self.src(b, where)
        if ra.shape != rb.shape:
            raise UserError(f"{where}: operands of shapes {list(ra.shape)} and {list(rb.shape)} (no broadcasting)")
        self.add_rec(node, i, "add", [ra.name, rb.name], node.output[0], attrs={"relu": False})

    def op_maxpool(self, node, i):
        where = _label(node, i)
        if len([o for o in node.output if o]) != 1:
            raise UserError(f"{where}: the Indices output is not supported")
        k, stride, pad = self.window(node, i, None, ("ceil_mode", "storage_order"))
        a = self.attrs(node)
        if a.get("ceil_mode", 0) or a.get("storage_order", 0):
            raise UserError(f"{where}: ceil_mode and storage_order must be 0")
        x = self.src(node.input[0], where)
        self.add_rec(node, i, "maxpool", [x.name], node.output[0], attrs={"kernel": k, "stride": stride, "padding": pad})

    def op_averagepool(self, node, i):
        where = _label(node, i)
        k, stride, pad = self.window(node, i, None, ("ceil_mode", "count_include_pad"))
        if pad or self.attrs(node).get("ceil_mode", 0):
            raise UserError(f"{where}: padding and ceil_mode are not supported (the integer average pool has none)")
        x = self.src(node.input[0], where)
        self.add_rec(node, i, "avgpool", [x.name], node.output[0], attrs={"kernel": k, "stride": stride})

    def op_globalaveragepool(self, node, i):
        where = _label(node, i)
        x = self.src(node.input[0], where)
        _, h, w = x.shape
        if h != w:
            raise UserError(f"{where}: a {h}x{w} input is not square (the integer average pool has square windows)")
        self.add_rec(node, i, "avgpool", [x.name], node.output[0], attrs={"kernel": h, "stride": h})

    def op_alias(self, node, i):
        where = _label(node, i)
        if node.op_type == "Identity" and node.input[0] not in self.prod:     # a constant passed on
            src = node.input[0]
            if src not in self.consts and src not in self.inits:
                raise UserError(f"{where}: input {src!r} is neither a tensor nor a constant")
            self.consts[node.output[0]] = self.consts[src] if src in self.consts else self.array(self.inits[src], where)
            return
        if node.op_type == "Flatten" and self.attrs(node).get("axis", 1) != 1:
            raise UserError(f"{where}: only axis 1 is supported")
        if node.op_type == "Reshape":
            dims = self.shapes.get(node.output[0])
            if dims is None or len(dims) != 2:
                raise UserError(f"{where}: only a reshape to N x features (a flatten) is supported")
        if node.op_type == "Dropout" and len([o for o in node.output if o]) != 1:
            raise UserError(f"{where}: the mask output is not supported")
        self.prod[node.output[0]] = self.src(node.input[0], where).name

    def op_constant(self, node, i):
        import onnx

        a = self.attrs(node)
        if set(a) != {"value"}:
            raise UserError(f"{_label(node, i)}: only a tensor 'value' is supported")
        if not isinstance(a["value"], onnx.TensorProto):
            raise UserError(f"{_label(node, i)}: only a dense tensor 'value' is supported")
        self.consts[node.output[0]] = self.array(a["value"], _label(node, i))

    def op_fc(self, node, i):
        where = _label(node, i)
        a = self.attrs(node)
        x = self.src(node.input[0], where)
        if node.op_type == "Gemm":
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                raise UserError(f"{where}: only transA 0, alpha 1 and beta 1 are supported")
            w = self.const(node.input[1], where)
            w = w if a.get("transB", 0) else w.T
            bias = self.const(node.input[2], where) if len(node.input) > 2 and node.input[2] else None
        else:
            if len(self.shapes.get(node.input[0]) or []) != 2:
                raise UserError(f"{where}: only a MatMul of an N x features tensor (after a Flatten) is supported")
            w = self.const(node.input[1], where).T
            bias = None
        fan = int(np.prod(x.shape))
        if w.ndim != 2 or w.shape[1] != fan:
            raise UserError(f"{where}: weights {list(w.shape)} do not fit {fan} input features")
        if bias is not None:
            if bias.size not in (1, w.shape[0]):
                raise UserError(f"{where}: bias of {bias.size} values for {w.shape[0]} outputs")
            bias = np.broadcast_to(bias.reshape(-1), (w.shape[0],)).astype(np.float32)
        rec = self.add_rec(node, i, "fc", [x.name], node.output[0], attrs={"relu": False},
                           unit={"cin": fan, "cout": int(w.shape[0])})
        self.weights[rec.name] = {"weight": np.ascontiguousarray(w), "bias": bias, "bn": None}

    # --- the whole graph ------------------------------------------------------------------
    def run(self) -> Imported:
        g = self.g
        ins = [t for t in g.input if t.name not in self.inits]
        if len(ins) != 1 or len(g.output) != 1:
            raise UserError(f"the model must have one input and one output, not {len(ins)} and {len(g.output)}")
        dims = self.shapes.get(ins[0].name) or []
        if len(dims) != 4 or any(d is None or d < 1 for d in dims[1:]) or ins[0].type.tensor_type.elem_type != 1:
            raise UserError(f"input {ins[0].name!r} must be float N x C x H x W with static C, H, W, not {dims}")
        self.outputs = {g.output[0].name}
        self.live = self._live(g.output[0].name)
        self.readers: dict[str, int] = {}
        for k in self.live:
            for t in g.node[k].input:
                self.readers[t] = self.readers.get(t, 0) + 1
        inp = _Rec(self.names("input_q"), "input", [], tuple(dims[1:]), f"input {ins[0].name!r}")
        self.recs.append(inp)
        self.by_name[inp.name] = inp
        self.prod[ins[0].name] = inp.name
        handlers = {"Conv": self.op_conv, "BatchNormalization": self.op_batchnormalization, "Relu": self.op_relu,
                    "Add": self.op_add, "MaxPool": self.op_maxpool, "AveragePool": self.op_averagepool,
                    "GlobalAveragePool": self.op_globalaveragepool, "Flatten": self.op_alias,
                    "Reshape": self.op_alias, "Identity": self.op_alias, "Dropout": self.op_alias,
                    "Constant": self.op_constant, "Gemm": self.op_fc, "MatMul": self.op_fc}
        for i, node in enumerate(g.node):
            if i not in self.live:
                continue
            if node.domain not in ("", "ai.onnx") or node.op_type not in handlers:
                raise UserError(f"{_label(node, i)} is not supported; supported ops: {', '.join(SUPPORTED)}")
            handlers[node.op_type](node, i)
        out = self.src(g.output[0].name, f"output {g.output[0].name!r}")
        if out.op != "fc" or out.attrs.get("relu"):
            raise UserError(f"the model output must come from a Gemm or MatMul without Relu (the logits), "
                            f"not from {out.label}")
        if out.shape[0] != self.shapes[g.output[0].name][-1]:
            raise UserError(f"the model output {g.output[0].name!r} must be N x classes")
        return Imported(self._spec(out), self.weights)

    def _live(self, output: str) -> set[int]:
        """Indices of the nodes the output depends on."""
        need, live = {output}, set()
        for k in range(len(self.g.node) - 1, -1, -1):
            node = self.g.node[k]
            if any(o in need for o in node.output):
                live.add(k)
                # a Reshape's target shape is not computed: only its rank matters (see op_alias)
                need.update(t for t in (node.input[:1] if node.op_type == "Reshape" else node.input) if t)
        return live

    def _spec(self, out: _Rec) -> dict:
        readers: dict[str, list[_Rec]] = {}
        for r in self.recs:
            for s in r.inputs:
                readers.setdefault(s, []).append(r)
        nodes: list[dict] = []
        quant_of: dict[str, str] = {}
        for r in self.recs:
            rs = readers.get(r.name, [])
            if r.op == "input":
                bad = [x for x in rs if x.op not in ("conv", "fc")]
                if bad:
                    raise UserError(f"{bad[0].label} reads the network input, which only Conv, Gemm or MatMul may "
                                    f"read (it becomes signed 8-bit codes)")
            if any(x.op == "maxpool" for x in rs) and len(rs) > 1:
                raise UserError(f"the output of {r.label} is read by a MaxPool and by another node; the integer "
                                f"network allows a max pool to be the only reader")
            nodes.append(self._node(r, out, quant_of))
            layers = [x for x in rs if x.op in ("conv", "fc")]
            if r.op != "input" and layers:
                if not self._unsigned(r):
                    raise UserError(f"{layers[0].label} reads the output of {r.label}, which can be negative "
                                    f"(no Relu before it); the integer activation codes are unsigned")
                q = self.names(f"{r.name}_q")
                quant_of[r.name] = q
                nodes.append({"name": q, "op": "quant", "inputs": [r.name], "attrs": {},
                              "unit": {"bits": 8 if any(x is out for x in layers) else None,
                                       "channels": r.shape[0]}})
        return {"name": self.name, "input_shape": list(self.recs[0].shape), "classes": out.shape[0], "nodes": nodes}

    def _unsigned(self, r: _Rec) -> bool:
        if r.op in ("conv", "add", "fc"):
            return bool(r.attrs.get("relu"))
        if r.op in ("maxpool", "avgpool"):
            return self._unsigned(self.by_name[r.inputs[0]])
        return False

    def _node(self, r: _Rec, out: _Rec, quant_of: dict) -> dict:
        ins = [quant_of.get(s, s) if r.op in ("conv", "fc") else s for s in r.inputs]
        edge = bool(ins) and self.by_name.get(ins[0]) is not None and self.by_name[ins[0]].op == "input"
        if r.op == "input":
            return {"name": r.name, "op": "input", "inputs": [], "attrs": {}, "unit": {}}
        if r is out:
            return {"name": r.name, "op": "linear", "inputs": ins, "attrs": {"edge": True},
                    "unit": dict(r.unit)}
        if r.op == "fc":                       # a hidden fully connected layer: a conv over the whole map
            c, h, w = self.by_name[r.inputs[0]].shape
            if h != w:
                raise UserError(f"{r.label}: a hidden fully connected layer needs a square input, not {h}x{w}")
            wt = self.weights[r.name]
            wt["weight"] = wt["weight"].reshape(-1, c, h, w)
            return {"name": r.name, "op": "conv", "inputs": ins, "attrs": {"relu": r.attrs["relu"], "edge": edge},
                    "unit": {"cin": c, "cout": r.unit["cout"], "kernel": h, "stride": 1, "padding": 0}}
        if r.op == "conv":
            return {"name": r.name, "op": "conv", "inputs": ins, "attrs": {"relu": r.attrs["relu"], "edge": edge},
                    "unit": dict(r.unit)}
        return {"name": r.name, "op": r.op, "inputs": ins, "attrs": dict(r.attrs), "unit": {}}


def convert(model, name: str) -> Imported:
    """Map a checked ONNX model (from :func:`read_onnx`) to a graph spec and float weights."""
    return _Converter(model, name).run()


def import_onnx(path, name: str | None = None) -> Imported:
    """:func:`read_onnx` then :func:`convert`; errors name the file."""
    path = Path(path)
    model = read_onnx(path)
    try:
        return convert(model, name or safe_name(path.stem))
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def _resolve_bits(spec: dict, scheme: Scheme) -> dict:
    """The spec with every quantiser's bits set (None: the scheme's bits)."""
    nodes = [dict(nd, unit=dict(nd["unit"], bits=nd["unit"]["bits"] or scheme.bits)) if nd["op"] == "quant" else nd
             for nd in spec["nodes"]]
    return dict(spec, nodes=nodes)


@torch.no_grad()
def build_net(imp: Imported, scheme: Scheme) -> QatNet:
    """The float-stage QAT network of ``imp`` with its weights (identity BatchNorms where none was)."""
    imp.spec = _resolve_bits(imp.spec, scheme)
    net = build_from_spec(imp.spec, scheme)
    for name, wt in imp.weights.items():
        unit = net.units[name]
        unit.weight.copy_(torch.from_numpy(np.ascontiguousarray(wt["weight"])).reshape(unit.weight.shape))
        if unit.__class__.__name__ == "QLinear":
            unit.bias.copy_(torch.zeros(unit.cout) if wt["bias"] is None else torch.from_numpy(wt["bias"]))
            continue
        bn = unit.bn
        if wt["bn"] is not None:
            gamma, beta, mean, var, eps = wt["bn"]
            bn.eps = eps
            for p, v in ((bn.weight, gamma), (bn.bias, beta), (bn.running_mean, mean), (bn.running_var, var)):
                p.copy_(torch.from_numpy(np.asarray(v, dtype=np.float32)))
        else:
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.copy_(torch.sqrt(bn.running_var + bn.eps))
            bn.bias.copy_(torch.zeros(unit.cout) if wt["bias"] is None else torch.from_numpy(wt["bias"]))
    net.eval()
    return net


@torch.no_grad()
def fit_identity_batchnorms(net: QatNet, imp: Imported, x: torch.Tensor) -> None:
    """Give every identity BatchNorm the mean and variance of its conv's output on ``x``.

    Scale ``sqrt(var + eps)`` and shift ``mean + bias`` compensate, so the network computes
    the same function (up to float rounding) while batch statistics now start near the identity.
    """
    net.eval()
    acts = net(x, keep=True)
    for nd in net.nodes:
        wt = imp.weights.get(nd.name)
        if nd.op != "conv" or wt is None or wt["bn"] is not None:
            continue
        unit = net.units[nd.name]
        y = tfn.conv2d(acts[nd.inputs[0]], unit.weight, None, stride=unit.stride, padding=unit.padding)
        mean = y.mean(dim=(0, 2, 3))
        var = y.var(dim=(0, 2, 3), unbiased=False)
        bn = unit.bn
        b = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(torch.sqrt(var + bn.eps))
        bn.bias.copy_(mean + b)
