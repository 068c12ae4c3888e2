"""The numba threading layer of the model: TBB (the ``tbb`` wheel), else ``workqueue``; never OpenMP unless asked.

numba's OpenMP layer runs on the same ``libgomp`` as PyTorch; its parallel launches set
that runtime's thread count, so a later PyTorch operation in the same process ran with
the wrong team size (20-155x slower at ``torch.set_num_threads(1)`` on two cores, in most processes)
until ``torch.set_num_threads`` was called again. The TBB layer (when installed) and
numba's own ``workqueue`` do not touch OpenMP; ``workqueue`` is also fork-safe, but does
not support parallel kernels launched concurrently from several Python threads (sim
launches its parallel kernels from the calling thread only; its work-sharing threads
run serial kernels).

TBB also launches a parallel region in microseconds, where ``workqueue`` took about
0.1 ms on a VM (waking idle threads): that decides the speed of small layers. The ``tbb``
wheel installs ``libtbb.so.12`` under ``sys.prefix/lib``, where numba's wheel does not
look (its ``tbbpool`` searches ``numba.libs``); :func:`preload_tbb` loads it first, so
that the loader finds the library by its name when numba picks the layer.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

import numba
from numba.np.ufunc import parallel as _parallel

__all__ = ["PRIORITY", "choose_threading_layer", "preload_tbb"]

PRIORITY = ["tbb", "workqueue", "omp"]


def choose_threading_layer() -> bool:
    """Put OpenMP last in numba's threading-layer priority; True if the choice can still take effect.

    Leaves the choice alone when the user set ``NUMBA_THREADING_LAYER`` or
    ``NUMBA_THREADING_LAYER_PRIORITY``, and returns False when numba's threads
    were already launched in this process (the layer is then fixed).
    """
    if os.environ.get("NUMBA_THREADING_LAYER") or os.environ.get("NUMBA_THREADING_LAYER_PRIORITY"):
        return False
    if _parallel._is_initialized:
        return False
    preload_tbb()
    numba.config.THREADING_LAYER_PRIORITY = list(PRIORITY)
    return True


def preload_tbb() -> str | None:
    """Load the ``tbb`` wheel's ``libtbb.so.12`` (global symbols) if it is installed; its path, or None.

    Only a library of that name under ``sys.prefix/lib`` (where the wheel puts it) is
    loaded; a failure to load leaves numba to fall back to ``workqueue``.
    """
    for path in sorted(glob.glob(os.path.join(sys.prefix, "lib", "libtbb.so.12*"))):
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        return path
    return None
