"""Figures of ASQ against LSQ from two QAT checkpoints (the paper's Fig. 4 and Fig. 5).

:func:`plot_histograms` draws, for a few test images, the activation a quantiser receives
and the codes it makes, LSQ beside ASQ, with each ASQ image's ``beta`` (Fig. 4).
:func:`plot_block_error` draws the relative L2 error between the float network's and the QAT
network's output of every block and that of the same network with its quantisers off, or of
the float network QAT started from (Fig. 5). Both read the first test images of the
checkpoint's data set.
"""

from __future__ import annotations

import numpy as np
import torch

from asqhw.core.atomic import write_bytes
from asqhw.core.errors import UserError
from asqhw.core.validate import check_int

from .qat.checkpoint import net_from_checkpoint

__all__ = ["quantiser_activations", "plot_histograms", "block_errors", "plot_block_error", "REFERENCES"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, force: bool) -> None:
    """Write ``fig`` as a PNG to exactly ``path``, atomically (an existing file only with ``force``)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    write_bytes(path, buf.getvalue(), force=force)


def _label(ckpt: dict) -> str:
    s = ckpt["scheme"]
    return f"{s['name'].upper()} {s['bits']}-bit"


def _pair(lsq: dict, asq: dict) -> None:
    """Check that two checkpoints are LSQ and ASQ versions of the same network."""
    if lsq["model"] != asq["model"]:
        raise UserError(f"the checkpoints hold different networks ({lsq['model']} and {asq['model']})")
    if lsq["scheme"]["name"].startswith("asq"):
        raise UserError(f"--lsq needs a checkpoint without adapters, not scheme {lsq['scheme']['name']}")
    if not asq["scheme"]["name"].startswith("asq"):
        raise UserError(f"--asq needs a checkpoint with adapters, not scheme {asq['scheme']['name']}")


def _images(ckpt: dict, count: int) -> torch.Tensor:
    """The first ``count`` normalised test images of the checkpoint's data set (float64)."""
    from .qat.data import load_data

    check_int("the number of images", count, 1)
    x = ckpt.get("samples_x")
    if x is None or len(x) < count:
        x = load_data(ckpt["data"]).x_test
    return x[:count].double()


@torch.no_grad()
def quantiser_activations(ckpt: dict, node: str, x: torch.Tensor) -> dict:
    """What the quantiser ``node`` of the QAT network sees and makes for images ``x``.

    Returns
    -------
    dict with ``input`` (float64 ``N x ...``, the tensor the quantiser receives, after the
    wide-code saturation), ``codes`` (int64, ``round(clamp(x / (s beta)))``), ``step`` ``s``,
    ``beta`` (float64 ``N``; ones without an adapter) and ``bits``.
    """
    net = net_from_checkpoint(ckpt, "qat").double()
    quants = [nd.name for nd in net.nodes if nd.op == "quant"]
    if node not in quants:
        raise UserError(f"{ckpt['model']} has no quantiser {node!r}; its quantisers are {', '.join(quants)}")
    vals = net(x, keep=True)
    unit = net.units[node]
    z = unit.wide_clip(vals[net.node(node).inputs[0]])
    beta = unit.beta(z)
    beta = torch.ones(len(x), dtype=torch.float64) if beta is None else beta.reshape(-1).double()
    s = float(unit.act.s)
    out = vals[node]
    codes = torch.round(out / (s * beta.reshape((-1,) + (1,) * (out.dim() - 1))))
    return {"input": z.numpy(), "codes": codes.to(torch.int64).numpy(), "step": s, "beta": beta.numpy(),
            "bits": unit.bits}


