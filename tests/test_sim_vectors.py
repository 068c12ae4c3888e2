"""sim.run reproduces every bundled golden case (asqhw/golden/vectors) bit for bit."""

from pathlib import Path

import numpy as np
import pytest

from asqhw import sim
from asqhw.core.vectors import load_cases

CORPUS = Path(__file__).resolve().parents[1] / "asqhw" / "golden" / "vectors"
CASES = load_cases([CORPUS])          # fails loudly if the corpus is missing or corrupt


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("method", ["auto", "exact", "gemm", "int"])
def test_run_reproduces_case(case, method):
    acc, y = sim.run(case.manifest, case.arrays, method=method)
    assert acc.dtype == np.int64 and y.dtype == np.int16
    assert acc.shape == case["acc"].shape and y.shape == case["y"].shape
    assert int(np.count_nonzero(acc != case["acc"])) == 0
    assert int(np.count_nonzero(y != case["y"])) == 0


def test_corpus_covers_every_architecture():
    assert {c.manifest["weights"]["arch"] for c in CASES} == {"mul", "shift", "lut", "split"}
