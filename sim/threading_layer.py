"""The numba threading layer of the model: never OpenMP unless the user asks for it.

numba's OpenMP layer runs on the same ``libgomp`` as PyTorch; its parallel launches set
that runtime's thread count, so a later PyTorch operation in the same process ran with
the wrong team size (20-155x slower at ``torch.set_num_threads(1)`` on two cores, in most processes)
until ``torch.set_num_threads`` was called again. The TBB layer (when installed) and
numba's own ``workqueue`` do not touch OpenMP; ``workqueue`` is also fork-safe, but does
not support parallel kernels launched concurrently from several Python threads (sim
launches its parallel kernels from the calling thread only; its work-sharing threads
run serial kernels).
"""

from __future__ import annotations

import os

import numba
from numba.np.ufunc import parallel as _parallel

__all__ = ["PRIORITY", "choose_threading_layer"]

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
    numba.config.THREADING_LAYER_PRIORITY = list(PRIORITY)
    return True