def plot_histograms(lsq: dict, asq: dict, path, *, node: str = "q1", images: int = 3, force: bool = False) -> dict:
    """Fig. 4: activation histograms before and after quantisation, LSQ beside ASQ.

    One row per test image; per quantiser two panels: the histogram of the activation with
    the quantisation thresholds (``(k + 1/2) * s * beta``) and the histogram of the codes.
    Returns, per scheme, the codes in use and ``beta`` per image.
    """
    _pair(lsq, asq)
    x = _images(lsq, images)
    acts = {"lsq": quantiser_activations(lsq, node, x), "asq": quantiser_activations(asq, node, x)}
    plt = _pyplot()
    n = len(x)
    fig, axes = plt.subplots(n, 4, figsize=(13, 2.6 * n + 0.6), constrained_layout=True, squeeze=False)
    summary = {}
    for col, (key, ck) in enumerate((("lsq", lsq), ("asq", asq))):
        a = acts[key]
        qp = (1 << a["bits"]) - 1
        used = []
        for i in range(n):
            v = a["input"][i].ravel()
            step = a["step"] * a["beta"][i]
            ax, bx = axes[i, 2 * col], axes[i, 2 * col + 1]
            top = max(float(v.max()), (qp + 0.5) * step) * 1.05
            ax.hist(v, bins=60, range=(0.0, top), color="C0" if key == "lsq" else "C1")
            for k in range(qp):
                ax.axvline((k + 0.5) * step, color="0.35", lw=0.7, ls="--")
            ax.axvline(qp * step, color="C3", lw=1.0)
            ax.set_yscale("log")
            beta = f", beta = {a['beta'][i]:.3f}" if key == "asq" else ""
            ax.set_title(f"{_label(ck)}, image {i}: {node} input{beta}", fontsize=9)
            ax.set_xlabel("activation (dashed: rounding thresholds, red: clip)", fontsize=8)
            counts = np.bincount(a["codes"][i].ravel(), minlength=qp + 1)
            bx.bar(np.arange(qp + 1), counts, color="C0" if key == "lsq" else "C1")
            bx.set_xticks(np.arange(qp + 1) if qp < 16 else np.arange(0, qp + 1, max(1, (qp + 1) // 8)))
            in_use = int(np.count_nonzero(counts))
            used.append(in_use)
            bx.set_title(f"codes after quantisation: {in_use} of {qp + 1} in use", fontsize=9)
            bx.set_xlabel("code", fontsize=8)
        summary[key] = {"scheme": ck["scheme"]["name"], "bits": a["bits"], "step": a["step"],
                        "beta": [float(b) for b in a["beta"]], "codes_in_use": used}
    fig.suptitle(f"{lsq['model']}: quantiser {node} before and after quantisation, LSQ against ASQ "
                 "(paper Fig. 4); activation counts on a log scale", fontsize=10)
    _save(fig, path, force)
    return summary


def _blocks(net) -> list[str]:
    """Block outputs: the residual additions if there are any, else every conv/linear/pool."""
    adds = [nd.name for nd in net.nodes if nd.op == "add"]
    if adds:
        return adds
    return [nd.name for nd in net.nodes if nd.op in ("conv", "linear", "maxpool", "avgpool")]


def _unquantised(ckpt: dict):
    """The QAT network with every quantiser off: its own weights and activations in full precision."""
    net = net_from_checkpoint(ckpt, "qat").double()
    for nd in net.nodes:
        unit = net.units[nd.name] if nd.name in net.units else None
        if nd.op in ("quant", "input"):
            unit.enabled = False
        elif nd.op in ("conv", "linear"):
            unit.wq = None
    return net


REFERENCES = ("unquantised", "float")


@torch.no_grad()
def block_errors(ckpt: dict, x: torch.Tensor, reference: str = "unquantised") -> tuple[list[str], np.ndarray]:
    """Relative L2 error ``||y_q - y_r|| / ||y_r||`` per block output and image (``blocks x N``).

    ``y_q`` is the QAT network's output of the block; ``y_r`` that of the ``reference``:
    ``unquantised``, the same network with every quantiser off (the error quantisation adds
    and accumulates), or ``float``, the float network QAT started from (which also counts
    how far QAT moved the weights).
    """
    if reference not in REFERENCES:
        raise UserError(f"reference must be one of {', '.join(REFERENCES)}, not {reference!r}")
    rnet = _unquantised(ckpt) if reference == "unquantised" else net_from_checkpoint(ckpt, "float").double()
    qnet = net_from_checkpoint(ckpt, "qat").double()
    rv, qv = rnet(x, keep=True), qnet(x, keep=True)
    names = _blocks(qnet)
    err = np.zeros((len(names), len(x)))
    for b, name in enumerate(names):
        r = rv[name].reshape(len(x), -1)
        q = qv[name].reshape(len(x), -1)
        err[b] = (torch.linalg.vector_norm(q - r, dim=1) / torch.linalg.vector_norm(r, dim=1).clamp_min(1e-12)).numpy()
    return names, err


def plot_block_error(lsq: dict, asq: dict, path, *, images: int = 256, reference: str = "unquantised",
                     force: bool = False) -> dict:
    """Fig. 5: the error between float and quantised block outputs, LSQ against ASQ.

    Bars: the mean over the checkpoint's test images of the relative L2 error of every block
    output against ``reference`` (see :func:`block_errors`) over the first ``images`` test
    images; whiskers: one standard deviation. Returns the means and standard deviations per scheme.
    """
    _pair(lsq, asq)
    x = _images(lsq, images)
    res = {}
    for key, ck in (("lsq", lsq), ("asq", asq)):
        names, err = block_errors(ck, x, reference)
        res[key] = {"scheme": ck["scheme"]["name"], "bits": ck["scheme"]["bits"], "blocks": names,
                    "mean": err.mean(axis=1).tolist(), "std": err.std(axis=1).tolist()}
    plt = _pyplot()
    names = res["lsq"]["blocks"]
    pos = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names) + 2), 3.8), constrained_layout=True)
    for j, (key, ck) in enumerate((("lsq", lsq), ("asq", asq))):
        r = res[key]
        ax.bar(pos + (j - 0.5) * 0.38, r["mean"], 0.38, yerr=r["std"], capsize=2, label=_label(ck),
               color="C0" if key == "lsq" else "C1")
    ax.set_xticks(pos)
    ax.set_xticklabels(names, rotation=30 if len(names) > 8 else 0)
    ref = "unquantised" if reference == "unquantised" else "float"
    ax.set_ylabel(f"||quantised - {ref}|| / ||{ref}||")
    ax.set_xlabel("block output")
    ax.legend()
    what = ("the same network unquantised" if reference == "unquantised"
            else "the float network QAT started from")
    ax.set_title(f"{lsq['model']}: error of every block output against {what}\n"
                 f"mean and standard deviation over {len(x)} test images (paper Fig. 5)", fontsize=9)
    _save(fig, path, force)
    return res
