"""Integer reference of a whole network (docs/datapath.md sections 10-16) in PyTorch int64.

Written from the spec alone; the layers reuse :mod:`golden.intref`. Every value is an exact
int64 integer and no float enters. The bound that keeps each step inside int64 is stated
where the step is computed; the parameter ranges it relies on are the ones
:func:`asqhw.core.network.validate` checks.
"""

from __future__ import annotations

import numpy as np
import torch

from asqhw.core.spec import SPEC_VERSION
from asqhw.core.errors import UserError
from asqhw.core.network import FORMAT, FORMAT_VERSION, Network, expected_arrays, validate
from asqhw.core.params import Datapath

from . import intref

__all__ = [
    "run_network",
    "predict",
    "requant",
    "bitlen",
    "reciprocal",
    "quant",
    "beta_multipliers",
    "adapter",
    "add",
    "maxpool",
    "avgpool",
    "layer",
]

I64 = torch.int64
ADAPTER_DP = Datapath(fmt="uniform", a_bits=8, w_bits=8)
"""The adapter's FC layers: unsigned 8-bit codes, 8-bit uniform weights (section 13)."""


def _t(a) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(I64)
    return torch.as_tensor(np.asarray(a, dtype=np.int64))


def _below(x: torch.Tensor, bits: int, what: str):
    """Guard: every ``|x| < 2^bits`` (a precondition of an int64 bound below)."""
    if x.numel() and int(x.abs().max()) >= 1 << bits:
        raise ValueError(f"{what}: |value| {int(x.abs().max())} reaches 2^{bits}")


def requant(t, M, B, sh, lo: int, hi: int) -> torch.Tensor:
    """``requant(t, M, B, sh, lo, hi)`` of section 10, broadcasting, int64.

    ``t`` is a tensor or a list of tensors ``t_k`` (then ``M`` is the list of their
    multipliers ``M_k`` and the sum ``sum_k M_k * t_k + B`` is rounded once, section 12).
    ``r = (sum + 2^(sh-1)) >> sh`` for ``sh >= 1`` (ties toward plus infinity), ``r = sum``
    for ``sh = 0``; returns ``min(max(r, lo), hi)``.

    Parameters
    ----------
    t : tensor or list of at most two tensors
        Integer operands, ``|t_k| < 2^40``.
    M : int, tensor or list of them
        Multipliers in ``0 .. 65535``, broadcast against ``t_k``.
    B, sh : int or tensor
        Bias (``-2^47 <= B < 2^47``) and shift (``0 .. 62``), broadcast against the sum.
    lo, hi : int
        Clamp bounds.
    """
    ts = t if isinstance(t, (list, tuple)) else [t]
    ms = M if isinstance(M, (list, tuple)) else [M]
    if len(ts) > 2:
        raise ValueError("requant sums at most two terms (split accumulators, add)")
    total = _t(B)
    _below(total, 48, "requant bias")
    for tk, mk in zip(ts, ms, strict=True):
        tk, mk = _t(tk), _t(mk)
        _below(tk, 40, "requant operand")
        _below(mk, 16, "requant multiplier")
        total = total + mk * tk  # |M_k t_k| < 2^56: two terms plus B stay below 2^58
    sh = _t(sh)
    if sh.numel() and (int(sh.min()) < 0 or int(sh.max()) > 62):
        raise ValueError(f"requant shift must be in 0..62, got {int(sh.min())}..{int(sh.max())}")
    half = torch.where(sh >= 1, torch.bitwise_left_shift(torch.ones_like(sh), (sh - 1).clamp(min=0)),
                       torch.zeros_like(sh))
    return torch.clamp(torch.bitwise_right_shift(total + half, sh), lo, hi)  # < 2^58 + 2^61


def bitlen(x) -> torch.Tensor:
    """``bitlen`` of non-negative int64 values below ``2^62`` (``bitlen(0) = 0``)."""
    x = _t(x)
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= 1 << 62):
        raise ValueError("bitlen needs values in 0 .. 2^62 - 1")
    n = torch.zeros_like(x)
    for i in range(62):
        n += (torch.bitwise_right_shift(x, i) != 0).to(I64)
    return n


