"""Work sharing on Python threads: serial kernels that release the GIL, one range or share per thread.

The exact kernel, the portable int path, the GEMM path and the operations between a
network's layers run serial numba kernels (``nogil=True``) on a range of their items;
:func:`in_ranges` and :func:`run_shares` run one range on the calling thread and the
others on a pool of ``numba.get_num_threads() - 1`` workers (docs/sim.md, "Threads").
Calls below :data:`MIN_SHARE_MACS` multiply-adds run on the calling thread alone.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numba

from . import blas

__all__ = ["MIN_SHARE_MACS", "in_ranges", "shares", "run_shares"]

MIN_SHARE_MACS = 1 << 22      # multiply-adds (or elements) per call below which one thread runs the whole call

_POOL = None          # (workers, ThreadPoolExecutor) of the ranges beyond the calling thread
_POOL_LOCK = threading.Lock()


def _pool(workers):
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] < workers:
            _POOL = (workers, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sim-share"))
        return _POOL[1]


def in_ranges(fn, n_items: int, work: int) -> None:
    """Run ``fn(r0, r1)`` over ``0 .. n_items`` cut into one range per thread (``numba.get_num_threads()``).

    The kernels release the GIL, so the ranges run in parallel on this thread and pool
    workers; below MIN_SHARE_MACS of ``work`` (multiply-adds) or with one thread, one call.
    The first error of a range is raised after every range has ended.
    """
    n = min(numba.get_num_threads(), n_items)
    if n <= 1 or work < MIN_SHARE_MACS:
        fn(0, n_items)
        return
    cut = [n_items * s // n for s in range(n + 1)]
    pool = _pool(n - 1)
    futures = [pool.submit(fn, cut[s], cut[s + 1]) for s in range(1, n)]
    try:
        fn(cut[0], cut[1])
    finally:
        errors = [f.exception() for f in futures]
    for e in errors:
        if e is not None:
            raise e


def shares(macs: int) -> int:
    """Threads that share one GEMM-path call: ``numba.get_num_threads()``, 1 for small calls.

    Also 1 when no BLAS thread count can be set (:func:`sim.blas.limitable`): the shares
    need single-threaded BLAS calls, so the call is left to the BLAS's own threads.
    """
    n = numba.get_num_threads()
    if n <= 1 or macs < MIN_SHARE_MACS or not blas.limitable():
        return 1
    return n


def run_shares(fn, n: int, barrier: threading.Barrier) -> None:
    """Run ``fn(0) .. fn(n-1)`` on ``n`` threads (this one and pool workers), BLAS single-threaded.

    With ``n == 1`` BLAS keeps its own threads. A failing share aborts ``barrier`` so
    that the others stop too; the first error is raised.
    """
    if n == 1:
        fn(0)
        return

    def guarded(s):
        try:
            fn(s)
        except BaseException:
            barrier.abort()
            raise

    pool = _pool(n - 1)
    errors = []
    with blas.single_threaded():        # one shared call at a time: the BLAS thread count is process-wide
        futures = [pool.submit(guarded, s) for s in range(1, n)]
        try:
            guarded(0)
        except BaseException as e:  # noqa: BLE001 - re-raised below after the workers stop
            errors.append(e)
        for f in futures:
            e = f.exception()
            if e is not None:
                errors.append(e)
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if errors:
        raise (real or errors)[0]
