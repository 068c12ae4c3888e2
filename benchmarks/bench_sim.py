"""Speed of the numba model on the conv layers of ResNet-18 against torch float32 conv2d.

For each distinct conv shape of ResNet-18 (ImageNet, 224x224 input) and each
configuration, times a prepared ``sim.Conv2d`` layer (int16 codes in, exact int64
accumulators out, natural accumulator width; the weights are turned into GEMM
matrices on the first call and kept, as torch keeps float weights; that first
call is reported as ``first ms``) and ``torch.nn.functional.conv2d`` in float32 on
the same shapes with the same thread count, and prints time, GMAC/s and the
ratio ``sim / torch`` per layer and for the whole network (each shape weighted
by how often it occurs). The first call of each configuration (numba JIT
compile or on-disk cache load) is timed separately. Per layer, sim and torch
are timed in separate blocks (best of ``--reps`` calls), each started by a short
pause and an untimed call, so that neither is timed while the other's idle
threads still spin.

Usage::

    python benchmarks/bench_sim.py [--quick] [--json FILE] [--batch 1 8] [--reps 3] [--cpu-time]

On a machine shared with other work, wall time of multi-threaded runs is
dominated by preemption (each parallel region waits for its slowest thread);
``--cpu-time`` with one thread measures the process CPU time instead, which
other processes barely disturb.

Threads: numba's thread count (NUMBA_NUM_THREADS, default all cores) is also
given to torch; OpenBLAS uses OPENBLAS_NUM_THREADS (default all cores). For a
single-thread comparison set all three:
``NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_sim.py``.

OpenBLAS tuning variables (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) are read by
numpy at import time; to measure without them, unset them for this command
only: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_sim.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import sim  # noqa: E402
from asqhw.params import Datapath  # noqa: E402

# name, C_in, C_out, kernel, stride, padding, input size, occurrences in ResNet-18
RESNET18 = [
    ("conv1 7x7/2", 3, 64, 7, 2, 3, 224, 1),
    ("l1 3x3 64", 64, 64, 3, 1, 1, 56, 4),
    ("l2 3x3/2 64-128", 64, 128, 3, 2, 1, 56, 1),
    ("l2 3x3 128", 128, 128, 3, 1, 1, 28, 3),
    ("l2 ds 1x1/2", 64, 128, 1, 2, 0, 56, 1),
    ("l3 3x3/2 128-256", 128, 256, 3, 2, 1, 28, 1),
    ("l3 3x3 256", 256, 256, 3, 1, 1, 14, 3),
    ("l3 ds 1x1/2", 128, 256, 1, 2, 0, 28, 1),
    ("l4 3x3/2 256-512", 256, 512, 3, 2, 1, 14, 1),
    ("l4 3x3 512", 512, 512, 3, 1, 1, 7, 3),
    ("l4 ds 1x1/2", 256, 512, 1, 2, 0, 14, 1),
]

CONFIGS = {
    "post4-split": Datapath(fmt="post", a_bits=4, w_bits=4, arch="split"),
    "post4-lut": Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut"),
    "uniform8": Datapath(fmt="uniform", a_bits=8, w_bits=8),
}


def random_codes(rng, dp: Datapath, x_shape, w_shape):
    """Uniformly random valid activation and weight codes (the worst case for the bounds)."""
    lo, hi = dp.a_range
    x = rng.integers(lo, hi + 1, size=x_shape, dtype=np.int16)
    w_lo, w_hi = dp.w_range
    w = rng.integers(w_lo, w_hi + 1, size=w_shape, dtype=np.int16)
    if dp.fmt != "uniform":
        m = w & ((1 << dp.m_bits) - 1)
        w[m > dp.e_max + 1] = 0
    return x, w


CLOCK = time.perf_counter
SETTLE_S = 0.05   # pause before each timed block: lets the other library's threads stop spinning


def best_time(fn, reps):
    best = float("inf")
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} "
                     f"threads={i.get('num_threads')}" for i in threadpool_info())


COLD = """
import time, numpy as np
t0 = time.perf_counter()
import sim
from asqhw.params import Datapath
dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split")
x = np.ones((1, 8, 12, 12), np.int16); w = np.ones((8, 8, 3, 3), np.int16)
sim.conv2d(x, w, dp, padding=1, method="gemm"); sim.conv2d(x, w, dp, padding=1, method="exact")
sim.conv2d(x, w, dp, padding=1, method="int")
y = sim.requant(sim.conv2d(x, w, dp, padding=1), np.ones((8, 2), np.int64), np.zeros(8, np.int64),
                np.ones(8, np.int64), 0, 15)
