"""The direct kernels come back from numba's disk cache in a fresh process (asqhw/sim/direct.py).

Each variant's entry points are made by one factory; numba keys a cached closure by its free
variables, so they must be plain values (the variant name), not compiled objects.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asqhw.sim import simd

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import numpy as np
from asqhw import sim
from asqhw.core.params import Datapath
from asqhw.sim import direct, direct_path, layers
variant = sim.simd.VARIANTS[0]
layers.SIMD_MODE = variant
dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split")
rng = np.random.default_rng(0)
x = rng.integers(0, 16, size=(2, 32, 12, 12)).astype(np.int16)
w = rng.integers(0, 8, size=(32, 32, 3, 3)).astype(np.int16)
want = sim.conv2d(x, w, dp, padding=1, method="exact")
for macs in (1 << 62, 0):                                  # one share on this thread, then one per numba thread
    direct_path.DIRECT_SHARE_MACS = macs
    assert np.array_equal(sim.Conv2d(w, dp, padding=1)(x), want)
kernels = (direct.share_kernel(variant), direct.parallel_kernel(variant))
print(sum(len(k.stats.cache_hits) for k in kernels), sum(len(k.stats.cache_misses) for k in kernels))
"""


def hits_and_misses(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    hits, misses = out.stdout.split()
    return int(hits), int(misses)


@pytest.mark.slow
@pytest.mark.skipif(not simd.VARIANTS, reason="no direct kernel on this CPU")
def test_a_fresh_process_loads_both_direct_entry_points_from_the_disk_cache(tmp_path):
    assert hits_and_misses(tmp_path) == (0, 2)              # compiled (and saved) in the first process
    assert hits_and_misses(tmp_path) == (2, 0)              # loaded, not compiled, in the next
