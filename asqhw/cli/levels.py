"""Weight level sets of docs/datapath.md section 3, for listing and plotting."""

from __future__ import annotations

import math

from asqhw.core.atomic import write_bytes
from asqhw.core.params import Datapath

__all__ = ["level_table", "plot_levels", "plot_png"]


def level_table(dp: Datapath) -> list[dict]:
    """Every valid weight code with its level (in units of alpha; uniform: of the step).

    Rows are sorted by level; for pot/post each row names the exponent ``W``
    and how the product is formed (shift or table).
    """
    rows = []
    lo, hi = dp.w_range
    for code in range(lo, hi + 1):
        if dp.fmt == "uniform":
            rows.append({"code": code, "bits": format(code & (2**dp.w_bits - 1), f"0{dp.w_bits}b"),
                         "level": float(code), "exponent": None, "product": "multiply"})
            continue
        sgn, m = code >> dp.m_bits, code & ((1 << dp.m_bits) - 1)
        if m > dp.e_max + 1:
            continue
        w = m - 1
        if m == 0:
            level, how = 0.0, "zero" if sgn == 0 else "zero (-0 code)"
        else:
            base = 2.0 if dp.fmt == "pot" else math.sqrt(2.0)
            level = (-1) ** sgn * base ** (-w)
            how = "shift" if dp.fmt == "pot" or w % 2 == 0 else (
                "table" if dp.arch == "lut" else "shift, odd accumulator")
        rows.append({"code": code, "bits": format(code, f"0{dp.storage_bits}b"),
                     "level": level, "exponent": None if m == 0 else w, "product": how})
    rows.sort(key=lambda r: (r["level"], r["code"]))
    return rows


def plot_levels(dp: Datapath, path, force: bool = False) -> None:
    """Draw the level set on a number line (like the paper's Fig. 3) into the PNG file ``path``.

    Exactly ``path`` is written (no suffix is added), atomically; an existing file is
    only replaced when ``force`` is true (else UserError).
    """
    write_bytes(path, plot_png(dp), force=force)


def plot_png(dp: Datapath) -> bytes:
    """The level plot of :func:`plot_levels` as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({r["level"] for r in level_table(dp)})
    top = max(abs(v) for v in levels) or 1.0
    norm = [v / top for v in levels]
    fig, (ax, zoom) = plt.subplots(2, 1, figsize=(8, 3.2), constrained_layout=True)
    small = min((abs(v) for v in norm if v), default=1.0)
    for a, span in ((ax, 1.05), (zoom, max(4 * small, 0.04))):
        a.axhline(0, color="0.6", lw=0.8)
        a.vlines(norm, -1, 1, color="C0", lw=1.2)
        a.plot(norm, [0] * len(norm), "o", color="C3", ms=3)
        a.set_xlim(-span, span)
        a.set_yticks([])
    name = {"uniform": "uniform (LSQ)", "pot": "POT", "post": "POST"}[dp.fmt]
    extra = "" if dp.fmt == "uniform" else f", E_max = {dp.e_max}"
    ax.set_title(f"{dp.w_bits}-bit {name}: {len(levels)} levels{extra} (normalised to the largest)")
    zoom.set_title("near zero", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()