print(time.perf_counter() - t0)
"""


def cold_compile_seconds() -> float:
    """Import plus first calls of every kernel with an empty numba cache, in a fresh process."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", COLD], env=env, capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1])
    return float(out.stdout.strip().splitlines()[-1])


def bench(args):
    threads = numba.get_num_threads()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    layers = RESNET18[:4] if args.quick else RESNET18
    results = {"threads": threads, "blas": blas_info(), "numpy": np.__version__, "torch": torch.__version__,
               "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                                      "NUMBA_NUM_THREADS", "OMP_NUM_THREADS")},
               "load_before": os.getloadavg()[0],
               "reps": args.reps, "quick": args.quick, "clock": "cpu" if args.cpu_time else "wall",
               "configs": {}}
    results["cold_compile_s"] = cold_compile_seconds()
    for cname, dp in CONFIGS.items():
        x, w = random_codes(rng, dp, (1, 8, 12, 12), (8, 8, 3, 3))
        t0 = time.perf_counter()
        sim.conv2d(x, w, dp, stride=1, padding=1, method="gemm")
        sim.conv2d(x, w, dp, stride=1, padding=1, method="exact")
        sim.conv2d(x, w, dp, stride=1, padding=1, method="int")
        first = time.perf_counter() - t0
        cres = {"first_call_s": first, "batches": {}}
        for nb in args.batch:
            rows = []
            for name, ci, co, k, st, pad, size, count in layers:
                x, w = random_codes(rng, dp, (nb, ci, size, size), (co, ci, k, k))
                xt, wt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(w.astype(np.float32))
                t0 = time.perf_counter()
                layer = sim.Conv2d(w, dp, stride=st, padding=pad)
                layer(x)                                   # prepares the weights (kept, like float weights)
                t_first = time.perf_counter() - t0
                with torch.no_grad():
                    torch.nn.functional.conv2d(xt, wt, stride=st, padding=pad)
                    t_sim, t_torch = float("inf"), float("inf")
                    # one block of calls each, layer by layer (both see about the same machine
                    # load); a pause and an untimed call start each block, so that neither is
                    # timed while the other's idle threads still spin (torch's OpenMP, OpenBLAS)
                    time.sleep(SETTLE_S)
                    layer(x)
                    t_sim = best_time(lambda: layer(x), args.reps)
                    time.sleep(SETTLE_S)
                    torch.nn.functional.conv2d(xt, wt, stride=st, padding=pad)
                    t_torch = best_time(lambda: torch.nn.functional.conv2d(xt, wt, stride=st, padding=pad),
                                        args.reps)
                ho = (size + 2 * pad - k) // st + 1
                macs = nb * co * ho * ho * ci * k * k
                rows.append({"layer": name, "count": count, "macs": macs, "sim_s": t_sim, "torch_s": t_torch,
                             "sim_first_s": t_first})
            tot_sim = sum(r["sim_s"] * r["count"] for r in rows)
            tot_torch = sum(r["torch_s"] * r["count"] for r in rows)
            tot_macs = sum(r["macs"] * r["count"] for r in rows)
            cres["batches"][str(nb)] = {"layers": rows, "total": {"sim_s": tot_sim, "torch_s": tot_torch,
                                                                  "macs": tot_macs}}
        results["configs"][cname] = cres
    results["load_after"] = os.getloadavg()[0]
    return results


