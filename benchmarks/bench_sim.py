"""Speed of the numba model on the conv layers of ResNet-18 against PyTorch float32 and quantized int8 conv.

For each distinct conv shape of ResNet-18 (ImageNet, 224x224 input) and each
configuration (``uniform8``, ``pot4``, ``post4-split``, ``post4-lut``), times a prepared
``sim.Conv2d`` layer (int16 codes in, exact int64 accumulators out, natural
accumulator width; the weights are turned into GEMM matrices on the first call and
kept, as torch keeps float weights; that first call is reported as ``first ms``),
and on the same shapes with the same thread count: ``torch.nn.functional.conv2d`` in
float32 and PyTorch's quantized int8 convolution (x86 backend: quint8 activations,
per-channel qint8 weights, exact int32 accumulation), both with the weights prepacked
once (``torch.ops.quantized.conv2d``, what ``torch.ao.nn.quantized.Conv2d`` runs) and
through ``torch.ao.nn.quantized.functional.conv2d`` (which prepacks on every call).
Prints times, GMAC/s and ratios per layer and for the whole network (all ResNet-18
convs: each shape weighted by how often it occurs), the CPU's SIMD instruction set
(AVX-512/VNNI or AVX2 only, from /proc/cpuinfo), and the one-off first call from an
empty numba cache (a fresh process with ``NUMBA_CACHE_DIR`` set to a new temporary
directory: import, compile every kernel of every configuration and path) and the same
from that warm cache in the next fresh process (every kernel loaded from disk). The first
call of each configuration in this process (compile or on-disk cache load) is timed
separately. Per layer, each library is timed in its own block (best of ``--reps``
calls), started by a short pause and an untimed call, so that none is timed while
another's idle threads still spin.

Usage::

    python benchmarks/bench_sim.py [--quick] [--json FILE] [--batch 1 8] [--reps 3] [--cpu-time]
        [--simd auto|none|vnni512|vnni256|avx2]   # force the direct kernel (sim.layers.SIMD_MODE)

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
import warnings
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.ao.nn.quantized.functional as qF  # noqa: E402

from asqhw import sim  # noqa: E402
from asqhw.core.params import Datapath  # noqa: E402

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
    "uniform8": Datapath(fmt="uniform", a_bits=8, w_bits=8),
    "pot4": Datapath(fmt="pot", a_bits=4, w_bits=4),
    "post4-split": Datapath(fmt="post", a_bits=4, w_bits=4, arch="split"),
    "post4-lut": Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut"),
}
REFS = ("torch_s", "qint8_s", "qint8f_s")   # float32 conv2d, quantized conv (prepacked), quantized functional
REF_NAMES = {"torch_s": "PyTorch float32 `conv2d`",
             "qint8_s": "PyTorch quantized int8 conv, weights prepacked (x86 backend, exact int32 accumulation)",
             "qint8f_s": "PyTorch quantized int8 `functional.conv2d` (prepacks per call)"}


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


def timed_block(fn, reps):
    """A pause, one untimed call, then the best of ``reps`` calls."""
    time.sleep(SETTLE_S)
    fn()
    return best_time(fn, reps)


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} "
                     f"threads={i.get('num_threads')}" for i in threadpool_info())


ISA_FLAGS = ("avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "amx_int8")


def cpu_info() -> dict:
    """CPU model and the SIMD instruction set of this machine, from /proc/cpuinfo."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = val.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(val.split())
    except OSError:
        pass
    if "avx512f" in flags:
        isa = "AVX-512" + (" with VNNI" if "avx512_vnni" in flags else " without VNNI")
    elif "avx2" in flags:
        isa = "AVX2 only" + (" (with AVX-VNNI)" if "avx_vnni" in flags else " (no VNNI)")
    else:
        isa = "no AVX2"
    return {"model": model, "isa": isa, "flags": sorted(f for f in ISA_FLAGS if f in flags)}