def reciprocal(beta_q) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, L)`` of section 14: ``L = bitlen(beta_q)``, ``R = (2^(L+15) + beta_q) // (2 beta_q)``.

    ``R = floor(2^(L+14) / beta_q + 1/2)``, so ``2^14 < R <= 2^15``. ``beta_q`` in
    ``1 .. 2^15 - 1``; ``2^(L+15) <= 2^30``.
    """
    b = _t(beta_q)
    if b.numel() and (int(b.min()) < 1 or int(b.max()) > 2**15 - 1):
        raise ValueError(f"beta_q must be in 1..32767, got {int(b.min())}..{int(b.max())}")
    L = bitlen(b)
    R = torch.div(torch.bitwise_left_shift(torch.ones_like(L), L + 15) + b, 2 * b, rounding_mode="floor")
    return R, L


def quant(z, bits: int, g: int, beta_q=None, beta_frac: int | None = None) -> torch.Tensor:
    """A ``quant`` node (section 14): unsigned wide codes ``z`` (N, ...) to ``bits``-bit codes.

    Without ``beta_q`` (LSQ): ``requant(z, 1, 0, g, 0, Q_p)``. With ``beta_q`` (N,) and its
    ``beta_frac = f_b`` (ASQ), per sample ``requant(z, R, 0, L + 14 + g - f_b, 0, Q_p)``.
    ``z < 2^15`` and ``R <= 2^15``, so ``z R < 2^30``.
    """
    z = _t(z)
    qp = (1 << bits) - 1
    if beta_q is None:
        return requant(z, 1, 0, g, 0, qp)
    R, L = reciprocal(beta_q)
    view = (-1,) + (1,) * (z.dim() - 1)
    sh = L + 14 + g - beta_frac
    if sh.numel() and int(sh.min()) < 1:
        raise ValueError("a quant with an adapter needs 15 + g - beta_frac >= 1")
    return requant(z, R.reshape(view), 0, sh.reshape(view), 0, qp)


def beta_multipliers(M, beta_q, beta_frac: int) -> torch.Tensor:
    """Per-sample multipliers of section 11: ``M_n = (M * beta_q[n] + h) >> f_b``.

    ``M`` (C, n_acc), ``beta_q`` (N,); returns (N, C, n_acc). ``M < 2^16`` and
    ``beta_q < 2^15``, so the product stays below ``2^31``. Raises ValueError if an ``M_n``
    leaves 16 bits (the exporter's cap ``M_cap`` prevents it).
    """
    M, b = _t(M), _t(beta_q)
    h = 1 << (beta_frac - 1) if beta_frac >= 1 else 0
    mn = torch.bitwise_right_shift(M[None] * b.reshape(-1, 1, 1) + h, beta_frac)
    if mn.numel() and int(mn.max()) > 65535:
        raise ValueError(f"per-sample multiplier {int(mn.max())} exceeds 16 bits (M above M_cap)")
    return mn


def adapter(z, node: dict, params: dict) -> dict[str, torch.Tensor]:
    """The integer ASQ adapter of section 13 over unsigned wide codes ``z`` (N, C, H, W).

    ``params`` maps the adapter's array names (``pool_M``, ``w2``, ...) to arrays. Returns
    int64 tensors ``S`` (N, C), ``P`` (N, C), ``H`` (N, hidden; only when ``hidden > 0``)
    and ``beta`` (N,).
    """
    z = _t(z)
    _below(z, 15, "adapter input (wide codes)")
    # S: at most 2^15 * H*W < 2^40 for inputs of at most 2^24 elements per channel.
    S = z.sum(dim=tuple(range(2, z.dim())))
    P = requant(S, _t(params["pool_M"])[0], 0, _t(params["pool_sh"])[0], 0, 255)
    out = {"S": S, "P": P}
    h = P
    if node["hidden"]:
        acc = intref.accumulate_linear(ADAPTER_DP, P, params["w1"], ADAPTER_DP.natural_acc_bits(P.shape[1]))
        h = intref.requantize(acc, params["M1"], params["B1"], params["sh1"], 0, 255)
        out["H"] = h
    acc = intref.accumulate_linear(ADAPTER_DP, h, params["w2"], ADAPTER_DP.natural_acc_bits(h.shape[1]))
    beta = intref.requantize(acc, params["M2"], params["B2"], params["sh2"], 1, (1 << node["beta_bits"]) - 1)
    out["beta"] = beta[:, 0]
    return out


def add(a, b, M, B, sh, lo: int, hi: int) -> torch.Tensor:
    """Residual addition (section 12): ``requant([a, b], [M_0, M_1], B, sh, lo, hi)``."""
    M, B, sh = _t(M), _t(B), _t(sh)
    return requant([a, b], [M[0], M[1]], B[0], sh[0], lo, hi)


def maxpool(x, kernel, stride: int, padding: int) -> torch.Tensor:
    """Max pooling (section 12) of (N, C, H, W); padding positions are not in any window.

    The padding holds a value below every 16-bit code; since ``padding < kernel`` every
    window holds at least one input element, so the padding value never wins.
    """
    x = _t(x)
    kh, kw = kernel
    if padding:
        x = torch.nn.functional.pad(x, (padding,) * 4, value=-(1 << 40))
    return x.unfold(2, kh, stride).unfold(3, kw, stride).amax(dim=(-2, -1))


def avgpool(x, kernel, stride: int, M, sh, lo: int, hi: int) -> torch.Tensor:
    """Average pooling (section 12): the exact window sum, then ``requant(S, M, 0, sh, lo, hi)``.

    The sum of at most ``2^24`` 16-bit values stays below ``2^40``.
    """
    x = _t(x)
    kh, kw = kernel
    s = x.unfold(2, kh, stride).unfold(3, kw, stride).sum(dim=(-2, -1))
    return requant(s, _t(M)[0], 0, _t(sh)[0], lo, hi)


def layer(node: dict, dp: Datapath, x, params: dict, beta_q=None,
          beta_frac: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``conv2d`` or ``linear`` node (section 11): ``(acc, y)`` as int64 tensors.

    ``acc`` is (n_acc, N, C_out[, H_o, W_o]), wrapped to the node's accumulator bits; ``y``
    the requantised output. A linear node reads a 4-D input flattened in C, H, W order. With
    ``beta_q`` (N,) the multipliers are the per-sample ``M_n`` of :func:`beta_multipliers`.
    """
    x = _t(x)
    bits = node["accumulator"]["bits"]
    if node["op"] == "linear":
        acc = intref.accumulate_linear(dp, x.reshape(x.shape[0], -1), params["w"], bits)
    else:
        acc = intref.accumulate_conv2d(dp, x, params["w"], stride=node["stride"], padding=node["padding"],
                                       groups=node["groups"], acc_bits=bits)
    lo, hi = node["output"]["lo"], node["output"]["hi"]
    if beta_q is None:
        return acc, intref.requantize(acc, params["M"], params["B"], params["sh"], lo, hi)
    mn = beta_multipliers(params["M"], beta_q, beta_frac)  # N, C, n_acc
    view = (acc.shape[1], acc.shape[2]) + (1,) * (acc.dim() - 3)
    y = requant([acc[k] for k in range(acc.shape[0])], [mn[:, :, k].reshape(view) for k in range(acc.shape[0])],
                _t(params["B"]).reshape(view[1:]), _t(params["sh"]).reshape(view[1:]), lo, hi)
    return acc, y


# --- whole networks -------------------------------------------------------------------------
def _unpack(net) -> tuple[dict, dict, dict]:
    """(manifest, params, tensors) of a Network or a validated ``(manifest, params)`` pair."""
    if isinstance(net, Network):
        return net.manifest, net.params, net.tensors
    manifest, params = net
    m = dict(manifest, format=FORMAT, format_version=FORMAT_VERSION,
             spec_version=manifest.get("spec_version", SPEC_VERSION), samples=0)
    tensors = validate(m, None, m.get("name", "network"))
    exp = expected_arrays(m, tensors)
    arrays = {}
    for key, (dtype, _) in exp.items():
        if key not in params:
            raise UserError(f"{m['name']}: array {key!r} is missing")
        a = np.asarray(params[key])
        arrays[key] = a.astype(dtype)
        if not np.array_equal(arrays[key], a):
            raise UserError(f"{m['name']}: array {key!r} does not fit {dtype}")
    validate(m, arrays, m["name"])
    return manifest, arrays, tensors


def _check_input(manifest: dict, x) -> torch.Tensor:
    x = np.asarray(x)
    shape = tuple(manifest["input"]["shape"])
    if x.ndim != 4 or tuple(x.shape[1:]) != shape or not np.issubdtype(x.dtype, np.integer):
        raise UserError(f"input codes must be integers of shape (N, {', '.join(map(str, shape))}), "
                        f"not {x.dtype} {list(x.shape)}")
    if x.size and (int(x.min()) < -128 or int(x.max()) > 127):
        raise UserError(f"input codes must be signed 8-bit, got {int(x.min())}..{int(x.max())}")
    return _t(x)


def _node_params(params: dict, name: str) -> dict:
    pre = name + "/"
    return {k[len(pre):]: v for k, v in params.items() if k.startswith(pre)}


def _run(net, x_codes) -> tuple[dict, dict[str, torch.Tensor]]:
    """Every tensor of the network as int64: ``vec/...`` key -> tensor."""
    manifest, params, tensors = _unpack(net)
    nodes = {nd["name"]: nd for nd in manifest["nodes"]}
    x = _check_input(manifest, x_codes)
    vals: dict[str, torch.Tensor] = {"input": x}
    betas: dict[str, torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {"vec/input": x}
    for nd in manifest["nodes"]:
        name, op = nd["name"], nd["op"]
        p = _node_params(params, name)
        src = vals[nd["inputs"][0]]
        if op in ("conv2d", "linear"):
            ad = nd.get("beta_from")
            acc, y = layer(nd, _dp(nd), src, p,
                           betas.get(ad) if ad else None, nodes[ad]["beta_frac"] if ad else None)
            out[f"vec/{name}/acc"] = acc
        elif op == "add":
            y = add(src, vals[nd["inputs"][1]], p["M"], p["B"], p["sh"], nd["output"]["lo"], nd["output"]["hi"])
        elif op == "maxpool":
            y = maxpool(src, nd["kernel"], nd["stride"], nd["padding"])
        elif op == "avgpool":
            y = avgpool(src, nd["kernel"], nd["stride"], p["M"], p["sh"], nd["output"]["lo"], nd["output"]["hi"])
        elif op == "adapter":
            res = adapter(src, nd, p)
            betas[name] = res["beta"]
            for key, v in res.items():
                out[f"vec/{name}/{key}"] = v
            continue
        elif op == "quant":
            ad = nd["adapter"]
            y = quant(src, nd["bits"], nd["g"], betas[ad] if ad else None, nodes[ad]["beta_frac"] if ad else None)
        else:  # validate() admits no other op
            raise AssertionError(op)
        t = tensors[name]
        if y.numel() and (int(y.min()) < t.lo or int(y.max()) > t.hi):
            raise AssertionError(f"node {name}: output outside [{t.lo}, {t.hi}]")
        vals[name] = y
        out[f"vec/{name}"] = y
    return manifest, out


def _dp(node: dict) -> Datapath:
    a, w = node["activation"], node["weights"]
    return Datapath(fmt=w["format"], a_bits=a["bits"], w_bits=w["bits"], arch=w["arch"],
                    a_signed=bool(a["signed"]), e_max=w.get("e_max"), frac_bits=w.get("frac_bits"))


_DTYPES = {"acc": np.int64, "S": np.int64, "beta": np.int64, "P": np.int16, "H": np.int16}


def run_network(net, x_codes) -> dict[str, np.ndarray]:
    """Every golden vector of a network for the input codes (docs/network.md).

    Parameters
    ----------
    net : Network or (manifest, params)
        A network read by :func:`asqhw.core.network.read_network`, or a manifest and its
        ``NODE/ARRAY`` parameter arrays (validated here, as :func:`write_network` would).
    x_codes : integer array (N, C, H, W)
        Signed 8-bit input codes.

    Returns
    -------
    dict
        ``vec/input`` and ``vec/NODE`` (int16) for every node but adapters;
        ``vec/NODE/acc`` (int64, ``n_acc x N x ...``) for conv2d/linear nodes;
        ``vec/NODE/S`` (int64), ``vec/NODE/P``, ``vec/NODE/H`` (int16) and
        ``vec/NODE/beta`` (int64) for adapters. ``vec/labels`` and ``vec/qat_logits`` are
        the exporter's.
    """
    _, out = _run(net, x_codes)
    res = {}
    for key, v in out.items():
        suffix = key.rsplit("/", 1)[1] if key.count("/") == 2 else ""
        res[key] = v.numpy().astype(_DTYPES.get(suffix, np.int16))
    return res


def predict(net, x_codes, *, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Integer logits and predicted classes of a network.

    Returns ``(logits, top1)``: int64 (N, classes) and int64 (N,), the index of the largest
    logit, the lowest index on a tie (section 11). Runs ``batch`` samples at a time.
    """
    manifest, params, tensors = _unpack(net)
    unpacked = Network(manifest, params, {}, tensors)
    x = np.asarray(x_codes)
    _check_input(manifest, x)
    parts = []
    for i in range(0, x.shape[0], batch):
        _, out = _run(unpacked, x[i:i + batch])
        parts.append(out[f"vec/{manifest['output']}"].numpy())
    classes = manifest["classes"]
    logits = np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, classes), np.int64)
    # lowest index of the maximum: np.argmax returns the first occurrence
    return logits, np.argmax(logits, axis=1).astype(np.int64) if len(logits) else np.zeros(0, np.int64)