def report(res):
    print(f"threads={res['threads']}  numpy {res['numpy']}  torch {res['torch']}  BLAS: {res['blas']}")
    print(f"env: {res['env']}  best of {res['reps']} (interleaved), {res['clock']} time")
    print(f"1-min load average before/after: {res['load_before']:.2f} / {res['load_after']:.2f} "
          f"on {os.cpu_count()} CPUs (other work on the machine inflates both columns)")
    print(f"numba compile of all kernels from an empty cache (fresh process, incl. import): "
          f"{res['cold_compile_s']:.1f} s")
    for cname, cres in res["configs"].items():
        print(f"\n== {cname}  (first call incl. JIT compile/cache load: {cres['first_call_s']:.2f} s)")
        for nb, b in cres["batches"].items():
            print(f"-- batch {nb}")
            print(f"{'layer':18s} {'x':>2s} {'first ms':>9s} {'sim ms':>9s} {'GMAC/s':>7s} {'torch ms':>9s} "
                  f"{'GMAC/s':>7s} {'ratio':>6s}")
            for r in b["layers"] + [dict(b["total"], layer="total (x count)", count=1)]:
                gs, gt = r["macs"] / r["sim_s"] / 1e9, r["macs"] / r["torch_s"] / 1e9
                first = f"{r['sim_first_s'] * 1e3:9.2f}" if "sim_first_s" in r else " " * 9
                print(f"{r['layer']:18s} {r['count']:2d} {first} {r['sim_s'] * 1e3:9.2f} {gs:7.1f} "
                      f"{r['torch_s'] * 1e3:9.2f} {gt:7.1f} {r['sim_s'] / r['torch_s']:6.2f}")


def markdown(res) -> str:
    """Summary and per-layer tables of a result in Markdown (ratios are sim time / torch time)."""
    lines = [f"threads={res['threads']}, {res['clock']} time, best of {res['reps']}, 1-min load average "
             f"{res['load_before']:.1f} before / {res['load_after']:.1f} after on {os.cpu_count()} CPUs; "
             f"numba compile from an empty cache {res['cold_compile_s']:.1f} s", "",
             "| config | batch | sim ms | sim GMAC/s | torch ms | torch GMAC/s | ratio |",
             "|---|---|---|---|---|---|---|"]
    for cname, cres in res["configs"].items():
        for nb, b in cres["batches"].items():
            t = b["total"]
            lines.append(f"| {cname} | {nb} | {t['sim_s'] * 1e3:.1f} | {t['macs'] / t['sim_s'] / 1e9:.1f} | "
                         f"{t['torch_s'] * 1e3:.1f} | {t['macs'] / t['torch_s'] / 1e9:.1f} | "
                         f"{t['sim_s'] / t['torch_s']:.2f} |")
    lines += ["", "Per layer (ratio sim/torch; `xN` = occurrences in ResNet-18):", ""]
    heads = [f"{c} b{nb}" for c, cr in res["configs"].items() for nb in cr["batches"]]
    lines += ["| layer | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    first = next(iter(res["configs"].values()))
    for i, row in enumerate(next(iter(first["batches"].values()))["layers"]):
        cells = []
        for cres in res["configs"].values():
            for b in cres["batches"].values():
                r = b["layers"][i]
                cells.append(f"{r['sim_s'] / r['torch_s']:.2f}")
        lines.append(f"| {row['layer']} x{row['count']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="first four layer shapes, one repetition")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' for stdout)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cpu-time", action="store_true",
                   help="time with process CPU time instead of wall time (for a busy machine; use one thread)")
    p.add_argument("--markdown", metavar="JSON", help="print the Markdown tables of a saved --json result and exit")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    if args.quick:
        args.reps = 1
    res = bench(args)
    if args.json == "-":
        print(json.dumps(res, indent=1))
        return
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
