"""Simulation speed of the co-simulation flow (cycles per second), on a synthetic layer.

``python -m asqhw.hdl.cosim_bench [--simulator verilator|amaranth] [--size N]`` runs one
random post4-split 3x3 convolution (16 -> 16 channels, N x N input) through
:func:`hdl.cosim.run_cases_rtl` and prints simulated cycles, wall time of the
simulation alone and cycles/s.  The expected arrays of the synthetic case are
zeros: this measures throughput only, not correctness.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from asqhw.core.spec import SPEC_VERSION
from asqhw.core.params import Datapath, output_range
from asqhw.core.vectors import Case, case_shapes

from .cosim import run_cases_rtl

__all__ = ["synthetic_case", "benchmark"]


def synthetic_case(size: int, *, channels: int = 16, seed: int = 0) -> Case:
    """A random post4 split 3x3 conv (padding 1) with zero expected outputs."""
    dp = Datapath("post", 4, 4, arch="split")
    layer = {"kind": "conv2d", "in_channels": channels, "out_channels": channels, "kernel": [3, 3],
             "in_size": [size, size], "stride": 1, "padding": 1, "groups": 1}
    fan = channels * 9
    lo, hi = output_range(4, False)
    manifest = {"name": f"bench_post4_split_conv3x3_{channels}c_{size}x{size}",
                "format": "asqhw-vectors", "format_version": 1, "spec_version": SPEC_VERSION,
                "layer": layer, "batch": 1, "activation": {"bits": 4, "signed": False},
                "weights": {"format": "post", "bits": 4, "e_max": dp.e_max, "arch": "split",
                            "frac_bits": dp.frac_bits, "storage_bits": dp.storage_bits},
                "accumulator": {"bits": dp.natural_acc_bits(fan), "natural_bits": dp.natural_acc_bits(fan),
                                "count": 2},
                "output": {"bits": 4, "signed": False, "lo": lo, "hi": hi}}
    shapes = case_shapes(manifest)
    rng = np.random.default_rng(seed)
    m = rng.integers(0, dp.e_max + 2, size=shapes["w"])
    arrays = {"x": rng.integers(0, 16, size=shapes["x"]).astype(np.int16),
              "w": ((rng.integers(0, 2, size=shapes["w"]) << dp.m_bits) | m).astype(np.int16),
              "M": rng.integers(0, 65536, size=shapes["M"]).astype(np.int64),
              "B": np.zeros(shapes["B"], dtype=np.int64),
              "sh": np.full(shapes["sh"], 16, dtype=np.int64),
              "acc": np.zeros(shapes["acc"], dtype=np.int64),
              "y": np.zeros(shapes["y"], dtype=np.int16)}
    return Case(manifest, arrays)


def benchmark(size: int, *, simulator: str = "verilator", lanes: int = 16,
              schedule: str = "auto") -> dict:
    """Run the synthetic case once; return cycles, wall seconds and cycles/s."""
    res = run_cases_rtl([synthetic_case(size)], lanes=lanes, schedule=schedule,
                        simulator=simulator)[0]
    return {"case": res.name, "simulator": simulator, "module": res.module, "lanes": lanes,
            "schedule": res.schedule, "cycles": res.cycles, "wall_s": round(res.wall_s, 4),
            "cycles_per_s": round(res.cycles_per_s), "build_s": round(res.build_s, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m asqhw.hdl.cosim_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--simulator", choices=("verilator", "amaranth"), default="verilator")
    ap.add_argument("--size", type=int, default=32, help="input height and width")
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--schedule", choices=("auto", "any", "grouped"), default="auto")
    args = ap.parse_args(argv)
    print(json.dumps(benchmark(args.size, simulator=args.simulator, lanes=args.lanes,
                               schedule=args.schedule)))


if __name__ == "__main__":
    main()