COLD = """
import time, numpy as np
t0 = time.perf_counter()
from asqhw import sim
from asqhw.core.params import Datapath
CONFIGS = [Datapath(fmt="uniform", a_bits=8, w_bits=8), Datapath(fmt="pot", a_bits=4, w_bits=4),
           Datapath(fmt="post", a_bits=4, w_bits=4, arch="split"), Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut")]
x = np.ones((1, 8, 12, 12), np.int16); w = np.ones((8, 8, 3, 3), np.int16)
for dp in CONFIGS:
    for method in sim.layers.METHODS:
        acc = sim.conv2d(x, w, dp, padding=1, method=method)
    y = sim.requant(acc, np.ones((8, dp.n_acc), np.int64), np.zeros(8, np.int64), np.ones(8, np.int64), 0, 15)
print(time.perf_counter() - t0)
"""


def cold_compile_seconds() -> tuple[float, float]:
    """Import plus first calls of every path of every configuration in a fresh process: empty, then warm cache.

    The second process uses the cache the first one filled: every kernel loads from disk.
    """
    import subprocess
    import tempfile
    times = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", COLD], env=env, capture_output=True, text=True, check=True,
                                 cwd=Path(__file__).resolve().parents[1])
            times.append(float(out.stdout.strip().splitlines()[-1]))
    return times[0], times[1]


