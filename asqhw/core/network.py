"""Network export files (docs/network.md): deterministic writing, strict bounded reading.

A network is a list of nodes (docs/datapath.md sections 10-14) with integer parameter arrays
and, optionally, golden vectors. :func:`read_network` checks every field, derives each
tensor's shape and kind from ``input.shape`` through the nodes, and checks every array's
dtype and shape against the manifest *before* reading it, so a hostile file cannot make it
allocate more than it declares. Both asqhw/golden/ and asqhw/sim/ read networks through this module.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import atomic
from .spec import SPEC_VERSION
from .errors import UserError
from .params import Datapath, MAX_ACC_BITS
from .safezip import SafeZip, archive_bytes, check_total
from .validate import is_int

__all__ = ["Network", "Tensor", "read_network", "write_network", "is_network_file", "m_cap", "g_max", "peak_values",
           "expected_arrays", "validate", "declared_bytes", "FORMAT", "FORMAT_VERSION", "WIDE_SIGNED",
           "WIDE_UNSIGNED", "OPS", "MAX_TENSOR", "MAX_CHANNELS", "MAX_MACS", "MAX_SAMPLE_VALUES"]

FORMAT = "asqhw-network"
FORMAT_VERSION = 1
OPS = ("conv2d", "linear", "add", "maxpool", "avgpool", "adapter", "quant")
WIDE_UNSIGNED = (0, 2**15 - 1)
WIDE_SIGNED = (-(2**15), 2**15 - 1)
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_MAX_MANIFEST = 1 << 22
_MAX_ELEMENTS = 1 << 31
_MAX_ENTRIES = 1 << 14
_MAX_NODES = 4096
# Implementation limits (docs/network.md): what a reader accepts, a writer writes and
# ``asqhw run`` / ``conform`` can run. Per sample: every tensor a node makes and every padded
# input of a conv2d or maxpool holds at most MAX_TENSOR values; channels and features are at
# most MAX_CHANNELS; the network does at most MAX_MACS multiply-adds. Over the golden samples,
# a padded input holds at most MAX_SAMPLE_VALUES values.
MAX_TENSOR = 1 << 24
MAX_CHANNELS = 1 << 16
MAX_MACS = 1 << 36
MAX_SAMPLE_VALUES = 1 << 25


def m_cap(beta_bits: int, beta_frac: int) -> int:
    """Largest static multiplier of a node with ``beta_from`` (spec 1.2 section 11): every
    per-sample ``M_n`` fits 16 bits, and so does ``M`` itself (at most 65535, also where
    ``beta_frac = beta_bits``)."""
    h = 1 << (beta_frac - 1) if beta_frac >= 1 else 0
    return min(65535, ((1 << (16 + beta_frac)) - 1 - h) // ((1 << beta_bits) - 1))


def g_max(bits: int, beta_bits: int | None = None, beta_frac: int | None = None) -> int | None:
    """Largest ``G`` of a ``quant`` node (spec 1.2 section 14), or None when none is legal.

    ``G`` is legal when ``Q_p * beta_max * 2^G <= 2^15 - 1`` (in integers: ``Q_p * (2^b_beta - 1)
    * 2^G <= (2^15 - 1) * 2^f_b`` with an adapter, ``Q_p * 2^G <= 2^15 - 1`` without), ``0 <= G
    <= 30`` and, with an adapter, ``15 + G - f_b >= 1``. A (bits, b_beta, f_b) combination with
    no legal ``G`` is invalid.
    """
    qp = (1 << bits) - 1
    num, den = (qp * ((1 << beta_bits) - 1), 1 << beta_frac) if beta_bits is not None else (qp, 1)
    if num > WIDE_UNSIGNED[1] * den:
        return None
    g = 0
    while g < 30 and num << (g + 1) <= WIDE_UNSIGNED[1] * den:
        g += 1
    if beta_frac is not None and 15 + g - beta_frac < 1:
        return None
    return g


def _per_sample(shape, where: str, what: str = "output"):
    n = math.prod(shape)
    _need(n <= MAX_TENSOR, where, f"{what} of {n} values per sample is more than the {MAX_TENSOR} "
          f"this implementation runs ({'x'.join(map(str, shape))})")


@dataclass(frozen=True)
class Tensor:
    """What a node makes: per-sample ``shape``, ``kind`` (codes / wide / beta) and range.

    ``beta`` names the adapter whose ``beta_q`` scales the step of a codes tensor (else None).
    """

    shape: tuple
    kind: str
    lo: int = 0
    hi: int = 0
    beta: str | None = None


@dataclass
class Network:
    """A validated network export: manifest, parameter arrays, golden vectors, tensor facts."""

    manifest: dict
    params: dict = field(default_factory=dict)
    vectors: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def nodes(self) -> list[dict]:
        return self.manifest["nodes"]

    @property
    def output(self) -> str:
        return self.manifest["output"]

    @property
    def samples(self) -> int:
        return self.manifest["samples"]

    def node(self, name: str) -> dict:
        for nd in self.nodes:
            if nd["name"] == name:
                return nd
        raise KeyError(name)

    def param(self, node: str, key: str) -> np.ndarray:
        return self.params[f"{node}/{key}"]

    def datapath(self, node: dict) -> Datapath:
        """The layer datapath of a conv2d/linear node."""
        return _datapath(node)

    def adapter_datapath(self) -> Datapath:
        """The datapath of an adapter's FC layers: 8-bit unsigned codes, 8-bit uniform weights."""
        return Datapath(fmt="uniform", a_bits=8, w_bits=8)


