"""Bit-exact numba model of the ASQ+POST integer datapath (docs/datapath.md, docs/sim.md).

Independent of ``golden/`` and ``hdl/``; shares only the format layer ``asqhw``.
"""

from .codes import decode_weight, lut_entry, product, product_table, product_terms
from .layers import Conv2d, GemmPlan, conv2d, linear
from .network import IntNetwork, predict, run_network
from .requant import requant
from .run import run

__all__ = ["run", "conv2d", "linear", "requant", "product_table", "product", "product_terms",
           "decode_weight", "lut_entry", "Conv2d", "GemmPlan", "run_network", "predict", "IntNetwork"]
