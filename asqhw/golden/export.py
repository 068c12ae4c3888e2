"""Build one golden case: float data -> QAT quantisers -> codes -> integer reference -> file.

A :class:`CaseSpec` describes the layer, the datapath and a few optional overrides used by
the edge cases; :func:`export_case` turns it into a case file (docs/vectors.md) with the
requantisation constants of docs/datapath.md section 7 and the expectations of
:func:`golden.intref.reference`.

Everything float runs in float64 on the CPU with a seeded ``torch.Generator``; the learned
scales are rounded to a few significant digits so that the integer results do not depend on
the last bits of a float reduction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as tfn

from asqhw.core.errors import UserError
from asqhw.core.params import MAX_ACC_BITS, Datapath, output_range
from asqhw.core.validate import is_int
from asqhw.core.vectors import write_case

from . import intref
from .quant import AsqActivation, LsqWeight, PowerWeight, power_decode

__all__ = ["CaseSpec", "build_case", "export_case", "requant_constants", "acc_units",
           "linear", "conv2d"]

F64 = torch.float64
X_FILLS = (None, "max")
W_FILLS = (None, "max_pos", "max_neg", "large_pos", "zeros")
SCALES = (None, "dyadic")


def linear(in_features: int, out_features: int) -> dict:
    """Layer dict of a linear layer (manifest ``layer`` entry)."""
    return {"kind": "linear", "in_features": in_features, "out_features": out_features}


def conv2d(in_channels: int, out_channels: int, kernel: int, size: int, *, stride: int = 1,
           padding: int = 0, groups: int = 1) -> dict:
    """Layer dict of a square conv2d layer (manifest ``layer`` entry)."""
    return {"kind": "conv2d", "in_channels": in_channels, "out_channels": out_channels,
            "kernel": [kernel, kernel], "in_size": [size, size], "stride": stride,
            "padding": padding, "groups": groups}


@dataclass(frozen=True)
class CaseSpec:
    """Everything that determines one case.

    Parameters
    ----------
    name, description : str
        Case name (file stem) and what it exercises.
    layer : dict
        From :func:`linear` or :func:`conv2d`.
    fmt, a_bits, w_bits, arch, a_signed, e_max, frac_bits
        The :class:`asqhw.core.params.Datapath`.
    batch : int
        Batch size ``N``.
    acc_bits : int or None
        Accumulator width; None for the natural width.
    out_bits, out_signed
        Output code width and signedness (unsigned = fused ReLU).
    tags : tuple of str
        Free labels (``edge:...`` for edge cases).
    seed : int
        Seed of the case's ``torch.Generator``.
    beta : float
        The fixed ASQ factor of the case.
    x_fill : {None, "max"}
        ``"max"`` sets every activation to its largest magnitude (``A_max``, or ``-2^(b_a-1)``
        for signed codes).
    w_fill : {None, "max_pos", "max_neg", "large_pos", "zeros"}
        ``"max_pos"``/``"max_neg"`` set every weight to the largest magnitude of one sign
        (uniform: ``2^(b_w-1) - 1`` / ``-2^(b_w-1)``; pot/post: ``W = 0``); ``"large_pos"`` draws
        positive weights among the two largest magnitudes; ``"zeros"`` turns about half the
        weights into ``+0`` or ``-0`` code words (uniform: 0).
    scales : {None, "dyadic"}
        ``"dyadic"``: ``beta = 1``, no bias, ``s`` and every ``alpha_c`` rounded to powers of
        two and ``s_out`` a power of two with every ``m_0 <= 1/2``; then ``M[c][0] = 2^15``,
        ``sh[c] >= 16`` and accumulators whose low bits are exactly one half give rounding
        ties (``u_0`` only: not for ``split``, whose ``u_1`` is irrational).
    s_out_scale : float
        Factor on the derived output step (below 1 saturates more outputs).
    """

    name: str
    description: str
    layer: dict
    fmt: str
    a_bits: int
    w_bits: int
    arch: str | None = None
    a_signed: bool = False
    e_max: int | None = None
    frac_bits: int | None = None
    batch: int = 1
    acc_bits: int | None = None
    out_bits: int = 8
    out_signed: bool = False
    tags: tuple = field(default_factory=tuple)
    seed: int = 0
    beta: float = 1.25
    x_fill: str | None = None
    w_fill: str | None = None
    scales: str | None = None
    s_out_scale: float = 1.0

    @property
    def datapath(self) -> Datapath:
        """The validated datapath of the case."""
        return Datapath(fmt=self.fmt, a_bits=self.a_bits, w_bits=self.w_bits, arch=self.arch,
                        a_signed=self.a_signed, e_max=self.e_max, frac_bits=self.frac_bits)


def _sig(v: float, digits: int) -> float:
    """Round a positive float to ``digits`` significant digits (a stable, readable scale)."""
    return float(f"{v:.{digits}g}")


def _pow2_near(v: float) -> float:
    """The power of two nearest to a positive float in the log domain."""
    return math.ldexp(1.0, round(math.log2(v)))


def acc_units(dp: Datapath) -> list[float]:
    """Real value ``u_k`` of one unit of each accumulator (docs/datapath.md section 4)."""
    if dp.arch == "mul":
        return [1.0]
    u0 = math.ldexp(1.0, -dp.frac_bits)
    return [u0, u0 / math.sqrt(2.0)] if dp.arch == "split" else [u0]


def requant_constants(m_k: list[float], bias_over_s_out: float) -> tuple[list[int], int, int]:
    """``(M[k], B, sh)`` of one channel by docs/datapath.md section 7 (float64, ties-even).

    Raises UserError when the scale is too large for a 16-bit multiplier or ``B`` leaves the
    48-bit range.
    """
    m = max(m_k)
    if not (math.isfinite(m) and m >= 0 and min(m_k) >= 0):
        raise UserError(f"requantisation scale must be finite and non-negative, not {m!r}")
    if round(m) > 65535:
        raise UserError(f"requantisation scale {m!r} needs a multiplier above 65535 even with sh = 0")
    sh = next(s for s in range(62, -1, -1) if round(m * 2.0**s) <= 65535)
    M = [round(v * 2.0**sh) for v in m_k]
    B = round(bias_over_s_out * 2.0**sh)
    if not -(2**47) <= B <= 2**47 - 1:
        raise UserError(f"requantisation bias B = {B} leaves the 48-bit range")
    return M, B, sh


def _layer_shapes(spec: CaseSpec) -> tuple[tuple, tuple]:
    L, n = spec.layer, spec.batch
    if L["kind"] == "linear":
        return (n, L["in_features"]), (L["out_features"], L["in_features"])
    kh, kw = L["kernel"]
    h, w = L["in_size"]
    return ((n, L["in_channels"], h, w),
            (L["out_channels"], L["in_channels"] // L["groups"], kh, kw))


def _float_layer(spec: CaseSpec, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    L = spec.layer
    if L["kind"] == "linear":
        return x @ w.T
    return tfn.conv2d(x, w, stride=L["stride"], padding=L["padding"], groups=L["groups"])


def _fill_weights(spec: CaseSpec, dp: Datapath, codes: torch.Tensor, g: torch.Generator):
    if spec.w_fill is None:
        return codes
    if spec.w_fill in ("max_pos", "max_neg"):
        if dp.fmt == "uniform":
            return torch.full_like(codes, dp.w_range[1] if spec.w_fill == "max_pos" else dp.w_range[0])
        sgn = 1 if spec.w_fill == "max_neg" else 0
        return torch.full_like(codes, (sgn << dp.m_bits) | 1)
    if spec.w_fill == "large_pos":
        pick = torch.randint(0, 2, codes.shape, generator=g, dtype=torch.int64)
        if dp.fmt == "uniform":
            return dp.w_range[1] - pick
        return 1 + pick  # m = 1 or 2 (W = 0 or 1), sign bit clear
    # zeros: about half the weights become +0 or -0
    mask = torch.rand(codes.shape, generator=g, dtype=F64) < 0.5
    if dp.fmt == "uniform":
        return torch.where(mask, torch.zeros_like(codes), codes)
    neg = torch.rand(codes.shape, generator=g, dtype=F64) < 0.5
    zero = torch.where(neg, torch.full_like(codes, 1 << dp.m_bits), torch.zeros_like(codes))
    return torch.where(mask, zero, codes)


def build_case(spec: CaseSpec) -> tuple[dict, dict]:
    """Compute the manifest and arrays of one case (no file is written)."""
    dp = spec.datapath
    for key, value, legal in (("x_fill", spec.x_fill, X_FILLS), ("w_fill", spec.w_fill, W_FILLS),
                              ("scales", spec.scales, SCALES)):
        if value not in legal:
            raise UserError(f"{spec.name}: {key} must be one of {legal}, not {value!r}")
    lo, hi = output_range(spec.out_bits, spec.out_signed)
    g = torch.Generator().manual_seed(spec.seed)
    x_shape, w_shape = _layer_shapes(spec)
    c_out = w_shape[0]
    fan_in = int(np.prod(w_shape[1:]))
    natural = dp.natural_acc_bits(fan_in)
    acc_bits = natural if spec.acc_bits is None else spec.acc_bits
    if not is_int(acc_bits) or not 2 <= acc_bits <= min(natural, MAX_ACC_BITS):
        raise UserError(f"{spec.name}: accumulator bits must be in 2..{min(natural, MAX_ACC_BITS)} "
                        f"(natural width {natural}), not {acc_bits!r}")
    dyadic = spec.scales == "dyadic"

    # float activations and ASQ codes
    xf = torch.randn(x_shape, generator=g, dtype=F64)
    if not dp.a_signed:
        xf = torch.relu(xf + 0.5)
    act = AsqActivation(dp.a_bits, dp.a_signed)
    act.init_from(xf)
    beta = 1.0 if dyadic else float(spec.beta)
    with torch.no_grad():
        s0 = float(act.s.detach())
        act.s.fill_(_pow2_near(s0) if dyadic else _sig(s0, 6))
    x_codes = act.codes(xf, beta)
    if spec.x_fill == "max":
        x_codes = torch.full_like(x_codes, dp.a_range[0] if dp.a_signed else dp.a_range[1])

    # float weights and their codes
    wf = torch.randn(w_shape, generator=g, dtype=F64) / math.sqrt(fan_in)
    wf = wf * torch.exp(0.3 * torch.randn(c_out, generator=g, dtype=F64)).reshape((-1,) + (1,) * (len(w_shape) - 1))
    if dp.fmt == "uniform":
        wq = LsqWeight(dp.w_bits, c_out)
    else:
        wq = PowerWeight(dp.fmt, dp.w_bits, c_out, dp.e_max)
    wq.init_from(wf)
    with torch.no_grad():
        rnd = _pow2_near if dyadic else (lambda v: _sig(v, 6))
        wq.alpha.copy_(torch.tensor([rnd(float(a)) for a in wq.alpha.detach()], dtype=F64))
    w_codes = _fill_weights(spec, dp, wq.codes(wf), g)

    # the float fake-quant layer from the codes
    s_in = float(act.s.detach()) * beta
    x_deq = x_codes.to(F64) * s_in
    if dp.fmt == "uniform":
        levels = w_codes.to(F64)
    else:
        levels = power_decode(w_codes, dp.fmt, dp.e_max, dp.m_bits)
    alpha = wq.alpha.detach().clone()
    w_deq = levels * alpha.reshape((-1,) + (1,) * (len(w_shape) - 1))
    y_nobias = _float_layer(spec, x_deq, w_deq)
    if dyadic:
        bias = torch.zeros(c_out, dtype=F64)
    else:
        spread = float(y_nobias.std()) if y_nobias.numel() > 1 else 1.0
        spread = spread if spread > 0 else 1.0
        bias = torch.tensor([_sig(0.25 * spread * float(v), 6)
                             for v in torch.randn(c_out, generator=g, dtype=F64)], dtype=F64)
    view = (1, -1) + (1,) * (y_nobias.dim() - 2)
    y_real = y_nobias + bias.reshape(view)

    # output step
    units = acc_units(dp)
    mag = (torch.relu(y_real) if not spec.out_signed else y_real.abs()).flatten()
    ref = float(torch.quantile(mag, 0.99))
    ref = ref if ref > 0 else max(float(y_real.abs().max()), 1.0)
    s_out = ref / hi * spec.s_out_scale
    if dyadic:  # a power of two at least twice every s_in * alpha_c * u_0: all m_0 <= 1/2
        s_out = max(_pow2_near(s_out), 2.0 * s_in * float(alpha.max()) * units[0])
    else:
        s_out = _sig(s_out, 4)

    # requantisation constants (section 7)
    M = np.zeros((c_out, dp.n_acc), dtype=np.int64)
    B = np.zeros(c_out, dtype=np.int64)
    sh = np.zeros(c_out, dtype=np.int64)
    for c in range(c_out):
        m_k = [s_in * float(alpha[c]) * u / s_out for u in units]
        try:
            mc, bc, shc = requant_constants(m_k, float(bias[c]) / s_out)
        except UserError as e:
            raise UserError(f"{spec.name}: channel {c}: {e}") from None
        M[c], B[c], sh[c] = mc, bc, shc

    manifest = {
        "name": spec.name,
        "description": spec.description,
        "tags": list(spec.tags),
        "layer": dict(spec.layer),
        "batch": spec.batch,
        "activation": {"bits": dp.a_bits, "signed": dp.a_signed},
        "weights": {"format": dp.fmt, "bits": dp.w_bits, "e_max": dp.e_max, "arch": dp.arch,
                    "frac_bits": dp.frac_bits, "storage_bits": dp.storage_bits},
        "accumulator": {"bits": acc_bits, "natural_bits": natural, "count": dp.n_acc},
        "output": {"bits": spec.out_bits, "signed": spec.out_signed, "lo": lo, "hi": hi},
        "requant": {"rounding": "ties_toward_plus_inf", "m_bits": 16},
        "scales": {"s": float(act.s.detach()), "beta": beta, "s_out": s_out},
    }
    arrays = {
        "x": x_codes.numpy().astype(np.int16),
        "w": w_codes.numpy().astype(np.int16),
        "M": M, "B": B, "sh": sh,
        "alpha": alpha.numpy().astype(np.float64),
        "bias": bias.numpy().astype(np.float64),
        "y_float": y_real.numpy().astype(np.float32),
    }
    acc, y = intref.reference(manifest, arrays)
    arrays["acc"], arrays["y"] = acc, y
    return manifest, arrays


def export_case(spec: CaseSpec, path) -> str:
    """Build one case and write it to ``path``; return the file's SHA-256."""
    manifest, arrays = build_case(spec)
    return write_case(path, manifest, arrays)
