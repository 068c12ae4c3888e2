"""The spread of every adapter's ``beta`` over a data set, in the QAT network.

``asqhw plot beta`` shows ``beta_q`` of an integer export; this is the same view of a QAT
network in training (no export needed): for every ``quant`` node with an adapter, the
percentiles of the quantised ``beta`` over the images, and the number of distinct values.
"""

from __future__ import annotations

import torch

from .graph import QatNet

__all__ = ["beta_values", "beta_spread"]

PERCENTILES = (5, 50, 95)


@torch.no_grad()
def beta_values(net: QatNet, x: torch.Tensor, batch: int = 500) -> dict[str, torch.Tensor]:
    """``beta`` of every adapter (by quant node name) for each image of ``x`` (eval mode)."""
    net.eval()
    names = [nd.name for nd in net.nodes if nd.op == "quant" and net.units[nd.name].adapter is not None]
    out = {n: [] for n in names}
    for i in range(0, len(x), batch):
        acts = net(x[i:i + batch], keep=True)
        for n in names:
            unit = net.units[n]
            out[n].append(unit.beta(unit.wide_clip(acts[net.node(n).inputs[0]])).reshape(-1).double())
    return {n: torch.cat(v) for n, v in out.items()}


def beta_spread(net: QatNet, x: torch.Tensor) -> list[dict]:
    """Per adapter: ``node``, ``p5``, ``p50``, ``p95``, ``min``, ``max``, ``distinct`` values and
    ``spread`` = ``(p95 - p5) / p50``."""
    rows = []
    for name, b in beta_values(net, x).items():
        p = {f"p{q}": float(torch.quantile(b, q / 100)) for q in PERCENTILES}
        rows.append({"node": name, **p, "min": float(b.min()), "max": float(b.max()),
                     "distinct": int(torch.unique(b).numel()),
                     "spread": (p["p95"] - p["p5"]) / p["p50"] if p["p50"] > 0 else float("nan")})
    return rows
