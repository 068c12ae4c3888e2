"""The byte dot-product instruction sets of the host CPU, for the kernels of :mod:`sim.direct`.

- ``vnni512``: ``vpdpbusd`` on 512-bit vectors (AVX-512 VNNI);
- ``vnni256``: ``vpdpbusd`` on 256-bit vectors (AVX-VNNI, or AVX-512 VNNI with VL);
- ``avx2``: ``vpmaddubsw`` (pairs of u8 x s8 products, saturated to int16) then
  ``vpmaddwd`` by 1 (pairs of int16 summed into int32); exact only when no pair can
  saturate, which the caller checks (:data:`AVX2_PAIR_LIMIT`).

``vpdpbusd`` adds four exact u8 x s8 products into each int32 lane with wraparound.
Only variants the host supports are offered (:data:`VARIANTS`); none when numba
compiles for another CPU than the host (``NUMBA_CPU_NAME``) or off x86.
"""


from __future__ import annotations

import platform

import llvmlite.binding as llb
import numba

__all__ = ["VARIANTS", "AVX2_PAIR_LIMIT"]

AVX2_PAIR_LIMIT = (1 << 15) - 1    # avx2: |a0*w0 + a1*w1| must stay <= this (vpmaddubsw saturates beyond)


def _host_variants():
    if platform.machine().lower() not in ("x86_64", "amd64") or numba.config.CPU_NAME or numba.config.CPU_FEATURES:
        return ()
    f = llb.get_host_cpu_features()
    out = []
    if f.get("avx512vnni") and f.get("avx512bw") and f.get("avx512f"):
        out.append("vnni512")
    if f.get("avxvnni") or (f.get("avx512vnni") and f.get("avx512vl")):
        out.append("vnni256")
    if f.get("avx2"):
        out.append("avx2")
    return tuple(out)


VARIANTS = _host_variants()
