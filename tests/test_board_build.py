"""Bitstreams for the boards (asqhw/hdl/board/build.py, boards.py, network.py): the flow, the fit
verdicts and the throughput arithmetic of docs/board.md."""

from __future__ import annotations

import pytest

from asqhw.hdl.board.boards import BOARDS, board_spec
from asqhw.hdl.board.build import _utilisation_from_log, fit_advice
from asqhw.hdl.board.network import images_per_second, link_bytes, link_cycles
from board_double import DoubleAccelerator
from conftest import assert_one_line_error, run

BUNDLED = "asqhw/golden/networks/digits_cnn_asq_post4.npz"


def test_every_board_has_a_uart_and_its_clock():
    for board in BOARDS.values():
        platform = board.make_platform()
        assert platform.default_clk_frequency == board.clk_hz
        assert platform.lookup("uart", 0) is not None


def test_link_cycles_follow_the_protocol_byte_count():
    # digits: 64 codes in (I, count, codes, L), 10 logits out (I, L, 5 bytes each)
    assert link_bytes(64, 10) == (68, 52)
    d = 104
    assert link_cycles(64, 10, d, 86_400) == 10 * d * 67 + 86_400 + 10 * d * 50
    # a run shorter than the three overlapped bytes costs those bytes
    assert link_cycles(64, 10, d, 5) == 10 * d * 67 + 30 * d + 10 * d * 50
    assert images_per_second(12e6, 120_000) == 100.0


def test_utilisation_is_read_from_the_nextpnr_log():
    log = "Info: Device utilisation:\nInfo: \t   ICESTORM_LC:  6001/ 5280   113%\nInfo: \t  ICESTORM_RAM:    12/   30    40%\n"
    assert _utilisation_from_log(log) == {"ICESTORM_LC": (6001, 5280), "ICESTORM_RAM": (12, 30)}
    assert fit_advice({"ICESTORM_LC": (6001, 5280)}).startswith("ICESTORM_LC 6001/5280 (+721, 114 %)")
    assert "--no-dsp" in fit_advice({"MULT18X18D": (31, 28)})


def test_the_digits_network_does_not_fit_the_up5k_and_the_error_says_by_how_much(capsys, tmp_path):
    code, out, err = run(capsys, "bitstream", "--board", "icebreaker", "--model", BUNDLED, "-o", str(tmp_path), "-q")
    assert_one_line_error(code, err, "does not fit the iCEBreaker")
    from asqhw.core.network import read_network
    from asqhw.hdl.accel.fit import fit
    from asqhw.hdl.board.network import network_program

    need = fit(network_program(read_network(BUNDLED), 8), "ice40up5k")["brams"]
    assert need > 30 and f"need {need} block RAMs (+{need - 30} over the 30" in err and "SPRAM" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.rtl
@pytest.mark.slow
def test_a_bitstream_for_the_icebreaker(tmp_path):
    from asqhw.hdl.board.build import build_bitstream

    res = build_bitstream(DoubleAccelerator(), board_spec("icebreaker"), cache=tmp_path)
    assert res["ext"] == "bin" and b"\x7e\xaa\x99\x7e" in res["bitstream"][:64]     # iCE40 preamble
    u = res["utilisation"]
    assert set(u) >= {"lut", "ff", "logic_cells", "bram", "spram", "dsp"}
    assert 0 < u["lut"]["used"] <= u["lut"]["available"] == 5280
    assert res["fmax_mhz"] > 0 and res["timing_met"] == (res["fmax_mhz"] >= 12.0)
    assert res["divisor"] == 104 and "set_io uart_0__rx__io 6" in res["constraints"][1]
    again = build_bitstream(DoubleAccelerator(), board_spec("icebreaker"), cache=tmp_path)
    assert again["cached"] and again["bitstream"] == res["bitstream"]


def test_unknown_board_is_a_user_error():
    from asqhw.core.errors import UserError

    with pytest.raises(UserError, match="icebreaker, orangecrab, ulx3s"):
        board_spec("arty")