def torch_references(rng, nb, ci, co, k, st, pad, size, reps):
    """Times of torch float32 conv2d and of the quantized int8 conv (prepacked, and functional) on one shape."""
    x = rng.integers(0, 256, size=(nb, ci, size, size)).astype(np.float32)
    w = rng.integers(-128, 128, size=(co, ci, k, k)).astype(np.float32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    qx = torch.quantize_per_tensor(xt, 1.0, 0, torch.quint8)
    qw = torch.quantize_per_channel(wt, torch.ones(co, dtype=torch.float64), torch.zeros(co, dtype=torch.int64),
                                    0, torch.qint8)
    out_scale = float(ci * k * k * 64)
    packed = torch.ops.quantized.conv2d_prepack(qw, None, [st, st], [pad, pad], [1, 1], 1)
    with torch.no_grad():
        return {"torch_s": timed_block(lambda: torch.nn.functional.conv2d(xt, wt, stride=st, padding=pad), reps),
                "qint8_s": timed_block(lambda: torch.ops.quantized.conv2d(qx, packed, out_scale, 0), reps),
                "qint8f_s": timed_block(lambda: qF.conv2d(qx, qw, None, stride=st, padding=pad, scale=out_scale,
                                                          zero_point=0), reps)}


def bench(args):
    threads = numba.get_num_threads()
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = "x86"
    rng = np.random.default_rng(0)
    layers = RESNET18[:4] if args.quick else RESNET18
    configs = {c: CONFIGS[c] for c in args.configs}
    results = {"threads": threads, "blas": blas_info(), "numpy": np.__version__, "torch": torch.__version__,
               "numba": numba.__version__, "threading_layer": None, "cpu": cpu_info(),
               "quantized_engine": torch.backends.quantized.engine,
               "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                                      "NUMBA_NUM_THREADS", "OMP_NUM_THREADS")},
               "load_before": os.getloadavg()[0],
               "reps": args.reps, "quick": args.quick, "simd_mode": args.simd,
               "simd_variants": list(sim.simd.VARIANTS), "clock": "cpu" if args.cpu_time else "wall",
               "reference": {}, "configs": {}}
    results["cold_compile_s"], results["warm_cache_s"] = cold_compile_seconds() if not args.no_cold else (None, None)
    for cname, dp in configs.items():
        x, w = random_codes(rng, dp, (1, 8, 12, 12), (8, 8, 3, 3))
        t0 = time.perf_counter()
        for method in sim.layers.METHODS:
            sim.conv2d(x, w, dp, stride=1, padding=1, method=method)
        results["configs"][cname] = {"first_call_s": time.perf_counter() - t0, "batches": {}}
    results["threading_layer"] = numba.threading_layer()
    for nb in args.batch:
        refs = []
        for name, ci, co, k, st, pad, size, count in layers:
            ho = (size + 2 * pad - k) // st + 1
            macs = nb * co * ho * ho * ci * k * k
            ref = {"layer": name, "count": count, "macs": macs}
            ref.update(torch_references(rng, nb, ci, co, k, st, pad, size, args.reps))
            refs.append(ref)
            for cname, dp in configs.items():
                x, w = random_codes(rng, dp, (nb, ci, size, size), (co, ci, k, k))
                t0 = time.perf_counter()
                layer = sim.Conv2d(w, dp, stride=st, padding=pad)
                layer(x)                                   # prepares the weights (kept, like float weights)
                t_first = time.perf_counter() - t0
                t_sim = timed_block(lambda: layer(x), args.reps)
                rows = results["configs"][cname]["batches"].setdefault(str(nb), {"layers": []})["layers"]
                rows.append({"layer": name, "count": count, "macs": macs, "sim_s": t_sim, "sim_first_s": t_first,
                             "kernel": layer.simd_variant(int(x.min()), int(x.max()))})
        results["reference"][str(nb)] = {"layers": refs, "total": _total(refs)}
        for cres in results["configs"].values():
            b = cres["batches"][str(nb)]
            b["total"] = _total(b["layers"])
    results["load_after"] = os.getloadavg()[0]
    return results


def _total(rows):
    """Whole network: every time and the multiply-adds weighted by the shape's occurrences."""
    tot = {"macs": sum(r["macs"] * r["count"] for r in rows)}
    for key in ("sim_s",) + REFS:
        if key in rows[0]:
            tot[key] = sum(r[key] * r["count"] for r in rows)
    return tot


def report(res):
    print(f"CPU: {res['cpu']['model']}; instruction set: {res['cpu']['isa']} (flags: {' '.join(res['cpu']['flags'])})")
    print(f"threads={res['threads']} ({res['threading_layer']} layer)  numpy {res['numpy']}  torch {res['torch']} "
          f"(quantized engine {res['quantized_engine']})  numba {res['numba']}  BLAS: {res['blas']}")
    print(f"env: {res['env']}  best of {res['reps']}, {res['clock']} time")
    print(f"sim SIMD kernels this CPU has: {', '.join(res.get('simd_variants', [])) or 'none'}; "
          f"mode {res.get('simd_mode', 'auto')} (per layer: the kernel column)")
    print(f"1-min load average before/after: {res['load_before']:.2f} / {res['load_after']:.2f} "
          f"on {os.cpu_count()} CPUs (other work on the machine inflates every column)")
    if res["cold_compile_s"] is not None:
        print(f"first call from an empty numba cache (fresh process: import, compile every kernel of every "
              f"configuration and path): {res['cold_compile_s']:.1f} s; the same from the warm cache in the next "
              f"fresh process: {res['warm_cache_s']:.1f} s")
    for nb, ref in res["reference"].items():
        print(f"\n-- batch {nb}: time relative to PyTorch float32 conv2d, whole network (all ResNet-18 convs)")
        tt = ref["total"]["torch_s"]
        for key in REFS:
            print(f"   {REF_NAMES[key][:60]:60s} {ref['total'][key] * 1e3:9.2f} ms  {ref['total'][key] / tt:5.2f}")
        for cname, cres in res["configs"].items():
            t = cres["batches"][nb]["total"]["sim_s"]
            print(f"   asq-hw {cname:53s} {t * 1e3:9.2f} ms  {t / tt:5.2f}")
    for cname, cres in res["configs"].items():
        print(f"\n== {cname}  (first call incl. JIT compile/cache load: {cres['first_call_s']:.2f} s)")
        for nb, b in cres["batches"].items():
            refs = res["reference"][nb]
            print(f"-- batch {nb}")
            print(f"{'layer':18s} {'x':>2s} {'first ms':>9s} {'sim ms':>9s} {'GMAC/s':>7s} {'torch ms':>9s} "
                  f"{'qint8 ms':>9s} {'/torch':>6s} {'/qint8':>6s} kernel")
            for r, f in zip(b["layers"] + [dict(b["total"], layer="total (x count)", count=1)],
                            refs["layers"] + [refs["total"]]):
                gs = r["macs"] / r["sim_s"] / 1e9
                first = f"{r['sim_first_s'] * 1e3:9.2f}" if "sim_first_s" in r else " " * 9
                print(f"{r['layer']:18s} {r['count']:2d} {first} {r['sim_s'] * 1e3:9.2f} {gs:7.1f} "
                      f"{f['torch_s'] * 1e3:9.2f} {f['qint8_s'] * 1e3:9.2f} {r['sim_s'] / f['torch_s']:6.2f} "
                      f"{r['sim_s'] / f['qint8_s']:6.2f} {r.get('kernel') or '-'}")


def markdown(res) -> str:
    """The summary table (time relative to torch float32, whole network) and per-layer ratios in Markdown."""
    cold = "" if res.get("cold_compile_s") is None else \
        f"; first call from an empty numba cache {res['cold_compile_s']:.1f} s" + (
            f", from the warm cache in a fresh process {res['warm_cache_s']:.1f} s" if res.get("warm_cache_s") else "")
    lines = [f"{res['cpu']['model']}, {res['cpu']['isa']}; threads={res['threads']} ({res['threading_layer']} "
             f"layer), {res['clock']} time, best of {res['reps']}, 1-min load average {res['load_before']:.1f} "
             f"before / {res['load_after']:.1f} after on {os.cpu_count()} CPUs{cold}", ""]
    batches = list(res["reference"])
    lines += ["| | " + " | ".join(f"batch {nb}" for nb in batches) + " |", "|---" * (len(batches) + 1) + "|"]
    for key in REFS:
        lines.append(f"| {REF_NAMES[key]} | " + " | ".join(
            f"{res['reference'][nb]['total'][key] / res['reference'][nb]['total']['torch_s']:.2f}"
            for nb in batches) + " |")
    for cname, cres in res["configs"].items():
        lines.append(f"| asq-hw `{cname}` | " + " | ".join(
            f"{cres['batches'][nb]['total']['sim_s'] / res['reference'][nb]['total']['torch_s']:.2f}"
            for nb in batches) + " |")
    lines += ["", "Whole-network times (ms; all ResNet-18 convs):", "",
              "| | " + " | ".join(f"batch {nb}" for nb in batches) + " |", "|---" * (len(batches) + 1) + "|"]
    for key in REFS:
        lines.append(f"| {key[:-2]} | " + " | ".join(f"{res['reference'][nb]['total'][key] * 1e3:.1f}"
                                                     for nb in batches) + " |")
    for cname, cres in res["configs"].items():
        lines.append(f"| {cname} | " + " | ".join(f"{cres['batches'][nb]['total']['sim_s'] * 1e3:.1f}"
                                                  for nb in batches) + " |")
    lines += ["", "Per layer (time relative to PyTorch float32; `xN` = occurrences in ResNet-18):", ""]
    heads = [f"qint8 b{nb}" for nb in batches] + [f"{c} b{nb}" for c, cr in res["configs"].items()
                                                  for nb in cr["batches"]]
    lines += ["| layer | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for i, row in enumerate(res["reference"][batches[0]]["layers"]):
        cells = [f"{res['reference'][nb]['layers'][i]['qint8_s'] / res['reference'][nb]['layers'][i]['torch_s']:.2f}"
                 for nb in batches]
        for cres in res["configs"].values():
            for nb, b in cres["batches"].items():
                cells.append(f"{b['layers'][i]['sim_s'] / res['reference'][nb]['layers'][i]['torch_s']:.2f}")
        lines.append(f"| {row['layer']} x{row['count']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="first four layer shapes, one repetition")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' for stdout)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--no-cold", action="store_true", help="skip the first call from an empty numba cache")
    p.add_argument("--cpu-time", action="store_true",
                   help="time with process CPU time instead of wall time (for a busy machine; use one thread)")
    p.add_argument("--markdown", metavar="JSON", help="print the Markdown tables of a saved --json result and exit")
    p.add_argument("--simd", default="auto", choices=("auto", "none", "vnni512", "vnni256", "avx2"),
                   help="force the direct kernel variant (sim.layers.SIMD_MODE); 'avx2' measures the AVX2-only "
                        "kernel on an AVX-512 machine; 'none' the paths without SIMD kernels")
    args = p.parse_args(argv)
    sim.layers.SIMD_MODE = args.simd
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    if args.quick:
        args.reps = 1
    # quantized tensor creation is deprecated in torch 2.13 (a UserWarning per call); it is the reference here
    warnings.filterwarnings("ignore", message=".*quantize_per_.*deprecated.*")
    res = bench(args)
    if args.json == "-":
        print(json.dumps(res, indent=1))
        return
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
