# amaranth: UnusedElaboratable=no
"""Random valid/ready stalls on the engine's streams in the Verilator co-simulation (conform --stall)."""

import numpy as np
import pytest

from asqhw.core.vectors import read_case
from pathlib import Path
from asqhw.hdl.engine.cosim import build_engine, engine_config, read_y_stream, run_engine
from asqhw.hdl.engine.program import shape_of_case

CORPUS = Path(__file__).resolve().parents[1] / "asqhw" / "golden" / "vectors"


@pytest.mark.rtl
def test_stalls_keep_outputs_bit_exact_and_the_run_at_the_model():
    case = read_case(CORPUS / "post4_split_lin72.npz")
    ecfg = engine_config(case, lanes=4)      # the build conform uses (cached once)
    exe, sidecar = build_engine(ecfg)
    io = {}
    y, cycles, est, missing, _ = run_engine(ecfg, exe, sidecar, shape_of_case(case), case["x"], case["w"],
                                            case["M"], case["B"], case["sh"], stall=0.4, seed=5, io=io)
    assert missing == 0 and np.array_equal(y, case["y"])
    assert cycles == est                                   # stalls fall outside start .. done
    assert io["load"] > io["load_model"] and io["out"] > io["out_model"]   # stalls did happen


@pytest.mark.rtl
def test_conform_stall_reports_how_stalls_are_counted(capsys):
    from asqhw.cli.main import main

    rc = main(["conform", "--rtl", "--unit", "engine", "--lanes", "4", "--stall", "-q",
               str(CORPUS / "post4_split_lin72.npz")])
    out = capsys.readouterr().out
    assert rc == 0 and "PASS: bit-exact" in out and "cycle model off in 0 cases" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("stalls (p = 0.25)"))
    assert "no stall" in line and "start to done" in line


def test_read_y_stream_takes_codes_only_with_ready():
    ready = np.array([1, 1, 0, 1, 0, 0, 1, 1, 1])
    codes, last = read_y_stream([2, 3, 4, 5, 6], [7, 7, 8, 8, 8], ready, done=1)
    assert codes.tolist() == [7, 8] and last == 6


def test_read_y_stream_refuses_a_payload_changed_while_stalled():
    ready = np.array([1, 1, 0, 1, 1])
    with pytest.raises(RuntimeError, match="changed its payload while ready was low"):
        read_y_stream([2, 3], [7, 9], ready, done=1)


def test_read_y_stream_refuses_valid_dropped_before_the_last_code():
    ready = np.ones(8, dtype=np.int64)
    with pytest.raises(RuntimeError, match="not valid in every cycle"):
        read_y_stream([2, 4], [7, 9], ready, done=1)
