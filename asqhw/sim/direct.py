"""Direct convolution on byte planes: the int path's kernel for uint8 activation terms and int8 weights.

No im2col. The activation terms ``g_t(A)`` of one group are written once as a zero-padded
channels-last byte tensor (:func:`planes`, ``xt[n, y, x, (kx, j, t)]``; for narrow inputs the
``K_w`` taps of a row are folded into the channels); the weights are packed once per layer
as int8 vectors of ``VL`` output rows times 4 fan-in bytes. A tile of ``J*VL`` output rows and
``RB`` output positions keeps ``J*RB`` vector accumulators in registers: for every kernel tap
and every 4 bytes of fan-in it loads ``J`` weight vectors, broadcasts 4 activation bytes per
position and adds ``u8 x s8`` dot products of 4 into every int32 lane (docs/sim.md, "Direct
convolution kernels"). No horizontal reduction: each lane is one output row. Results go to an
int32 position-major buffer, which :func:`store_rows` wraps to the accumulator width and
stores into the ``(n_acc, N, C, P)`` int64 accumulators.

Variants (the host's, ``sim.simd.VARIANTS``): ``vnni512`` (``vpdpbusd`` zmm, 16 lanes),
``vnni256`` (``vpdpbusd`` ymm, 8 lanes), ``avx2`` (``vpmaddubsw``, ``vpaddw`` of a bounded
number of them, ``vpmaddwd`` by 1, ``vpaddd``; 8 lanes; the caller keeps every int16 sum
below ``2^15``: ``sim.simd.AVX2_PAIR_LIMIT``, spread bytes, ``m16``).

A call runs as shares (:class:`Share`, stacked in :class:`Shares`): one on the calling thread
(:func:`share_kernel`) or one per numba thread (:func:`parallel_kernel`). One source serves
every variant: :func:`share` takes the variant as a string constant, which only the tile
intrinsic and :func:`tile_shape` read at compile time; the two entry points of each variant
are made by one factory whose only free variable is that string (docs/sim.md, "One source,
cached").
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

__all__ = ["SHAPES", "DirectWeights", "Share", "Shares", "tile", "tile_shape", "share", "planes", "store_rows",
           "requant_rows", "share_kernel", "parallel_kernel", "FOLD_BELOW", "CHUNK_BYTES"]

# (vector bits, weight vectors J, positions RB) per variant: J*RB accumulators + J weights + a
# broadcast stay within the register file (32 vector registers with AVX-512, 16 with AVX2 only)
SHAPES = {"vnni512": (512, 2, 12), "vnni256": (256, 2, 6), "avx2": (256, 2, 4)}
FOLD_BELOW = 32      # fold the K_w taps of a row into the channels when a pixel has fewer term bytes
CHUNK_BYTES = 256 << 10   # positions per chunk: the chunk's int32 results stay near this size (L2)


@intrinsic
def tile(typingctx, variant, xt, wp, offs, taps, q0, wofs, kc4, m16, buf, bofs, brow):
    """One tile into ``buf``, with the instructions of ``variant`` (a string constant; see the module docstring).

    ``(variant, xt, wp, offs, taps, q0, wofs, kc4, m16, buf, bofs, brow)``: ``xt`` uint8 (flat),
    ``wp`` int8 (flat), ``offs`` int64 byte offsets in ``xt`` of each position's first tap,
    ``taps`` int64 byte offsets of the taps, ``q0`` first position of the tile, ``wofs``
    byte offset of the tile's weights, ``kc4`` 4-byte fan-in groups per tap, ``buf`` int32
    (flat), ``bofs`` element offset of the tile's first result, ``brow`` buffer row length.
    Result ``(r, j, lane)`` goes to ``buf[bofs + r*brow + j*VL + lane]``. ``avx2`` adds the
    int16 pair sums of up to ``m16`` consecutive 4-byte groups in int16 lanes before widening
    them (``m16`` times the largest pair sum must stay below ``2^15``); VNNI ignores ``m16``.
    Typed only for a literal ``variant``: each variant is its own compiled code.
    """
    if not isinstance(variant, types.StringLiteral) or variant.literal_value not in SHAPES:
        return None
    name = variant.literal_value
    width, nj, rb = SHAPES[name]
    vl = width // 32
    vbytes = vl * 4
    sig = types.none(variant, xt, wp, offs, taps, q0, wofs, kc4, m16, buf, bofs, brow)


    def codegen(context, builder, signature, args):
        _, xtv, wpv, offv, tapv, q0v, wofv, kc4v, m16v, bufv, bofv, browv = args
        arr = [context.make_array(signature.args[i])(context, builder, a)
               for i, a in ((1, xtv), (2, wpv), (3, offv), (4, tapv), (9, bufv))]
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        vd, vb, vw = ir.VectorType(i32, vl), ir.VectorType(i8, vbytes), ir.VectorType(ir.IntType(16), vl * 2)
        xbase = builder.bitcast(arr[0].data, i8.as_pointer())
        wbase = builder.bitcast(arr[1].data, i8.as_pointer())
        obase = builder.bitcast(arr[2].data, i64.as_pointer())
        tbase = builder.bitcast(arr[3].data, i64.as_pointer())
        bbase = builder.bitcast(arr[4].data, i32.as_pointer())
        ntaps = builder.extract_value(arr[3].shape, 0)
        mod = builder.module
        if name.startswith("vnni"):
            dp = cgutils.get_or_insert_function(mod, ir.FunctionType(vd, [vd, vd, vd]),
                                                f"llvm.x86.avx512.vpdpbusd.{width}")
        else:
            mub = cgutils.get_or_insert_function(mod, ir.FunctionType(vw, [vb, vb]), "llvm.x86.avx2.pmadd.ub.sw")
            mwd = cgutils.get_or_insert_function(mod, ir.FunctionType(vd, [vw, vw]), "llvm.x86.avx2.pmadd.wd")
            ones = ir.Constant(vw, [1] * (vl * 2))
        pix = [builder.gep(xbase, [builder.load(builder.gep(obase, [builder.add(q0v, ir.Constant(i64, r))]))])
               for r in range(rb)]
        accs = [cgutils.alloca_once_value(builder, ir.Constant(vd, None)) for _ in range(nj * rb)]
        halves = [] if name.startswith("vnni") else [cgutils.alloca_once_value(builder, ir.Constant(vw, None))
                                                        for _ in range(nj * rb)]
        splat = ir.Constant(ir.VectorType(i32, vl), [0] * vl)
        wstep = builder.mul(kc4v, ir.Constant(i64, nj * vbytes))
        with cgutils.for_range(builder, ntaps) as tl:
            toff = builder.load(builder.gep(tbase, [tl.index]))
            wt = builder.add(wofv, builder.mul(tl.index, wstep))
            def group(c, sums, add):
                """The products of 4-byte group ``c`` of this tap added into ``sums`` by ``add``."""
                koff = builder.add(toff, builder.mul(c, ir.Constant(i64, 4)))
                wo = builder.add(wt, builder.mul(c, ir.Constant(i64, nj * vbytes)))
                wptr = [builder.gep(wbase, [builder.add(wo, ir.Constant(i64, j * vbytes))]) for j in range(nj)]
                wv = [builder.load(builder.bitcast(q, vd.as_pointer()), align=1) for q in wptr]
                for r in range(rb):
                    a = builder.load(builder.bitcast(builder.gep(pix[r], [koff]), i32.as_pointer()), align=1)
                    av = builder.shuffle_vector(builder.insert_element(ir.Constant(vd, ir.Undefined), a,
                                                                       ir.Constant(i32, 0)),
                                                ir.Constant(vd, ir.Undefined), splat)
                    for j in range(nj):
                        add(sums[j * rb + r], av, wv[j])

            if name.startswith("vnni"):
                def dot(acc, av, w):
                    builder.store(builder.call(dp, [builder.load(acc), av, w]), acc)

                with cgutils.for_range(builder, kc4v) as cl:
                    group(cl.index, accs, dot)
            else:
                def pairs(acc, av, w):                          # int16 lanes: wrapping adds, bounded by m16
                    p = builder.call(mub, [builder.bitcast(av, vb), builder.bitcast(w, vb)])
                    builder.store(builder.add(builder.load(acc), p), acc)

                def widened(acc, av, w):                        # m16 = 1: every pair sum widened at once
                    p = builder.call(mub, [builder.bitcast(av, vb), builder.bitcast(w, vb)])
                    builder.store(builder.add(builder.load(acc), builder.call(mwd, [p, ones])), acc)

                one = builder.icmp_signed("==", m16v, ir.Constant(i64, 1))
                with builder.if_else(one) as (then, otherwise):
                    with then:
                        with cgutils.for_range(builder, kc4v) as cl:
                            group(cl.index, accs, widened)
                    with otherwise:
                        with cgutils.for_range_slice(builder, ir.Constant(i64, 0), kc4v, m16v) as (cb, _):
                            for h in halves:
                                builder.store(ir.Constant(vw, None), h)
                            over = builder.icmp_signed(">", builder.add(cb, m16v), kc4v)
                            cend = builder.select(over, kc4v, builder.add(cb, m16v))
                            with cgutils.for_range_slice(builder, cb, cend, ir.Constant(i64, 1)) as (c, _):
                                group(c, halves, pairs)
                            for acc, h in zip(accs, halves):
                                wide = builder.call(mwd, [builder.load(h), ones])
                                builder.store(builder.add(builder.load(acc), wide), acc)
        for r in range(rb):
            row = builder.add(bofv, builder.mul(browv, ir.Constant(i64, r)))
            for j in range(nj):
                ptr = builder.gep(bbase, [builder.add(row, ir.Constant(i64, j * vl))])
                builder.store(builder.load(accs[j * rb + r]), builder.bitcast(ptr, vd.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


def tile_shape(variant: str) -> tuple[int, int]:
    """``(RB, J*VL)`` of a tile of ``variant``: its output positions and output rows."""
    width, nj, rb = SHAPES[variant]
    return rb, nj * (width // 32)


@overload(tile_shape)
def _tile_shape_constant(variant):
    if isinstance(variant, types.StringLiteral):
        rb, rows = tile_shape(variant.literal_value)
        return lambda variant: (rb, rows)
    return None


@njit(cache=True, nogil=True, inline="always")
def share(variant, s, src, sh, wt, st):
    """Share ``s`` of a call, start to end, with the tiles of ``variant`` (a string constant).

    ``src`` the activations of :func:`planes`; ``sh`` :attr:`Shares.arrays` (the per-share
    arguments stacked); ``wt = (wp, kc4, m16, wblk)`` the group's packed weights, its 4-byte
    groups per tap, the ``avx2`` int16 group count and the weight bytes per row block; ``st =
    (out, y, rq, lo, hi, cg_out, nbits, nbase)`` the store (images counted from ``nbase``).
    Makes the planes of the share's segments (:func:`planes`), then per chunk of ``chunk_qt``
    position tiles the tiles of its row blocks ``ob0[s] .. ob1[s] - 1`` into ``buf[s]`` and
    :func:`store_rows` of their rows into ``out``, or, when ``y`` is not empty,
    :func:`requant_rows` of their channels into ``y`` (``out`` is then not written).
    Inlined into each entry point (numba IR): compiled once in each, never on its own.
    """
    segs, nseg, xt, offs, taps, n_qt, chunk_qt, ob0, ob1, q0, nq, buf, wpa = sh
    wp, kc4, m16, wblk = wt
    out, y, rq, lo, hi, cg_out, nbits, nbase = st
    rb, rows_blk = tile_shape(variant)
    _planes_of(src, segs[s], nseg[s], nbase, xt[s], wpa, kc4 * 4)
    bs = buf[s]
    brow = bs.shape[1]
    xf, bf, of, nt, o0, o1 = xt[s], bs.reshape(-1), offs[s], n_qt[s], ob0[s], ob1[s]
    npos = y.shape[2] if y.size else out.shape[3]
    rows = (rq.shape[2] - 2 if y.size else out.shape[0]) * cg_out
    qs = q0[s] + nbase * npos
    for qa in range(0, nt, chunk_qt):
        for ob in range(o0, o1):
            for qt in range(qa, min(nt, qa + chunk_qt)):
                tile(variant, xf, wp, of, taps, qt * rb, ob * wblk, kc4, m16, bf,
                     (qt - qa) * rb * brow + ob * rows_blk, brow)
        cnt = min(nq[s] - qa * rb, chunk_qt * rb)
        if y.size:
            requant_rows(bs, y, src[5], cg_out, qs + qa * rb, cnt, nbits, o0 * rows_blk, min(rows, o1 * rows_blk), rq,
                         lo, hi)
        else:
            store_rows(bs, out, src[5], cg_out, qs + qa * rb, cnt, nbits, o0 * rows_blk, min(rows, o1 * rows_blk))


_PRANGE_ONLY = {"prange": True, "comprehension": False, "setitem": False, "reduction": False, "numpy": False,
                "stencil": False, "fusion": False, "inplace_binop": False}    # no other parallel transform


def _entry_points(variant):
    """The two compiled entry points of ``variant``, both around :func:`share`: serial and parallel.

    ``variant`` is their only free variable, a string, so numba types it as a constant and
    keys their on-disk cache by its value (a free variable that is a compiled object would
    be pickled with an identity of its process, and never found again). :func:`share` is
    inlined into each: a separately compiled share would be optimised and compiled again
    in every entry point that links it (measured: twice the serial entry point's compile time).
    """
    @njit(cache=True, nogil=True)
    def serial(s, src, sh, wt, st):
        share(variant, s, src, sh, wt, st)

    @njit(cache=True, nogil=True, parallel=_PRANGE_ONLY)
    def parallel(src, sh, wt, st):
        for s in prange(sh[0].shape[0]):
            share(variant, np.int64(s), src, sh, wt, st)

    return serial, parallel


_KERNELS = {variant: _entry_points(variant) for variant in SHAPES}   # each compiles on its first call only


def share_kernel(variant: str):
    """``f(s, src, sh, wt, st)``: :func:`share` ``s`` of ``variant`` on the calling thread, the GIL released."""
    return _KERNELS[variant][0]


def parallel_kernel(variant: str):
    """``f(src, sh, wt, st)``: every :func:`share` of ``variant``, one per numba thread (a ``prange``).

    With the TBB threading layer a launch costs microseconds, against about 0.1 ms for
    waking an idle Python thread on a VM.
    """
    return _KERNELS[variant][1]


@njit(cache=True, nogil=True)
def _planes_of(src, segs, nseg, nbase, xt, wpa, kc):
    """:func:`planes` of a share's first ``nseg`` segments ``(n, oy_a, oy_b, byte offset, rows, first row)``."""
    for i in range(nseg):
        n, base, rows, y0 = nbase + segs[i, 0], segs[i, 3], segs[i, 4], segs[i, 5]
        seg = xt[base:base + rows * wpa * kc].reshape(rows, wpa, kc)
        planes(src, n, y0, seg)


@njit(cache=True, nogil=True)
def planes(src, n, y0, xt):
    """Byte planes of image ``n``, group ``g``: ``xt[r, c, (kx*cg_in + j)*n_t + t] = g8[t, A - a0]``.

    ``src = (x, g8, gpk, identity, a0, g, cg_in, pad, fold, suby, subx)``: the int16 codes
    ``x`` ``(N, C_in, H, W)``, the term table ``g8`` ``(n_t, n_a)`` uint8 and its packed form.

    ``A = x[n, g*cg_in + j, (y0 + r)*suby - pad, c*subx + kx - pad]`` for ``kx < fold``; 0
    outside the input (every ``g_t`` maps code 0 to 0) and in the bytes
    ``fold*cg_in*n_t ..`` (fan-in padding). ``xt`` is ``(rows, W_p, KC)``. ``identity``: the
    single term is ``g(A) = A`` (codes in 0 .. 255), copied. ``gpk[A - a0]`` holds the
    ``n_t`` bytes of a code little-endian: for ``n_t = 4`` (``lut``) they are written from one
    table read (LLVM merges the four byte stores); pixels are written in order, channels
    innermost (a copy goes channel by channel instead, reading input rows). Runs on the
    calling thread with the GIL released.
    """
    x, g8, gpk, identity, a0, g, cg_in, pad, fold, suby, subx = src
    rows, wpa, kc = xt.shape
    n_t = g8.shape[0]
    c_in, h, wd = x.shape[1], x.shape[2], x.shape[3]
    used = fold * cg_in * n_t
    xf = x.reshape(-1)
    tf = xt.reshape(-1)
    ukc, hw = np.uint64(kc), np.uint64(h * wd)
    ch0 = np.uint64((n * c_in + g * cg_in) * h * wd)
    for r in range(rows):
        base = np.uint64(r) * np.uint64(wpa) * ukc
        iy = (y0 + r) * suby - pad
        if iy < 0 or iy >= h:
            for i in range(np.uint64(wpa) * ukc):
                tf[base + i] = 0
            continue
        if used < kc:
            for xp in range(np.uint64(wpa)):
                for i in range(np.uint64(used), ukc):
                    tf[base + xp * ukc + i] = 0
        for kx in range(fold):
            lo = min(wpa, max(0, (pad - kx + subx - 1) // subx))      # xp*subx + kx - pad inside 0 .. W-1
            hi = max(lo, min(wpa, (wd - 1 + pad - kx) // subx + 1))
            c0 = np.uint64(kx * cg_in * n_t)
            span = np.uint64(cg_in * n_t)
            for xp in range(np.uint64(wpa)):
                if xp < lo or xp >= hi:
                    for i in range(span):
                        tf[base + xp * ukc + c0 + i] = 0
            if identity:                                              # a copy: channels outermost reads rows
                for j in range(np.uint64(cg_in)):
                    d = base + np.uint64(lo) * ukc + c0 + j
                    src = ch0 + j * hw + np.uint64(iy * wd) + np.uint64(lo * subx + kx) - np.uint64(pad)
                    for _ in range(np.uint64(hi - lo)):
                        tf[d] = np.uint8(xf[src])
                        d += ukc
                        src += np.uint64(subx)
                continue
            for xp in range(np.uint64(lo), np.uint64(hi)):
                d = base + xp * ukc + c0
                src = ch0 + np.uint64(iy * wd) + xp * np.uint64(subx) + np.uint64(kx) - np.uint64(pad)
                if n_t == 4:                                           # LLVM merges the four byte stores
                    for j in range(np.uint64(cg_in)):
                        v = gpk[np.uint64(xf[src + j * hw] - a0)]
                        e = d + j * np.uint64(4)
                        tf[e] = np.uint8(v & np.uint64(255))
                        tf[e + np.uint64(1)] = np.uint8((v >> np.uint64(8)) & np.uint64(255))
                        tf[e + np.uint64(2)] = np.uint8((v >> np.uint64(16)) & np.uint64(255))
                        tf[e + np.uint64(3)] = np.uint8((v >> np.uint64(24)) & np.uint64(255))
                else:
                    for j in range(np.uint64(cg_in)):
                        av = np.uint64(xf[src + j * hw] - a0)
                        for t in range(np.uint64(n_t)):
                            tf[d + j * np.uint64(n_t) + t] = g8[t, av]


@njit(cache=True, nogil=True)
def store_rows(buf, out, g, cg_out, q0, nq, nbits, r0, r1):
    """``out[k, n, g*cg_out + c, p] = wrap_nbits(buf[q - q0, r])``, rows ``r = k*cg_out + c`` in ``r0 .. r1 - 1``.

    ``q = n*P + p`` runs over ``q0 .. q0 + nq - 1``.

    ``buf`` int32 ``(Q, R)`` holds exact sums (``|S| < 2^31``): for ``nbits >= 32`` the wrap
    is the identity, else it is computed in uint64. Blocks of 64 positions keep the cache
    lines they read in the L1 cache while the rows advance.
    """
    nb, c_all, npos = out.shape[1], out.shape[2], out.shape[3]
    brow = np.uint64(buf.shape[1])
    bf = buf.reshape(-1)
    of = out.reshape(-1)
    half = np.uint64(1) << np.uint64(nbits - 1)
    mask = (np.uint64(1) << np.uint64(nbits)) - np.uint64(1)
    narrow = nbits < 32
    q = q0
    while q < q0 + nq:
        n = q // npos
        p = q - n * npos
        cnt = min(64, npos - p, q0 + nq - q)
        for r in range(r0, r1):
            k, c = r // cg_out, g * cg_out + r % cg_out
            dst = np.uint64(((k * nb + n) * c_all + c) * npos + p)
            src = np.uint64(q - q0) * brow + np.uint64(r)
            if narrow:
                for i in range(np.uint64(cnt)):
                    v = np.uint64(np.int64(bf[src + i * brow]))
                    of[dst + i] = np.int64((v + half) & mask) - np.int64(half)
            else:
                for i in range(np.uint64(cnt)):
                    of[dst + i] = bf[src + i * brow]
        q += cnt


@njit(cache=True, nogil=True)
def requant_rows(buf, y, g, cg_out, q0, nq, nbits, r0, r1, rq, lo, hi):
    """The layer requantisation of docs/datapath.md section 11 fused into the store (no int64 accumulators).

    ``y[n, g*cg_out + c, p] = clamp((sum_k rq[n, C, k] * acc_k + rq[n, C, n_acc] + 2^(sh-1)) >> sh,
    lo, hi)`` with ``C = g*cg_out + c``, ``sh = rq[n, C, n_acc + 1]``, ``acc_k =
    wrap_nbits(buf[q - q0, k*cg_out + c])``, for the positions ``q = n*P + p`` in ``q0 .. q0 +
    nq - 1`` and the channels whose rows all lie in ``r0 .. r1 - 1`` (``c`` from ``r0`` to
    ``min(r1, cg_out)``: with two accumulators the caller gives every row). ``rq`` holds the
    per-sample multipliers ``M_n``, the bias and the shift: ``|M_n| < 2^16``, ``|acc| <= 2^39``,
    so every sum fits int64, as in ``sim.netops.requant_layer``.
    """
    nb, c_all, npos = y.shape
    n_acc = rq.shape[2] - 2
    brow = buf.shape[1]
    half = np.uint64(1) << np.uint64(nbits - 1)
    mask = (np.uint64(1) << np.uint64(nbits)) - np.uint64(1)
    q = q0
    while q < q0 + nq:
        n = q // npos
        p = q - n * npos
        cnt = min(64, npos - p, q0 + nq - q)
        for c in range(r0, min(r1, cg_out)):
            ch = g * cg_out + c
            s = rq[n, ch, n_acc + 1]
            rnd = (np.int64(1) << (s - 1)) if s >= 1 else np.int64(0)
            bias = rq[n, ch, n_acc]
            for i in range(cnt):
                t = bias
                for k in range(n_acc):
                    v = np.uint64(np.int64(buf[q - q0 + i, k * cg_out + c]))
                    t += rq[n, ch, k] * (np.int64((v + half) & mask) - np.int64(half))
                r = (t + rnd) >> s
                y[n, ch, p + i] = lo if r < lo else (hi if r > hi else r)
        q += cnt


class Share:
    """One thread's part of a call: output rows ``(n, oy)`` ``R0 ..`` as image segments, row blocks ``ob0 .. ob1 - 1``.

    A call is cut by output rows (positions) or, when it has few positions, by row blocks
    (every share then makes the same planes, and reads only its own weights).

    ``segs`` ``(n, oy_a, oy_b, plane byte offset, plane rows, first plane row)``; ``offs``
    the byte offsets in the share's planes of each position's first tap (padded to whole
    tiles), ``n_qt`` tiles, ``q0`` first global position ``n*P + p``, ``nq`` positions;
    the tiles run in chunks of ``chunk_qt`` (results near CHUNK_BYTES, cache resident).
    """

    def __init__(self, dw, r0, r1, ho, wo, ob0=0, ob1=None):
        self.ob0, self.ob1 = ob0, dw.n_ob if ob1 is None else ob1
        sty, stx = dw.sty, dw.stx
        wpa = (wo - 1) * stx + dw.ktaps_x
        self.wpa, self.q0, self.nq = wpa, r0 * wo, (r1 - r0) * wo
        self.segs, offs, base = [], [], 0
        r = r0
        while r < r1:
            n, oa = divmod(r, ho)
            ob = min(ho, oa + r1 - r)
            rows = (ob - oa - 1) * sty + dw.kh
            self.segs.append((n, oa, ob, base, rows, oa * sty))
            oy = np.arange(ob - oa)[:, None]
            ox = np.arange(wo)[None, :]
            offs.append((base + (oy * sty * wpa + ox * stx) * dw.kc).reshape(-1))
            base += rows * wpa * dw.kc
            r += ob - oa
        self.plane_bytes = base
        self.seg_array = np.array(self.segs, dtype=np.int64).reshape(-1, 6)
        self.n_qt = (self.nq + dw.rb - 1) // dw.rb
        self.chunk_qt = max(1, CHUNK_BYTES // (dw.rb * dw.n_ob * dw.rows_per_block * 4))
        self.offs = np.zeros(self.n_qt * dw.rb, dtype=np.int64)
        self.offs[:self.nq] = np.concatenate(offs)
        ky = np.arange(dw.kh)[:, None]
        kx = np.arange(dw.ktaps_x)[None, :]
        self.taps = ((ky * wpa + kx) * dw.kc).reshape(-1).astype(np.int64)


class DirectWeights:
    """The weights of one layer packed for the direct kernel of one variant, and the layer's geometry rules.

    ``codes`` per group ``(C_g, C_in/G * K_h * K_w)`` weight-code indices (fan-in order
    ``(j, ky, kx)``), ``v8`` int8 ``(n_t, n_acc, n_w)`` the term weights (every used value fits).
    """

    def __init__(self, variant, codes, v8, cg_in, kh, kw, stride):
        width, self.nj, self.rb = SHAPES[variant]
        self.variant, self.vl = variant, width // 32
        self.rows_per_block = self.nj * self.vl
        n_t, n_acc, _ = v8.shape
        self.n_t, self.kh, self.kw, self.cg_in = n_t, kh, kw, cg_in
        self.fold = kw if cg_in * n_t < FOLD_BELOW and kw > 1 else 1
        # the planes sample every stride-th row and column of a 1x1 kernel, and every stride-th
        # column when the taps of a row are folded; the tiles step by the rest of the stride
        self.suby = stride if kh == kw == 1 else 1
        self.subx = stride if kh == kw == 1 or self.fold > 1 else 1
        self.sty, self.stx = stride // self.suby, stride // self.subx
        self.ktaps_x = 1 if self.fold > 1 else kw
        self.kc = (self.fold * cg_in * n_t + 3) // 4 * 4
        self.kc4 = self.kc // 4
        cg_out = codes[0].shape[0]
        self.rows = n_acc * cg_out
        self.n_ob = (self.rows + self.rows_per_block - 1) // self.rows_per_block
        ntaps = kh * self.ktaps_x
        self.wblk = ntaps * self.kc * self.rows_per_block
        self.packed = [self._pack(c, v8, cg_out) for c in codes]

    def _pack(self, codes, v8, cg_out):
        n_t, n_acc = v8.shape[0], v8.shape[1]
        c4 = codes.reshape(cg_out, self.cg_in, self.kh, self.kw)
        vals = v8[:, :, c4]                                   # (n_t, n_acc, C_g, j, ky, kx)
        w = vals.transpose(1, 2, 4, 5, 3, 0).reshape(self.rows, self.kh, self.kw, self.cg_in * n_t)
        if self.fold > 1:                                     # channels (kx, j, t), one tap per row
            w = w.reshape(self.rows, self.kh, 1, self.kw * self.cg_in * n_t)
        full = np.zeros((self.n_ob * self.rows_per_block, self.kh, self.ktaps_x, self.kc), dtype=np.int8)
        full[:self.rows, :, :, :w.shape[3]] = w
        pk = full.reshape(self.n_ob, self.nj, self.vl, self.kh * self.ktaps_x, self.kc4, 4)
        return np.ascontiguousarray(pk.transpose(0, 3, 4, 1, 2, 5)).reshape(-1)


class Shares:
    """The shares of one call geometry stacked for :func:`share` (buffers included, kept between calls).

    ``segs`` ``(S, max segments, 6)`` with ``nseg`` ``(S,)`` used, ``xt`` ``(S, bytes)``, ``offs``
    ``(S, positions)``, ``buf`` ``(S, rows, R)``, and ``n_qt``, ``ob0``, ``ob1``, ``q0``, ``nq`` ``(S,)``;
    ``arrays`` the tuple :func:`share` takes, ``(segs, nseg, xt, offs, taps, n_qt, chunk_qt, ob0, ob1,
    q0, nq, buf, wpa)``.
    """

    def __init__(self, dw, shares):
        n = len(shares)
        self.shares = shares
        self.segs = np.zeros((n, max(len(sh.segs) for sh in shares), 6), dtype=np.int64)
        self.offs = np.zeros((n, max(sh.offs.size for sh in shares)), dtype=np.int64)
        for i, sh in enumerate(shares):
            self.segs[i, :len(sh.segs)] = sh.seg_array
            self.offs[i, :sh.offs.size] = sh.offs
        col = lambda name: np.array([getattr(sh, name) for sh in shares], dtype=np.int64)  # noqa: E731
        self.nseg = np.array([len(sh.segs) for sh in shares], dtype=np.int64)
        self.n_qt, self.ob0, self.ob1, self.q0, self.nq = (col(k) for k in ("n_qt", "ob0", "ob1", "q0", "nq"))
        self.chunk_qt = shares[0].chunk_qt
        self.wpa, self.taps = shares[0].wpa, shares[0].taps
        self.xt = np.empty((n, max(sh.plane_bytes for sh in shares)), dtype=np.uint8)
        self.buf = np.empty((n, self.chunk_qt * dw.rb, dw.n_ob * dw.rows_per_block), dtype=np.int32)
        self.arrays = (self.segs, self.nseg, self.xt, self.offs, self.taps, self.n_qt, self.chunk_qt, self.ob0,
                       self.ob1, self.q0, self.nq, self.buf, self.wpa)
