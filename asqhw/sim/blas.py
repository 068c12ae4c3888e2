"""The thread count of the BLAS that numpy loaded, through ``threadpoolctl`` (any BLAS it knows).

The float GEMM path runs one share of a layer per thread, each with single-threaded BLAS
calls (:func:`single_threaded`); ``asqhw run --threads N`` sets the BLAS thread count with
numba's (:func:`set_threads`). ``threadpoolctl`` finds every BLAS loaded in the process
(OpenBLAS, numpy's bundled ``scipy_openblas``, MKL, BLIS, FlexiBLAS) by its ``user_api``
``"blas"``, not by a file name. When it finds none, :func:`limitable` is False and the
GEMM path runs one share and leaves BLAS its own threads.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import lru_cache

import numpy as np  # noqa: F401 - loads numpy's BLAS before the controller looks for it
from threadpoolctl import ThreadpoolController

__all__ = ["controller", "limitable", "single_threaded", "set_threads"]

_LOCK = threading.Lock()     # one limit at a time: the BLAS thread count is process-wide


@lru_cache(maxsize=1)
def controller() -> ThreadpoolController:
    """The BLAS libraries loaded in this process (``user_api == "blas"``), found once, when first asked."""
    return ThreadpoolController().select(user_api="blas")


def limitable() -> bool:
    """True when a BLAS is loaded whose thread count can be set."""
    return len(controller().lib_controllers) > 0


@contextmanager
def single_threaded():
    """Every BLAS on one thread inside the block, its previous counts restored after; one block at a time."""
    libs = controller().lib_controllers
    with _LOCK:
        before = [lib.get_num_threads() for lib in libs]
        for lib in libs:
            lib.set_num_threads(1)
        try:
            yield
        finally:
            for lib, n in zip(libs, before):
                lib.set_num_threads(n)


def set_threads(n: int) -> None:
    """Every BLAS on ``n`` threads from now on (process-wide)."""
    with _LOCK:
        for lib in controller().lib_controllers:
            lib.set_num_threads(n)
