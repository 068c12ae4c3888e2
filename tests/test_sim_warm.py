"""The ahead-of-time compile step that `make setup` runs (asqhw/sim/warm.py)."""

import subprocess
import sys

from asqhw.sim import warm


def test_warm_runs_every_format_and_the_bundled_network():
    assert warm.warm("asqhw/golden/networks/digits_cnn_asq_post4.npz") > 0
    assert {(dp.fmt, dp.arch) for dp in warm.FORMATS} == {("uniform", "mul"), ("pot", "shift"), ("post", "split"),
                                                          ("post", "lut")}


def test_warm_is_a_module_command_that_says_what_it_did():
    out = subprocess.run([sys.executable, "-m", "asqhw.sim.warm"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("asqhw: numba kernels compiled and cached in ") and out.returncode == 0


def test_warm_refuses_a_missing_network_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "asqhw.sim.warm", str(tmp_path / "none.npz")], capture_output=True,
                         text=True)
    assert out.returncode == 2 and out.stderr.startswith("asqhw: error: ") and len(out.stderr.splitlines()) == 1
    assert "Traceback" not in out.stderr
