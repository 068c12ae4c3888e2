"""Conformance: compare a model's accumulators and codes with golden cases; the one mismatch record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .vectors import Case

__all__ = ["Mismatch", "CaseReport", "find_mismatches", "compare", "float_fidelity", "MAX_LISTED"]

MAX_LISTED = 5


class Mismatch(NamedTuple):
    """One differing value: where (case, or network and node and sample), array, index, expected, got.

    The one mismatch record of every comparison: a layer case (``node`` and ``sample`` None), a
    network export's vectors, an RTL run. A plain tuple in this field order.
    """

    case: str
    node: str | None
    array: str
    sample: int | None
    index: tuple
    expected: int
    got: int

    def __str__(self):
        idx = ",".join(str(i) for i in self.index)
        if self.node is None:
            return f"{self.case}: {self.array}[{idx}] expected {self.expected} got {self.got}"
        return (f"{self.case}: node {self.node} {self.array} sample {self.sample} [{idx}] "
                f"expected {self.expected} got {self.got}")

    def record(self) -> dict:
        """A JSON-ready dict (a network's mismatch names its ``network``, ``node`` and ``sample``)."""
        if self.node is None:
            return {"case": self.case, "array": self.array, "index": list(self.index),
                    "expected": self.expected, "got": self.got}
        return {"network": self.case, "node": self.node, "array": self.array, "sample": self.sample,
                "index": list(self.index), "expected": self.expected, "got": self.got}


@dataclass
class CaseReport:
    """The outcome of one case: counts and the first few mismatches."""

    case: str
    vectors: int
    mismatches: int
    listed: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0


def find_mismatches(case: str, array: str, expected, got, *, node: str | None = None,
                    sample_axis: int | None = None, limit: int | None = MAX_LISTED) -> tuple[np.ndarray, list]:
    """Where integer array ``got`` differs from ``expected`` (same shape).

    Returns the boolean mask of differing values and the first ``limit`` of them (None:
    every one) as :class:`Mismatch`, in index order. With ``sample_axis``, that axis of an
    index is the mismatch's ``sample`` and the rest its ``index``.
    """
    expected, got = np.asarray(expected), np.asarray(got)
    bad = got.astype(np.int64) != expected.astype(np.int64)
    listed = []
    for idx in np.argwhere(bad)[:limit]:
        idx = tuple(int(i) for i in idx)
        sample, rest = ((None, idx) if sample_axis is None
                        else (idx[sample_axis], idx[:sample_axis] + idx[sample_axis + 1:]))
        listed.append(Mismatch(case, node, array, sample, rest, int(expected[idx]), int(got[idx])))
    return bad, listed


def _shape_error(case, what, exp, got):
    return CaseReport(case.name, case.n_outputs, case.n_outputs,
                      [Mismatch(case.name, None, f"{what}.shape", None, (), exp.shape, got.shape)])


def compare(case: Case, acc, y, label: str = "") -> CaseReport:
    """Compare computed ``acc`` and ``y`` with the case's expected arrays.

    A vector is one output value (one dot product); it mismatches when its
    code or any of its accumulators differs.
    """
    exp_acc, exp_y = case["acc"], case["y"]
    acc, y = np.asarray(acc), np.asarray(y)
    if acc.shape != exp_acc.shape:
        return _shape_error(case, "acc", exp_acc, acc)
    if y.shape != exp_y.shape:
        return _shape_error(case, "y", exp_y, y)
    bad_acc, listed_acc = find_mismatches(case.name, f"{label}acc", exp_acc, acc)
    bad_y, listed_y = find_mismatches(case.name, f"{label}y", exp_y, y)
    bad = bad_y | bad_acc.any(axis=0)
    return CaseReport(case.name, int(bad.size), int(np.count_nonzero(bad)), listed_acc + listed_y)


def float_fidelity(case: Case) -> tuple[float, int]:
    """Share of output codes equal to the float fake-quant output rounded, and the largest gap.

    A fidelity figure, not part of conformance: the float path rounds half to
    even and carries no requantisation or table rounding error.
    """
    s_out = case.manifest["scales"]["s_out"]
    lo, hi = case.out_range
    ref = np.clip(np.round(case["y_float"].astype(np.float64) / s_out), lo, hi)
    diff = np.abs(ref - case["y"].astype(np.float64))
    if diff.size == 0:
        return 1.0, 0
    return float(np.mean(diff == 0)), int(diff.max())