# --- validation -----------------------------------------------------------------------------
def _pos(v) -> bool:
    return is_int(v) and v >= 1


def _int(v, lo, hi) -> bool:
    return is_int(v) and lo <= v <= hi


def _need(cond: bool, where: str, what: str):
    if not cond:
        raise UserError(f"{where}: {what}")


def _pair(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_pos(i) for i in v)


def _datapath(node: dict) -> Datapath:
    a, w = node["activation"], node["weights"]
    return Datapath(fmt=w["format"], a_bits=a["bits"], w_bits=w["bits"], arch=w["arch"],
                    a_signed=bool(a["signed"]), e_max=w.get("e_max"), frac_bits=w.get("frac_bits"))


def _out_range(node: dict, where: str) -> tuple[int, int]:
    out = node.get("output")
    _need(isinstance(out, dict), where, "needs an 'output' object {lo, hi}")
    lo, hi = out.get("lo"), out.get("hi")
    _need(_int(lo, WIDE_SIGNED[0], WIDE_SIGNED[1]) and _int(hi, WIDE_SIGNED[0], WIDE_SIGNED[1]) and lo < hi,
          where, f"output range [{lo}, {hi}] must be integers lo < hi within the signed 16-bit range")
    return lo, hi


def _layer(node: dict, src: Tensor, where: str, tensors: dict) -> Tensor:
    op = node["op"]
    try:
        dp = _datapath(node)
    except (KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{where}: malformed activation/weights fields ({e})") from None
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    w = node["weights"]
    if dp.fmt != "uniform":
        _need(w.get("storage_bits") == dp.storage_bits, where, f"storage_bits should be {dp.storage_bits}")
    _need(src.kind == "codes" and (src.lo, src.hi) == dp.a_range, where,
          f"reads {src.kind} in [{src.lo}, {src.hi}], expected {dp.a_bits}-bit "
          f"{'signed' if dp.a_signed else 'unsigned'} codes {list(dp.a_range)}")
    if op == "linear":
        k, c = node.get("in_features"), node.get("out_features")
        _need(_pos(k) and _pos(c), where, "needs positive in_features and out_features")
        _need(c <= MAX_CHANNELS, where, f"out_features {c} is more than {MAX_CHANNELS}")
        _need(int(np.prod(src.shape)) == k, where, f"in_features {k} != input size {int(np.prod(src.shape))}")
        fan, shape = k, (c,)
    else:
        for key in ("in_channels", "out_channels", "stride", "groups"):
            _need(_int(node.get(key), 1, MAX_CHANNELS), where,
                  f"{key} must be an integer in 1..{MAX_CHANNELS}, not {node.get(key)!r}")
        pad = node.get("padding")
        _need(_int(pad, 0, MAX_CHANNELS), where, f"padding must be an integer in 0..{MAX_CHANNELS}, not {pad!r}")
        _need(_pair(node.get("kernel")) and all(v <= MAX_CHANNELS for v in node["kernel"]), where,
              f"kernel must be two integers in 1..{MAX_CHANNELS}, not {node.get('kernel')!r}")
        _need(len(src.shape) == 3, where, f"conv2d needs a C x H x W input, got shape {list(src.shape)}")
        ci, c, g, st = node["in_channels"], node["out_channels"], node["groups"], node["stride"]
        (kh, kw), (cin, h, wd) = node["kernel"], src.shape
        _need(cin == ci, where, f"in_channels {ci} != input channels {cin}")
        _need(ci % g == 0 and c % g == 0, where, f"channels must be divisible by groups={g}")
        _need(h + 2 * pad >= kh and wd + 2 * pad >= kw, where, "kernel is larger than the padded input")
        _per_sample((ci, h + 2 * pad, wd + 2 * pad), where, "padded input")
        fan = ci // g * kh * kw
        shape = (c, (h + 2 * pad - kh) // st + 1, (wd + 2 * pad - kw) // st + 1)
    _per_sample(shape, where)
    natural = dp.natural_acc_bits(fan)
    acc = node.get("accumulator")
    _need(isinstance(acc, dict) and _int(acc.get("bits"), 2, min(natural, MAX_ACC_BITS)), where,
          f"accumulator bits must be in 2..{min(natural, MAX_ACC_BITS)}, not {acc!r}")
    lo, hi = _out_range(node, where)
    beta = node.get("beta_from")
    _need(beta == src.beta, where, f"beta_from is {beta!r} but its input codes are scaled by {src.beta!r}")
    return Tensor(shape, "wide", lo, hi)


def _pool(node: dict, src: Tensor, where: str, avg: bool) -> Tensor:
    _need(src.kind in ("codes", "wide") and len(src.shape) == 3, where, "pools a C x H x W tensor")
    _need(_pair(node.get("kernel")) and _pos(node.get("stride")), where, "needs kernel [kh, kw] and a positive stride")
    (kh, kw), st = node["kernel"], node["stride"]
    pad = 0 if avg else node.get("padding")
    if not avg:
        _need(_int(pad, 0, 1 << 20) and pad < kh and pad < kw, where,
              f"padding must be a non-negative integer below the kernel, not {pad!r}")
    c, h, w = src.shape
    _need(h + 2 * pad >= kh and w + 2 * pad >= kw, where, "kernel is larger than the input")
    _per_sample((c, h + 2 * pad, w + 2 * pad), where, "padded input")
    shape = (c, (h + 2 * pad - kh) // st + 1, (w + 2 * pad - kw) // st + 1)
    if not avg:
        return Tensor(shape, src.kind, src.lo, src.hi, src.beta)
    lo, hi = _out_range(node, where)
    if src.kind == "codes":
        _need((lo, hi) == (src.lo, src.hi), where, "an average pool of codes keeps the code range")
    return Tensor(shape, src.kind, lo, hi, src.beta)


def _tensors(manifest: dict) -> dict[str, Tensor]:
    """Check every node and return the Tensor each one makes (plus ``input``)."""
    inp = manifest.get("input")
    _need(isinstance(inp, dict), "manifest", "needs an 'input' object")
    shape = inp.get("shape")
    _need(isinstance(shape, list) and len(shape) == 3 and all(_pos(v) for v in shape)
          and math.prod(shape) <= 1 << 24, "input", f"shape must be [C, H, W] positive integers, not {shape!r}")
    _need(inp.get("bits") == 8 and inp.get("signed") is True, "input", "codes must be 8-bit signed")
    step = inp.get("step")
    _need(isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step) and step > 0,
          "input", f"step must be a positive finite number, not {step!r}")
    for key in ("mean", "std"):
        v = inp.get(key)
        _need(isinstance(v, list) and len(v) == shape[0] and all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in v),
            "input", f"{key} must be {shape[0]} finite numbers")
    _need(all(s > 0 for s in inp["std"]), "input", "std must be positive")
    tensors = {"input": Tensor(tuple(shape), "codes", -128, 127)}
    nodes = manifest.get("nodes")
    _need(isinstance(nodes, list) and nodes, "manifest", "needs a non-empty 'nodes' list")
    _need(len(nodes) <= _MAX_NODES, "manifest", f"has {len(nodes)} nodes, more than {_MAX_NODES}")
    for i, node in enumerate(nodes):
        _need(isinstance(node, dict), f"node {i}", "must be a JSON object")
        name = node.get("name")
        _need(isinstance(name, str) and _NAME.match(name) and name not in ("input", "vec"), f"node {i}",
              f"name must match [a-z][a-z0-9_]* and not be input/vec, not {name!r}")
        where = f"node {name!r}"
        _need(name not in tensors, where, "name is used twice")
        op = node.get("op")
        _need(op in OPS, where, f"op must be one of {', '.join(OPS)}, not {op!r}")
        ins = node.get("inputs")
        want = 2 if op == "add" else 1
        _need(isinstance(ins, list) and len(ins) == want and all(isinstance(v, str) for v in ins), where,
              f"needs {want} input name(s)")
        for v in ins:
            _need(v in tensors, where, f"reads {v!r}, which is not an earlier node")
            _need(tensors[v].kind != "beta", where, f"reads adapter {v!r}; only quant nodes name adapters")
        src = tensors[ins[0]]
        try:
            tensors[name] = _node_tensor(node, op, src, tensors, where, manifest)
        except UserError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise UserError(f"{where}: malformed fields ({type(e).__name__}: {e})") from None
    out = manifest.get("output")
    _need(isinstance(out, str) and out in tensors and out != "input", "manifest",
          f"output must name a node, not {out!r}")
    _need(next(n for n in nodes if n["name"] == out)["op"] == "linear", "manifest", "the output node must be linear")
    classes = manifest.get("classes")
    _need(_pos(classes) and classes == tensors[out].shape[0], "manifest",
          f"classes {classes!r} != logits {tensors[out].shape[0]}")
    macs = sum(math.prod(tensors[n["name"]].shape) * _fan_in(n) for n in nodes if n["op"] in ("conv2d", "linear"))
    _need(macs <= MAX_MACS, "manifest", f"does {macs} multiply-adds per sample, more than the {MAX_MACS} "
          f"this implementation runs")
    return tensors


def peak_values(manifest: dict, tensors: dict[str, Tensor]) -> int:
    """The most values one sample holds at once in one place: a node's output or a padded input."""
    peak = max(math.prod(t.shape) for t in tensors.values())
    for nd in manifest["nodes"]:
        if nd["op"] in ("conv2d", "maxpool"):
            c, h, w = tensors[nd["inputs"][0]].shape
            pad = nd["padding"]
            peak = max(peak, c * (h + 2 * pad) * (w + 2 * pad))
    return peak


def declared_bytes(expected: dict[str, tuple[str, tuple]]) -> int:
    """Bytes of all arrays of :func:`expected_arrays` (the file's total size, headers aside)."""
    return sum(math.prod(shape) * np.dtype(dtype).itemsize for dtype, shape in expected.values())


def _fan_in(node: dict) -> int:
    if node["op"] == "linear":
        return node["in_features"]
    return node["in_channels"] // node["groups"] * node["kernel"][0] * node["kernel"][1]


def _node_tensor(node, op, src, tensors, where, manifest) -> Tensor:
    if op in ("conv2d", "linear"):
        return _layer(node, src, where, tensors)
    if op == "add":
        other = tensors[node["inputs"][1]]
        _need(src.kind == "wide" and other.kind == "wide", where, "adds two wide-code tensors")
        _need(src.shape == other.shape, where, f"adds shapes {list(src.shape)} and {list(other.shape)}")
        lo, hi = _out_range(node, where)
        return Tensor(src.shape, "wide", lo, hi)
    if op in ("maxpool", "avgpool"):
        return _pool(node, src, where, op == "avgpool")
    if op == "adapter":
        _need(src.kind == "wide" and src.lo >= 0, where, "reads unsigned wide codes")
        c = src.shape[0]
        _need(node.get("channels") == c, where, f"channels {node.get('channels')!r} != input channels {c}")
        _need(_int(node.get("hidden"), 0, MAX_CHANNELS), where, f"hidden must be an integer in 0..{MAX_CHANNELS}")
        bb, fb = node.get("beta_bits"), node.get("beta_frac")
        _need(_int(bb, 2, 15), where, f"beta_bits must be in 2..15, not {bb!r}")
        _need(_int(fb, 0, bb), where, f"beta_frac must be in 0..{bb}, not {fb!r}")
        return Tensor((), "beta", 1, (1 << bb) - 1)
    # quant
    _need(src.kind == "wide" and src.lo >= 0, where, "reads unsigned wide codes")
    bits, g, ad = node.get("bits"), node.get("g"), node.get("adapter")
    _need(_int(bits, 2, 8), where, f"bits must be in 2..8, not {bits!r}")
    _need(_int(g, 0, 30), where, f"g must be in 0..30, not {g!r}")
    if ad is not None:
        _need(isinstance(ad, str) and ad in tensors and tensors[ad].kind == "beta", where,
              f"adapter {ad!r} is not an earlier adapter node")
        an = next(n for n in manifest["nodes"] if n["name"] == ad)
        _need(an["inputs"] == node["inputs"], where, f"adapter {ad!r} must read the same tensor as the quant")
        _need(15 + g - an["beta_frac"] >= 1, where, "needs 15 + g - beta_frac >= 1")
        bb, fb = an["beta_bits"], an["beta_frac"]
        gm = g_max(bits, bb, fb)
        _need(gm is not None, where, f"{bits}-bit codes cannot be made with adapter {ad!r}'s beta format "
              f"{bb}/{fb}: (2^{bits} - 1) * (2^{bb} - 1) > (2^15 - 1) * 2^{fb}, so no g keeps "
              f"Q_p * beta_max * 2^g <= 2^15 - 1 (spec section 14)")
    else:
        gm = g_max(bits)
    _need(g <= gm, where, f"g {g} lets wide codes saturate before codes do: Q_p * beta_max * 2^g must be "
          f"<= 2^15 - 1, so g <= {gm} (spec section 14)")
    return Tensor(src.shape, "codes", 0, (1 << bits) - 1, ad)


def expected_arrays(manifest: dict, tensors: dict[str, Tensor]) -> dict[str, tuple[str, tuple]]:
    """Every array key the manifest implies, with its dtype and shape (docs/network.md)."""
    out: dict[str, tuple[str, tuple]] = {}
    n = manifest["samples"]
    if n:
        out["vec/input"] = ("int16", (n,) + tensors["input"].shape)
    for node in manifest["nodes"]:
        name, op = node["name"], node["op"]
        t = tensors[name]
        if op in ("conv2d", "linear"):
            dp = _datapath(node)
            c = t.shape[0]
            if op == "linear":
                w = (c, node["in_features"])
            else:
                kh, kw = node["kernel"]
                w = (c, node["in_channels"] // node["groups"], kh, kw)
            out |= {f"{name}/w": ("int16", w), f"{name}/M": ("int64", (c, dp.n_acc)),
                    f"{name}/B": ("int64", (c,)), f"{name}/sh": ("int64", (c,))}
            if n:
                out[f"vec/{name}/acc"] = ("int64", (dp.n_acc, n) + t.shape)
        elif op == "add":
            out |= {f"{name}/M": ("int64", (2,)), f"{name}/B": ("int64", (1,)), f"{name}/sh": ("int64", (1,))}
        elif op == "avgpool":
            out |= {f"{name}/M": ("int64", (1,)), f"{name}/sh": ("int64", (1,))}
        elif op == "adapter":
            c, hid = node["channels"], node["hidden"]
            out |= {f"{name}/pool_M": ("int64", (1,)), f"{name}/pool_sh": ("int64", (1,))}
            if hid:
                out |= {f"{name}/w1": ("int16", (hid, c)), f"{name}/M1": ("int64", (hid, 1)),
                        f"{name}/B1": ("int64", (hid,)), f"{name}/sh1": ("int64", (hid,))}
            out |= {f"{name}/w2": ("int16", (1, hid or c)), f"{name}/M2": ("int64", (1, 1)),
                    f"{name}/B2": ("int64", (1,)), f"{name}/sh2": ("int64", (1,))}
            if n:
                out |= {f"vec/{name}/S": ("int64", (n, c)), f"vec/{name}/P": ("int16", (n, c)),
                        f"vec/{name}/beta": ("int64", (n,))}
                if hid:
                    out[f"vec/{name}/H"] = ("int16", (n, hid))
        if n and op != "adapter":
            out[f"vec/{name}"] = ("int16", (n,) + t.shape)
    if n:
        out["vec/labels"] = ("int64", (n,))
        out["vec/qat_logits"] = ("float32", (n, manifest["classes"]))
    return out


def _check_values(manifest: dict, arrays: dict, where: str):
    """Range checks on parameter arrays and the input codes (spec sections 3, 6, 11-14)."""
    nodes = {nd["name"]: nd for nd in manifest["nodes"]}

    def rng(key, lo, hi, what):
        a = arrays[key]
        if a.size and (int(a.min()) < lo or int(a.max()) > hi):
            bad = int(np.flatnonzero((a < lo) | (a > hi))[0])
            raise UserError(f"{where}: {key}[{bad}] = {int(a.flat[bad])} is outside {what} [{lo}, {hi}]")

    for name, nd in nodes.items():
        op = nd["op"]
        if op in ("conv2d", "linear"):
            dp = _datapath(nd)
            bad = dp.check_weight_codes_valid(arrays[f"{name}/w"].astype(np.int64))
            if bad:
                raise UserError(f"{where}: {name}/w has {bad} weight code(s) out of range for {dp.w_bits}-bit {dp.fmt}")
            cap = 65535
            if nd.get("beta_from"):
                ad = nodes[nd["beta_from"]]
                cap = min(m_cap(ad["beta_bits"], ad["beta_frac"]), 65535)   # M is 16-bit (section 6)
            rng(f"{name}/M", 0, cap, "the multiplier range")
            rng(f"{name}/B", -(2**47), 2**47 - 1, "the 48-bit bias range")
            rng(f"{name}/sh", 0, 62, "the shift range")
        elif op == "add":
            rng(f"{name}/M", 0, 65535, "the multiplier range")
            rng(f"{name}/B", -(2**47), 2**47 - 1, "the 48-bit bias range")
            rng(f"{name}/sh", 1, 62, "the shift range")
        elif op == "avgpool":
            rng(f"{name}/M", 0, 65535, "the multiplier range")
            rng(f"{name}/sh", 0, 62, "the shift range")
        elif op == "adapter":
            rng(f"{name}/pool_M", 0, 65535, "the multiplier range")
            rng(f"{name}/pool_sh", 0, 62, "the shift range")
            for s in ("1", "2") if nd["hidden"] else ("2",):
                rng(f"{name}/w{s}", -128, 127, "8-bit uniform codes")
                rng(f"{name}/M{s}", 0, 65535, "the multiplier range")
                rng(f"{name}/B{s}", -(2**47), 2**47 - 1, "the 48-bit bias range")
                rng(f"{name}/sh{s}", 0, 62, "the shift range")
    if "vec/input" in arrays:
        rng("vec/input", -128, 127, "8-bit signed codes")
        rng("vec/labels", 0, manifest["classes"] - 1, "the class range")
        if not np.isfinite(arrays["vec/qat_logits"]).all():
            raise UserError(f"{where}: vec/qat_logits holds NaN or infinity")


def validate(manifest: dict, arrays: dict | None = None, where: str = "network") -> dict[str, Tensor]:
    """Check a network manifest (and, if given, its arrays); return the node tensors."""
    if not isinstance(manifest, dict):
        raise UserError(f"{where}: manifest.json is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise UserError(f"{where}: not an asq-hw network (format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{where}: unknown network format_version {manifest.get('format_version')!r} "
                        f"(this reader knows {FORMAT_VERSION})")
    spec = str(manifest.get("spec_version", ""))
    m = re.match(r"(\d+)\.(\d+)\Z", spec)
    _need(m is not None, where, f"bad spec_version {spec!r}")
    if (int(m.group(1)), int(m.group(2))) > tuple(int(v) for v in SPEC_VERSION.split(".")):
        raise UserError(f"{where}: written for spec {spec}, newer than this tool's spec {SPEC_VERSION}; upgrade asq-hw")
    name = manifest.get("name")
    _need(isinstance(name, str) and 0 < len(name) <= 200 and name.isprintable(), where,
          f"name must be 1..200 printable characters, not {name!r}"[:300])
    _need(_int(manifest.get("samples"), 0, 1 << 20), where, "samples must be a non-negative integer")
    try:
        tensors = _tensors(manifest)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    held = manifest["samples"] * peak_values(manifest, tensors)
    _need(held <= MAX_SAMPLE_VALUES, where, f"{manifest['samples']} golden samples hold {held} values in one "
          f"tensor, more than the {MAX_SAMPLE_VALUES} this implementation runs")
    if arrays is not None:
        exp = expected_arrays(manifest, tensors)
        for key, (dtype, shape) in exp.items():
            if key not in arrays:
                raise UserError(f"{where}: array {key!r} is missing")
            a = arrays[key]
            if a.dtype != np.dtype(dtype) or tuple(a.shape) != tuple(shape):
                raise UserError(f"{where}: array {key!r} is {a.dtype} {list(a.shape)}, expected {dtype} {list(shape)}")
        extra = sorted(set(arrays) - set(exp))
        if extra:
            raise UserError(f"{where}: unexpected array {extra[0]!r}")
        _check_values(manifest, arrays, where)
    return tensors


# --- writing --------------------------------------------------------------------------------

def write_network(path, manifest: dict, params: dict, vectors: dict | None = None, *,
                  force: bool = True) -> str:
    """Validate and write a network export deterministically and atomically; return its SHA-256.

    ``params`` maps ``NODE/ARRAY`` and ``vectors`` maps ``vec/...`` keys to arrays (cast to
    the documented dtypes). An existing ``path`` is replaced only when ``force`` (pass the
    user's ``--force``); otherwise it is a UserError.
    """
    vectors = vectors or {}
    manifest = dict(manifest, format=FORMAT, format_version=FORMAT_VERSION, spec_version=SPEC_VERSION)
    tensors = validate(manifest, None, str(path))
    exp = expected_arrays(manifest, tensors)
    check_total(declared_bytes(exp), f"{path}: the network")
    given = {**params, **vectors}
    missing = [k for k in exp if k not in given]
    if missing:
        raise UserError(f"{path}: array {missing[0]!r} is missing")
    arrays = {k: np.asarray(given[k]).astype(exp[k][0], copy=False) for k in exp}
    manifest["arrays"] = {k: {"dtype": d, "shape": list(s)} for k, (d, s) in exp.items()}
    validate(manifest, arrays, str(path))
    data = archive_bytes(manifest, arrays)
    atomic.write_bytes(path, data, force)
    return hashlib.sha256(data).hexdigest()


# --- reading --------------------------------------------------------------------------------
def is_network_file(path) -> bool:
    """True when ``path`` is an archive of a network: its manifest says ``format: asqhw-network``,
    or (when the manifest cannot be read) its entries are named ``NODE/ARRAY.npy``, which no
    layer case has; :func:`read_network` then names what is wrong with it."""
    try:
        with SafeZip(path, max_entries=_MAX_ENTRIES) as zf:
            if any("/" in n for n in zf.names):
                return True
            m = zf.read_json("manifest.json", _MAX_MANIFEST)
        return isinstance(m, dict) and m.get("format") == FORMAT
    except (UserError, OSError):
        return False


def read_network(path) -> Network:
    """Read and fully validate one network export; raise UserError on any defect.

    Reading is bounded (asqhw/core/safezip.py): the manifest and its ``arrays`` table are
    checked against the nodes before any array entry is inflated.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with SafeZip(path, max_entries=_MAX_ENTRIES) as zf:
        if "manifest.json" not in zf.names:
            raise UserError(f"{where}: archive has no manifest.json")
        manifest = zf.read_json("manifest.json", _MAX_MANIFEST)
        tensors = validate(manifest, None, where)
        exp = expected_arrays(manifest, tensors)
        table = manifest.get("arrays")
        if not isinstance(table, dict):
            raise UserError(f"{where}: manifest lacks the 'arrays' table")
        for key, (dtype, shape) in exp.items():
            if table.get(key) != {"dtype": dtype, "shape": list(shape)}:
                raise UserError(f"{where}: arrays table entry {key!r} is {table.get(key)!r}, "
                                f"expected {dtype} {list(shape)}")
            if math.prod(shape) > _MAX_ELEMENTS:
                raise UserError(f"{where}: array {key!r} declares {math.prod(shape)} elements")
        if set(table) != set(exp):
            raise UserError(f"{where}: arrays table lists {sorted(set(table) - set(exp))[0]!r}, which is not expected")
        check_total(declared_bytes(exp), f"{where}: the manifest")
        extra = sorted(set(zf.names) - {"manifest.json"} - {f"{k}.npy" for k in exp})
        if extra:
            raise UserError(f"{where}: unexpected archive entry {extra[0]!r}")
        arrays = {}
        for key, (dtype, shape) in exp.items():
            if f"{key}.npy" not in zf.names:
                raise UserError(f"{where}: array {key!r} is missing")
            arrays[key] = zf.read_npy(f"{key}.npy", dtype, shape, label=f"array {key!r}")
    validate(manifest, arrays, where)
    params = {k: v for k, v in arrays.items() if not k.startswith("vec/")}
    vectors = {k: v for k, v in arrays.items() if k.startswith("vec/")}
    return Network(manifest, params, vectors, tensors, path)
