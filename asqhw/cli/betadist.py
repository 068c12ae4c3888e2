"""The distribution of ``beta_q`` per adapter of a network export over a data set.

Runs the integer network (``sim.network``, every vector kept) over test images and collects
``vec/ADAPTER/beta`` (docs/datapath.md section 13): the fixed-point ``beta = beta_q * 2^-f_b``
each adapter produced per image. Its range sizes the ``1/beta`` unit of section 14: the
divider's operand width (``bitlen(beta_q)``, ``L``), how often ``beta_q`` sits on its lower
bound 1 (the ReLU / epsilon clamp) or its upper bound ``2^b_beta - 1`` (saturation).
"""

from __future__ import annotations

import numpy as np

from asqhw.core.errors import UserError

__all__ = ["collect_betas", "beta_stats", "plot_betas", "PERCENTILES"]

PERCENTILES = (1, 5, 50, 95, 99)


def collect_betas(net, codes: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """``beta_q`` (int64, one per image) of every adapter of ``net`` for input ``codes``."""
    from asqhw.sim.network import IntNetwork

    adapters = [nd["name"] for nd in net.nodes if nd["op"] == "adapter"]
    if not adapters:
        raise UserError(f"{net.name} has no adapters (an LSQ network has no beta)")
    model = IntNetwork(net)
    # every node's output of a batch is kept: at most about 1 GiB of them (32 bytes a value)
    per_sample = sum(int(np.prod(t.shape)) for t in net.tensors.values()) or 1
    batch = max(1, min(batch, (1 << 30) // (32 * per_sample)))
    parts: dict[str, list] = {a: [] for a in adapters}
    for i in range(0, len(codes), batch):
        vec = model.run(codes[i:i + batch], keep=True)
        for a in adapters:
            parts[a].append(vec[f"vec/{a}/beta"])
    return {a: np.concatenate(p).astype(np.int64) for a, p in parts.items()}


def beta_stats(net, betas: dict[str, np.ndarray]) -> list[dict]:
    """Per adapter: format, range, percentiles of ``beta_q``, clamped counts, divider operand bits."""
    rows = []
    for name, b in betas.items():
        nd = net.node(name)
        bb, fb = nd["beta_bits"], nd["beta_frac"]
        top = (1 << bb) - 1
        pct = np.percentile(b, PERCENTILES, method="nearest")
        lens = [int(v).bit_length() for v in (b.min(), b.max())]
        rows.append({
            "adapter": name, "channels": nd["channels"], "hidden": nd["hidden"], "beta_bits": bb,
            "beta_frac": fb, "images": int(b.size), "min": int(b.min()), "max": int(b.max()),
            "percentiles": {str(p): int(v) for p, v in zip(PERCENTILES, pct)},
            "mean": float(b.mean()), "distinct": int(np.unique(b).size),
            "at_floor": int(np.count_nonzero(b == 1)), "at_ceiling": int(np.count_nonzero(b == top)),
            "bits_used": lens[1], "L_range": lens,
            "beta_min": float(b.min()) / (1 << fb), "beta_max": float(b.max()) / (1 << fb),
        })
    return rows


def plot_betas(net, betas: dict[str, np.ndarray], path, data: str, force: bool = False) -> None:
    """One histogram of ``beta_q`` per adapter (bottom axis ``beta_q``, top axis ``beta``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(betas)
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.3 * len(names) + 0.8), constrained_layout=True,
                             squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        b = betas[name]
        nd = net.node(name)
        fb, top = nd["beta_frac"], (1 << nd["beta_bits"]) - 1
        lo, hi = int(b.min()), int(b.max())
        span = max(hi - lo, 1)
        bins = np.arange(lo, hi + 2) - 0.5 if span <= 120 else 60
        ax.hist(b, bins=bins, color="C1")
        p1, p50, p99 = np.percentile(b, (1, 50, 99), method="nearest")
        for v, ls in ((p1, ":"), (p50, "-"), (p99, ":")):
            ax.axvline(v, color="0.2", lw=0.9, ls=ls)
        pad = max(2, span // 10)
        ax.set_xlim(max(0, lo - pad), min(top + 1, hi + pad))
        ax.set_xlabel(f"beta_q (beta = beta_q / {1 << fb}); lines: 1st, 50th, 99th percentile", fontsize=8)
        ax.set_ylabel("images")
        sec = ax.secondary_xaxis("top", functions=(lambda q, s=1 << fb: q / s, lambda v, s=1 << fb: v * s))
        sec.set_xlabel("beta", fontsize=8)
        ax.set_title(f"{name} ({nd['channels']} channels): beta_q in [{lo}, {hi}] of [1, {top}], "
                     f"{np.unique(b).size} distinct values, {int(hi).bit_length()} bits used", fontsize=9)
    fig.suptitle(f"{net.name}: beta per adapter over {len(b)} images of {data} (integer model)", fontsize=10)
    import io

    from asqhw.core.atomic import write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue(), force=force)
