"""Conformance of network exports: recompute every vector from ``vec/input`` and compare.

The numba model (``sim.network``) recomputes each node's tensors from the export's input
codes and parameters; every integer vector of docs/network.md (accumulators, outputs,
adapter pool sums, mean codes, hidden codes, ``beta_q``, logits) must be equal, value for
value (docs/datapath.md section 16). A *value* is one integer of one vector array.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asqhw.core.conform import find_mismatches
from asqhw.core.errors import UserError
from asqhw.core.network import Network, is_network_file, read_network
from asqhw.core.vectors import check_index

__all__ = ["NetReport", "compare_network", "check_network", "split_paths", "conform_networks",
           "format_networks", "MAX_LISTED"]

MAX_LISTED = 5


@dataclass
class NetReport:
    """The outcome of one network: counts, the first mismatches, QAT top-1 agreement."""

    network: str
    path: str
    nodes: int
    samples: int
    vectors: int
    mismatches: int
    listed: list = field(default_factory=list)
    qat_agreement: float | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def record(self) -> dict:
        """A JSON-ready dict."""
        return {"network": self.network, "path": self.path, "nodes": self.nodes, "samples": self.samples,
                "vectors": self.vectors, "mismatches": self.mismatches,
                "qat_agreement": None if self.qat_agreement is None else round(self.qat_agreement, 4),
                "seconds": round(self.seconds, 3),
                "mismatch_list": [m.record() for m in self.listed]}


def _keys_in_order(net: Network) -> list[tuple[str, str]]:
    """``(node, key)`` of every compared vector, in node order (accumulators before outputs)."""
    out = []
    for nd in net.nodes:
        name, op = nd["name"], nd["op"]
        if op in ("conv2d", "linear"):
            sub = ["/acc", ""]
        elif op == "adapter":
            sub = ["/S", "/P"] + (["/H"] if nd["hidden"] else []) + ["/beta"]
        else:
            sub = [""]
        out += [(name, f"vec/{name}{s}") for s in sub]
    return out


def compare_network(net: Network, computed: dict) -> NetReport:
    """Compare ``computed`` vectors (the ``vec/...`` keys) with the export's golden vectors.

    Mismatches are listed in node order; the first one names the earliest differing node.
    """
    vectors = bad_total = 0
    listed = []
    for node, key in _keys_in_order(net):
        exp = net.vectors[key]
        got = computed.get(key)
        if got is None or np.shape(got) != exp.shape:
            shape = None if got is None else list(np.shape(got))
            raise UserError(f"{net.name}: the model gave {key} of shape {shape}, the export has {list(exp.shape)}")
        vectors += exp.size
        bad, found = find_mismatches(net.name, key, exp, got, node=node, sample_axis=1 if key.endswith("/acc") else 0,
                                     limit=MAX_LISTED - len(listed))
        bad_total += int(np.count_nonzero(bad))
        listed += found
    return NetReport(net.name, str(net.path or ""), len(net.nodes), net.samples, vectors, bad_total, listed)


def check_network(net: Network, method: str = "auto") -> NetReport:
    """Recompute ``net``'s vectors with the numba model from ``vec/input`` and compare them."""
    from asqhw.sim.network import run_network

    if not net.samples:
        raise UserError(f"{net.path or net.name}: the network export has no golden vectors (samples = 0)")
    t0 = time.perf_counter()
    computed = run_network(net, net.vectors["vec/input"], method=method)
    seconds = time.perf_counter() - t0
    rep = compare_network(net, computed)
    rep.seconds = seconds
    logits = computed[f"vec/{net.output}"]
    qat = net.vectors["vec/qat_logits"]
    rep.qat_agreement = float(np.mean(np.argmax(logits, axis=1) == np.argmax(qat, axis=1)))
    return rep


def split_paths(paths) -> tuple[list[Path], list[Path]]:
    """Separate layer-case paths from network files.

    A file is a network when its manifest says so (:func:`asqhw.core.network.is_network_file`);
    a directory of cases only is kept as a case path (its ``index.json`` is checked when the
    cases are loaded); a directory that also holds networks contributes them to the networks
    and its other ``*.npz`` files to the case paths (after checking its ``index.json``).
    """
    cases, nets = [], []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(p.glob("*.npz"))
            found = [f for f in files if is_network_file(f)]
            if not found:
                cases.append(p)
                continue
            if (p / "index.json").is_file():
                check_index(p / "index.json")
            nets += found
            cases += [f for f in files if f not in found]
        elif p.is_file() and is_network_file(p):
            nets.append(p)
        else:
            cases.append(p)
    return cases, nets


def conform_networks(paths, method: str = "auto") -> list[NetReport]:
    """Read and check every network file in ``paths``."""
    return [check_network(read_network(p), method) for p in paths]


def format_networks(reports: list[NetReport]) -> str:
    """The text report: one row per network, the listed mismatches, a total line."""
    headers = ["network", "nodes", "samples", "vectors", "mismatches", "qat agree"]
    rows = [[r.network, r.nodes, r.samples, r.vectors, r.mismatches,
             "-" if r.qat_agreement is None else f"{100 * r.qat_agreement:.1f}%"] for r in reports]
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("(vectors: integer values compared, every accumulator, output, adapter S/P/H/beta and logit;\n"
                 " qat agree: golden samples whose integer top-1 equals the QAT network's, a fidelity figure)")
    lines += [f"MISMATCH {m}" for r in reports for m in r.listed]
    secs = sum(r.seconds for r in reports)
    lines.append(f"{len(reports)} network(s), {sum(r.vectors for r in reports)} vectors, "
                 f"{sum(r.mismatches for r in reports)} mismatches (numba model, {secs:.2f} s)")
    return "\n".join(lines)
