# amaranth: UnusedElaboratable=no
"""The user's testbench (tb/engine/, cocotb): built from the docs and the sidecar, it passes on corpus
cases under Verilator with random stalls, and fails on a changed expected code."""

import importlib.util
import json
from pathlib import Path

import pytest

from asqhw.core.vectors import read_case
from asqhw.hdl.engine.cosim import engine_config
from asqhw.hdl.engine.emit import generate
from asqhw.hdl.engine.program import build_program, pack_layer, shape_of_case

pytestmark = pytest.mark.rtl

ROOT = Path(__file__).resolve().parents[1]
TB = ROOT / "tb" / "engine"
CORPUS = ROOT / "asqhw" / "golden" / "vectors"
DEPTHS = dict(act_depth=4096, term_depth=2048, out_depth=2048, max_channels=32)
# One post4 split grouped build serves these: stride 2 (a gap column between Wp and Wr, which
# the testbench fills with a nonzero code), 7x7 stride 2 with groups, and a linear layer.
CASES = ["post4_split_conv3x3_s2_p1", "post4_split_conv7x7_s2_p3_g2", "post4_split_lin72"]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("engine_tb")
    ecfg = engine_config(read_case(CORPUS / f"{CASES[0]}.npz"), lanes=4, depths=DEPTHS)
    sidecar = generate(ecfg, out)[1]
    return _load("engine_tb_run", TB / "run.py"), sidecar


def test_the_testbench_host_side_equals_the_tools_program(built):
    """host.py, written from the docs, builds the same words as hdl.engine.program."""
    host = _load("engine_tb_host", TB / "host.py")
    side = json.loads(built[1].read_text())
    for name in CASES:
        case = read_case(CORPUS / f"{name}.npz")
        ecfg = engine_config(case, lanes=4, depths=DEPTHS)
        prog = build_program(ecfg, shape_of_case(case), case["x"], case["w"], case["M"], case["B"], case["sh"])
        img = host.build_images(side, *host.read_case(CORPUS / f"{name}.npz"))
        assert img["terms"] == prog.terms and img["params"] == prog.params and img["act"] == prog.act
        assert img["layer"] == pack_layer(ecfg, prog.layer)


@pytest.mark.parametrize("name", CASES)
def test_cocotb_testbench_passes_with_random_stalls(built, name):
    run, sidecar = built
    tests, failed = run.run(sidecar, CORPUS / f"{name}.npz", sim="verilator", stall=0.3, seed=3)
    assert (tests, failed) == (1, 0)


def test_cocotb_testbench_fails_on_a_changed_expected_code(built):
    run, sidecar = built
    tests, failed = run.run(sidecar, CORPUS / f"{CASES[2]}.npz", sim="verilator", mutate=7)
    assert (tests, failed) == (1, 1)
