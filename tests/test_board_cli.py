"""``asqhw bitstream`` and ``asqhw board``: bad input ends in one ``asqhw: error:`` line, before any work."""

from __future__ import annotations


import pytest

from conftest import assert_one_line_error, run
from test_host_driver import tcp_board  # noqa: F401 (a fixture)

BUNDLED = "asqhw/golden/networks/digits_cnn_asq_post4.npz"


def test_bitstream_refuses_to_overwrite_without_force(capsys, tmp_path):
    (tmp_path / "icebreaker.json").write_text("mine")
    code, out, err = run(capsys, "bitstream", "--board", "icebreaker", "--model", BUNDLED, "-o", str(tmp_path))
    assert_one_line_error(code, err, "--force")
    assert (tmp_path / "icebreaker.json").read_text() == "mine"


@pytest.mark.parametrize("argv, fragment", [
    (["--baud", "4000000"], "at least 4 cycles per bit"),
    (["--baud", "2500000"], "off by"),
    (["--seed", "-1"], "--seed"),
    (["--timeout", "0"], "--timeout"),
])
def test_bitstream_refuses_impossible_options(capsys, tmp_path, argv, fragment):
    code, out, err = run(capsys, "bitstream", "--board", "icebreaker", "--model", BUNDLED, "-o", str(tmp_path), *argv)
    assert_one_line_error(code, err, fragment)
    assert list(tmp_path.iterdir()) == []


def test_bitstream_names_the_boards(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        run(capsys, "bitstream", "--board", "arty", "--model", BUNDLED, "-o", str(tmp_path))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "icebreaker" in err and "ulx3s" in err and "orangecrab" in err


def test_bitstream_of_a_missing_model_is_one_line(capsys, tmp_path):
    code, out, err = run(capsys, "bitstream", "--board", "ulx3s", "--model", str(tmp_path / "no.npz"), "-o", str(tmp_path))
    assert_one_line_error(code, err, "no.npz")


@pytest.mark.parametrize("argv, fragment", [
    (["--port", "/nonexistent/ttyUSB9"], "cannot open the serial port"),
    (["--port", "tcp://127.0.0.1"], "tcp://HOST:PORT"),
    (["--port", "/dev/null"], "is not a serial port"),
    (["--port", "/dev/null", "--limit", "0"], "--limit"),
    (["--port", "tcp://127.0.0.1:9", "--timeout", "-1"], "--timeout"),
])
def test_board_run_bad_ports_and_options(capsys, argv, fragment):
    code, out, err = run(capsys, "board", "run", "--model", BUNDLED, *argv)
    assert_one_line_error(code, err, fragment)


def test_board_run_needs_a_port_or_sim(capsys):
    with pytest.raises(SystemExit) as e:
        run(capsys, "board", "run", "--model", BUNDLED)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--port" in err and "--sim" in err


def test_board_run_recognises_a_foreign_board(capsys, tcp_board):
    """A device that speaks the protocol but is not the accelerator (its ID differs) is refused."""
    code, out, err = run(capsys, "board", "run", "--model", BUNDLED, "--limit", "1", "--timeout", "5",
                         "--port", tcp_board)
    assert_one_line_error(code, err, "not an asq-hw accelerator")
