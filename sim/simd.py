"""Integer SIMD GEMM of the int path: unsigned 8-bit activations times signed 8-bit weights.

One 4 x 4 register block of ``sum_k col[q, k] * wt[r, k]`` per call of :func:`_block`,
written with the x86 byte dot-product instructions through LLVM intrinsics, in one of
three variants chosen from the host CPU (docs/sim.md, "Integer SIMD kernels"):

- ``vnni512``: ``vpdpbusd`` on 512-bit vectors (AVX-512 VNNI);
- ``vnni256``: ``vpdpbusd`` on 256-bit vectors (AVX-VNNI, or AVX-512 VNNI with VL);
- ``avx2``: ``vpmaddubsw`` (pairs of u8 x s8 products, saturated to int16) then
  ``vpmaddwd`` by 1 (pairs of int16 summed into int32); exact only when no pair can
  saturate, which the caller checks (:data:`AVX2_PAIR_LIMIT`).

``vpdpbusd`` adds four exact u8 x s8 products into each int32 lane with wraparound.
Only variants the host supports are offered (:data:`VARIANTS`); none when numba
compiles for another CPU than the host (``NUMBA_CPU_NAME``) or off x86.
"""

# numba's cache keys an entry by this file's size and time stamp and imports the module the
# entry names: this edit (for the move to asqhw.sim) invalidates entries compiled under the
# old top-level name 'sim'.


from __future__ import annotations

import platform

import llvmlite.binding as llb
import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["VARIANTS", "AVX2_PAIR_LIMIT", "gemm_u8s8"]

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


