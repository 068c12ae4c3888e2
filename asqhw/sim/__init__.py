"""Bit-exact numba model of the ASQ+POST integer datapath (docs/datapath.md, docs/sim.md).

Independent of ``asqhw/golden/`` and ``asqhw/hdl/``; stands only on the ground floor ``asqhw.core``.
"""

from .threading_layer import choose_threading_layer

choose_threading_layer()   # before any parallel kernel runs: not OpenMP (PyTorch shares it)

from .codes import decode_weight, lut_entry, product, product_table, product_terms  # noqa: E402
from .layers import Conv2d, GemmPlan, conv2d, linear  # noqa: E402
from .network import IntNetwork, predict, run_network  # noqa: E402
from .requant import requant  # noqa: E402
from .run import run  # noqa: E402

__all__ = ["run", "conv2d", "linear", "requant", "product_table", "product", "product_terms",
           "decode_weight", "lut_entry", "Conv2d", "GemmPlan", "run_network", "predict", "IntNetwork"]
