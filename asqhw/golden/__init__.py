"""PyTorch golden model of the asq-hw datapath: QAT quantisers, integer reference, vector export.

Modules: :mod:`golden.quant` (LSQ / POT / POST / ASQ fake quantisers), :mod:`golden.intref`
(the integer reference of docs/datapath.md), :mod:`golden.netref` (whole networks, sections
10-16), :mod:`golden.export` (one case) and :mod:`golden.corpus` (the committed corpus in
``asqhw/golden/vectors``). Independent of ``sim`` and ``hdl``.
"""

from pathlib import Path

__all__ = ["VECTORS_DIR"]

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"
"""Directory of the bundled corpus."""
