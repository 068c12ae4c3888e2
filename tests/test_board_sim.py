"""The simulated board (asqhw/hdl/board/simboard.py): the whole board top, UART pins included, in
Verilator behind a loopback socket, driven by the unchanged host driver (asqhw/host).

The full figure of issue 14 (32 test images, logits equal to ``asqhw run``'s numba model) is
``asqhw board run --sim --model asqhw/golden/networks/digits_cnn_asq_post4.npz --limit 32 --check``
(docs/board.md); the tests run a few images.
"""

from __future__ import annotations

import json
import random

import pytest

from asqhw.hdl.board import simboard
from asqhw.hdl.board.top import HostLink
from asqhw.host.driver import Board
from asqhw.host.link import open_link
from board_double import ID, REGS, DoubleAccelerator, ref_logits
from conftest import run

BUNDLED = "asqhw/golden/networks/digits_cnn_asq_post4.npz"


@pytest.fixture(scope="module")
def double_board_exe():
    return simboard.build(HostLink(DoubleAccelerator(), divisor=simboard.SIM_DIVISOR, timeout=1 << 20))


@pytest.mark.rtl
def test_driver_classifies_through_the_uart_pins_of_the_simulated_board(double_board_exe):
    rng = random.Random(14)
    with simboard.start(double_board_exe, once=True) as sim, open_link(sim.port, timeout=30) as link:
        board = Board(link, REGS)
        assert board.status() == []
        assert board.read("ID") == ID
        for n in (1, 2, 64, 300):
            codes = [rng.randrange(-128, 128) for _ in range(n)]
            assert board.classify(codes) == ref_logits(codes)
        board.write("SCRATCH", 0x12345678)
        assert board.read("SCRATCH") == 0x12345678
        assert board.read("IMAGES") == 4
        assert board.status() == []


@pytest.mark.rtl
def test_simulated_board_serves_one_connection_after_another(double_board_exe):
    with simboard.start(double_board_exe) as sim:
        for value in (1, 2):
            with open_link(sim.port, timeout=30) as link:
                board = Board(link, REGS)
                board.write("SCRATCH", value)
                assert board.read("SCRATCH") == value


@pytest.mark.rtl
@pytest.mark.slow
def test_board_run_on_the_simulated_board_equals_the_numba_model(capsys):
    code, out, err = run(capsys, "board", "run", "--sim", "--model", BUNDLED, "--limit", "3", "--check", "--json")
    assert code == 0, err
    rec = json.loads(out)
    assert rec["images"] == 3 and rec["check"]["logits_compared"] == 30
    assert rec["check"]["mismatches"] == 0 and rec["check"]["cycle_errors"] == 0
    assert rec["cycles"] == [rec["predicted_cycles"]] * 3


def test_check_names_sample_index_expected_and_actual():
    """The comparison behind --check can fail: one logit changed is reported as such."""
    import numpy as np

    from asqhw.cli.board_cmd import _check
    from asqhw.core.network import read_network
    from asqhw.sim.network import IntNetwork

    net = read_network(BUNDLED)
    codes = net.vectors["vec/input"][:2].reshape(2, -1)
    logits = IntNetwork(net, "auto").run(net.vectors["vec/input"][:2], keep=False)[f"vec/{net.output}"]
    bad = np.array(logits, dtype=np.int64)
    bad[1, 3] += 1
    rec = {"logits": bad.tolist(), "cycles": [5, 5], "predicted_cycles": 5}
    assert not _check(net, codes, rec)
    assert rec["check"]["mismatches"] == 1
    assert rec["check"]["mismatch_list"] == [{"sample": 1, "index": 3, "expected": int(logits[1, 3]),
                                              "actual": int(logits[1, 3]) + 1}]
    rec = {"logits": np.asarray(logits).tolist(), "cycles": [5, 6], "predicted_cycles": 5}
    assert not _check(net, codes, rec) and rec["check"]["cycle_errors"] == 1


@pytest.mark.rtl
@pytest.mark.slow
def test_board_sim_serves_the_network_until_terminated(capsys):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "asqhw.cli", "board", "sim", "--model", BUNDLED],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = None
        for _ in range(5):
            line = proc.stdout.readline()
            found = re.search(r"tcp://127\.0\.0\.1:\d+", line)
            if found:
                port = found.group(0)
                break
        assert port, "no port printed"
        code, out, err = run(capsys, "board", "run", "--port", port, "--model", BUNDLED, "--limit", "1", "--json")
        assert code == 0, err
        assert json.loads(out)["images"] == 1
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stdout.close()
    time.sleep(0.5)
    for pid in children:                         # the simulator went with it
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
