"""Conformance: compare a model's accumulators and codes with golden cases."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .vectors import Case

__all__ = ["Mismatch", "CaseReport", "compare", "float_fidelity", "MAX_LISTED"]

MAX_LISTED = 5


@dataclass
class Mismatch:
    """One differing value: which case, array and index, expected and actual."""

    case: str
    array: str
    index: tuple
    expected: int
    got: int

    def __str__(self):
        idx = ",".join(str(i) for i in self.index)
        return f"{self.case}: {self.array}[{idx}] expected {self.expected} got {self.got}"


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


def _shape_error(case, what, exp, got):
    return CaseReport(case.name, case.n_outputs, case.n_outputs,
                      [Mismatch(case.name, f"{what}.shape", (), exp.shape, got.shape)])


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
    bad_acc = acc.astype(np.int64) != exp_acc
    bad_y = y.astype(np.int64) != exp_y
    bad = bad_y | bad_acc.any(axis=0)
    listed = []
    for idx in np.argwhere(bad_acc)[:MAX_LISTED]:
        idx = tuple(int(i) for i in idx)
        listed.append(Mismatch(case.name, f"{label}acc", idx, int(exp_acc[idx]), int(acc[idx])))
    for idx in np.argwhere(bad_y)[:MAX_LISTED]:
        idx = tuple(int(i) for i in idx)
        listed.append(Mismatch(case.name, f"{label}y", idx, int(exp_y[idx]), int(y[idx])))
    return CaseReport(case.name, int(bad.size), int(np.count_nonzero(bad)), listed)


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
