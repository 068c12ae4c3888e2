"""Run one golden case (asqhw.core.vectors layout) through the model."""

from __future__ import annotations

import numpy as np

from asqhw.core.errors import UserError
from asqhw.core.vectors import Case

from .layers import conv2d, linear
from .requant import requant

__all__ = ["run"]


def run(manifest: dict, arrays: dict, *, method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Accumulators and output codes of the case described by ``manifest`` and ``arrays``.

    Reads ``x``, ``w``, ``M``, ``B``, ``sh`` and the layer, datapath, accumulator
    width and output range of the manifest (docs/vectors.md); ignores the expected
    results. Returns ``(acc, y)``: int64 ``(n_acc, N, C_out[, H_o, W_o])`` and
    int16 ``(N, C_out[, H_o, W_o])``, as the case's ``acc`` and ``y`` entries.
    """
    case = Case(manifest, arrays)
    try:
        dp, layer, bits = case.datapath, case.layer, case.acc_bits
        lo, hi = case.out_range
        x, w = arrays["x"], arrays["w"]
        M, B, sh = arrays["M"], arrays["B"], arrays["sh"]
    except KeyError as e:
        raise UserError(f"case lacks {e.args[0]!r}") from None
    if layer["kind"] == "linear":
        acc = linear(x, w, dp, acc_bits=bits, method=method)
    elif layer["kind"] == "conv2d":
        acc = conv2d(x, w, dp, stride=layer["stride"], padding=layer["padding"],
                     groups=layer["groups"], acc_bits=bits, method=method)
    else:
        raise UserError(f"layer kind must be linear or conv2d, not {layer['kind']!r}")
    y = requant(acc, M, B, sh, lo, hi)
    if y.dtype != np.int16:
        raise UserError(f"output range [{lo}, {hi}] does not fit the int16 codes of the vector format")
    return acc, y
