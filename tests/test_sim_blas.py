"""BLAS threads (asqhw/sim/blas.py): set through threadpoolctl on whatever BLAS numpy loaded, not a file name."""

import threading

import numba
import pytest
from threadpoolctl import threadpool_info

from asqhw.sim import blas, workshare
from asqhw.sim.network import set_threads


def blas_threads():
    """The thread count of every BLAS loaded in this process, as threadpoolctl reports it."""
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def two_blas_threads():
    before = blas_threads()
    blas.set_threads(2)
    yield
    for lib, n in zip(blas.controller().lib_controllers, before):
        lib.set_num_threads(n)


class FakeBlas:
    """A BLAS that is not numpy's OpenBLAS: only its thread count is modelled."""

    internal_api, user_api = "mkl", "blas"

    def __init__(self):
        self.threads = 4

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, n):
        self.threads = n


class FakeController:
    def __init__(self, libs):
        self.lib_controllers = libs


def test_the_blas_numpy_loaded_is_the_one_controlled():
    loaded = [lib["filepath"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert loaded, "numpy loads a BLAS"
    assert [lib.filepath for lib in blas.controller().lib_controllers] == loaded
    assert blas.limitable()


def test_a_shared_gemm_call_runs_every_blas_on_one_thread_and_restores_its_count(two_blas_threads):
    seen = []
    workshare.run_shares(lambda s: seen.append(blas_threads()), 2, threading.Barrier(2))
    assert seen == [[1] * len(blas_threads())] * 2
    assert blas_threads() == [2] * len(seen[0])                        # the count before the call, again


def test_set_threads_reaches_the_loaded_blas(two_blas_threads):
    set_threads(1)
    try:
        assert blas_threads() == [1] * len(blas_threads())
    finally:
        set_threads(numba.config.NUMBA_NUM_THREADS)


def test_a_blas_other_than_numpys_openblas_is_limited_too(monkeypatch):
    lib = FakeBlas()
    monkeypatch.setattr(blas, "controller", lambda: FakeController([lib]))
    monkeypatch.setattr(workshare, "MIN_SHARE_MACS", 0)
    assert workshare.shares(1) == numba.get_num_threads()             # not silently one thread
    seen = []
    workshare.run_shares(lambda s: seen.append(lib.threads), 2, threading.Barrier(2))
    assert seen == [1, 1] and lib.threads == 4


def test_without_a_blas_to_limit_a_gemm_call_runs_as_one_share(monkeypatch):
    monkeypatch.setattr(blas, "controller", lambda: FakeController([]))
    monkeypatch.setattr(workshare, "MIN_SHARE_MACS", 0)
    assert not blas.limitable() and workshare.shares(1 << 40) == 1