def _make_block(variant):
    """A numba intrinsic ``(col, wt, p0, c, kk) -> 16 int32``: rows ``c..c+3`` of ``wt`` times rows ``p0..p0+3`` of ``col``.

    ``kk`` must be a multiple of the vector length in bytes (64 or 32); element ``4*r + i``
    is ``sum_k wt[c + r, k] * col[p0 + i, k]`` modulo ``2^32``.
    """
    width = 512 if variant == "vnni512" else 256
    nbytes, nlanes = width // 8, width // 32

    @intrinsic
    def block(typingctx, col, wt, p0, c, kk):
        sig = types.UniTuple(types.int32, 16)(col, wt, p0, c, kk)

        def codegen(context, builder, signature, args):
            colv, wtv, p0v, cv, kkv = args
            ca = context.make_array(signature.args[0])(context, builder, colv)
            wa = context.make_array(signature.args[1])(context, builder, wtv)
            i64, i8, i16, i32 = ir.IntType(64), ir.IntType(8), ir.IntType(16), ir.IntType(32)
            vb, vd = ir.VectorType(i8, nbytes), ir.VectorType(i32, nlanes)
            vw = ir.VectorType(i16, nbytes // 2)
            kt = builder.extract_value(ca.shape, 1)
            kw = builder.extract_value(wa.shape, 1)
            cbase = builder.bitcast(ca.data, i8.as_pointer())
            wbase = builder.bitcast(wa.data, i8.as_pointer())
            aptr = [builder.gep(cbase, [builder.mul(builder.add(p0v, ir.Constant(i64, i)), kt)]) for i in range(4)]
            wptr = [builder.gep(wbase, [builder.mul(builder.add(cv, ir.Constant(i64, r)), kw)]) for r in range(4)]
            mod = builder.module
            if variant.startswith("vnni"):
                dp = cgutils.get_or_insert_function(mod, ir.FunctionType(vd, [vd, vd, vd]),
                                                    f"llvm.x86.avx512.vpdpbusd.{width}")
            else:
                mub = cgutils.get_or_insert_function(mod, ir.FunctionType(vw, [vb, vb]), "llvm.x86.avx2.pmadd.ub.sw")
                mwd = cgutils.get_or_insert_function(mod, ir.FunctionType(vd, [vw, vw]), "llvm.x86.avx2.pmadd.wd")
                ones = ir.Constant(vw, [1] * (nbytes // 2))
            accs = [cgutils.alloca_once_value(builder, ir.Constant(vd, None)) for _ in range(16)]
            with cgutils.for_range_slice(builder, ir.Constant(i64, 0), kkv, ir.Constant(i64, nbytes)) as (k, _):
                av = [builder.load(builder.bitcast(builder.gep(p, [k]), vb.as_pointer()), align=1) for p in aptr]
                wv = [builder.load(builder.bitcast(builder.gep(p, [k]), vb.as_pointer()), align=1) for p in wptr]
                for r in range(4):
                    for i in range(4):
                        acc = accs[4 * r + i]
                        if variant.startswith("vnni"):
                            new = builder.call(dp, [builder.load(acc), builder.bitcast(av[i], vd),
                                                    builder.bitcast(wv[r], vd)])
                        else:
                            pairs = builder.call(mub, [av[i], wv[r]])            # u8 x s8 pairs -> int16
                            new = builder.add(builder.load(acc), builder.call(mwd, [pairs, ones]))
                        builder.store(new, acc)
            red = cgutils.get_or_insert_function(mod, ir.FunctionType(i32, [vd]), f"llvm.vector.reduce.add.v{nlanes}i32")
            vals = [builder.call(red, [builder.load(a)]) for a in accs]
            return context.make_tuple(builder, signature.return_type, vals)

        return sig, codegen

    return block


_block_vnni512 = _make_block("vnni512")
_block_vnni256 = _make_block("vnni256")
_block_avx2 = _make_block("avx2")

# One module-level kernel per variant (numba caches by function: a shared factory would
# give the three the same cache entry). Each compiles only when first called, which
# happens only for a variant in VARIANTS.


@njit(cache=True, nogil=True)
def _gemm_vnni512(wt, col, nq, qb, out, g, cg_out, n0, nbits, t0, t1):
    n_rb, rows, npos, plane, kstride, half, mask = _geometry(wt, out, cg_out, nbits)
    of = out.reshape(-1)
    orow = np.empty(4, np.int64)
    for tile in range(t0, t1):
        qi, c = tile // n_rb, (tile % n_rb) * 4
        _row_offsets(orow, c, rows, cg_out, g, kstride, npos)
        for p0 in range(qi * qb, min(col.shape[0], qi * qb + qb), 4):
            _store16(of, _block_vnni512(col, wt, p0, c, wt.shape[1]), orow, p0, npos, nq, n0, plane, half, mask)


@njit(cache=True, nogil=True)
def _gemm_vnni256(wt, col, nq, qb, out, g, cg_out, n0, nbits, t0, t1):
    n_rb, rows, npos, plane, kstride, half, mask = _geometry(wt, out, cg_out, nbits)
    of = out.reshape(-1)
    orow = np.empty(4, np.int64)
    for tile in range(t0, t1):
        qi, c = tile // n_rb, (tile % n_rb) * 4
        _row_offsets(orow, c, rows, cg_out, g, kstride, npos)
        for p0 in range(qi * qb, min(col.shape[0], qi * qb + qb), 4):
            _store16(of, _block_vnni256(col, wt, p0, c, wt.shape[1]), orow, p0, npos, nq, n0, plane, half, mask)


@njit(cache=True, nogil=True)
def _gemm_avx2(wt, col, nq, qb, out, g, cg_out, n0, nbits, t0, t1):
    n_rb, rows, npos, plane, kstride, half, mask = _geometry(wt, out, cg_out, nbits)
    of = out.reshape(-1)
    orow = np.empty(4, np.int64)
    for tile in range(t0, t1):
        qi, c = tile // n_rb, (tile % n_rb) * 4
        _row_offsets(orow, c, rows, cg_out, g, kstride, npos)
        for p0 in range(qi * qb, min(col.shape[0], qi * qb + qb), 4):
            _store16(of, _block_avx2(col, wt, p0, c, wt.shape[1]), orow, p0, npos, nq, n0, plane, half, mask)


@njit(cache=True, inline="always")
def _geometry(wt, out, cg_out, nbits):
    npos = out.shape[3]
    plane = out.shape[2] * npos
    return (wt.shape[0] // 4, out.shape[0] * cg_out, npos, plane, out.shape[1] * plane,
            np.int64(1) << (nbits - 1), (np.int64(1) << nbits) - 1)


@njit(cache=True, inline="always")
def _row_offsets(orow, c, rows, cg_out, g, kstride, npos):
    """Flat offsets in ``out`` of the GEMM rows ``c .. c+3`` (n = 0, p = 0); -1 for padding rows."""
    for r in range(4):
        row = c + r
        orow[r] = -1 if row >= rows else (row // cg_out) * kstride + (g * cg_out + row % cg_out) * npos


@njit(cache=True, inline="always")
def _store16(of, s, orow, p0, npos, nq, n0, plane, half, mask):
    """Store the 4 x 4 block ``s`` (rows with offsets ``orow``, positions ``p0..p0+3``) wrapped to the width.

    One division per block: the positions are consecutive, so the image index ``n``
    advances at most by the number of image boundaries crossed.
    """
    n = p0 // npos
    p = p0 - n * npos
    for i in range(4):
        if p0 + i >= nq:
            break
        if p == npos:
            n += 1
            p = 0
        e = (n0 + n) * plane + p
        for r in range(4):
            if orow[r] >= 0:
                v = np.uint64(np.int64(s[4 * r + i]))
                of[orow[r] + e] = np.int64((v + np.uint64(half)) & np.uint64(mask)) - half
        p += 1


_GEMMS = {"vnni512": _gemm_vnni512, "vnni256": _gemm_vnni256, "avx2": _gemm_avx2}


def gemm_u8s8(variant):
    """The tile-range GEMM of ``variant`` (same arguments and result as ``sim.kernels.gemm_i16``).

    ``wt`` int8 ``(R4, K)``, ``col`` uint8 ``(Q4, K)`` with ``K`` a multiple of 64. The
    caller proves the int32 bound (and, for ``avx2``, the pair bound) before calling.
    """
    if variant not in VARIANTS:
        raise ValueError(f"SIMD variant {variant!r} is not supported by this CPU (supported: {VARIANTS})")
    return _GEMMS[variant]
