"""The board's 8N1 UART (asqhw/hdl/board/uart.py, docs/board.md): bit timing, every byte, errors."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from asqhw.hdl.board.uart import UARTRx, UARTTx, baud_divisor
from test_board_bridge import refusal

pytestmark = pytest.mark.rtl            # the Amaranth simulator


def frame_bits(byte):
    """The ten line levels of one 8N1 frame: start, data LSB first, stop."""
    return [0] + [byte >> i & 1 for i in range(8)] + [1]


def simulate(dut, *benches, background=()):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for b in background:
        sim.add_testbench(b, background=True)
    for b in benches:
        sim.add_testbench(b)
    sim.run()


def rtl_tx_line(data, div):
    """The tx level on every cycle while ``data`` is sent back to back (valid held high)."""
    dut = UARTTx(div)
    trace = []

    async def bench(ctx):
        for byte in data:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, byte)
            while True:
                ready = ctx.get(dut.i.ready)
                await ctx.tick()
                trace.append(ctx.get(dut.tx))
                if ready:
                    break
        ctx.set(dut.i.valid, 0)
        for _ in range(10 * div + 2):
            await ctx.tick()
            trace.append(ctx.get(dut.tx))

    simulate(dut, bench)
    return trace


def ref_tx_line(data, div):
    """What the line must be: each frame bit for exactly ``div`` cycles, frames back to back, then idle."""
    line = [b for byte in data for b in frame_bits(byte) for _ in range(div)]
    return line


def rtl_rx(levels_per_cycle, div, ready=lambda i: True):
    """Bytes, frame errors and overruns the receiver reports for a line driven cycle by cycle."""
    dut = UARTRx(div)
    got, errors = [], {"frame": 0, "overrun": 0}

    async def drive(ctx):
        for i, level in enumerate(levels_per_cycle + [1] * 3):
            ctx.set(dut.rx, level)
            ctx.set(dut.o.ready, int(i >= len(levels_per_cycle) or ready(i)))
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()
            errors["frame"] += ctx.get(dut.frame_error)
            errors["overrun"] += ctx.get(dut.overrun)

    simulate(dut, drive)
    return got, errors


def line_for(data, period, *, idle=3, gap=0.0):
    """Cycle-by-cycle line levels of ``data`` sent with a bit period of ``period`` cycles (may be fractional)."""
    bits = [1] * idle
    for byte in data:
        bits += frame_bits(byte) + [1] * int(gap)
    bits += [1] * 3
    n = int(len(bits) * period) + 1
    return [bits[min(int(t / period), len(bits) - 1)] for t in range(n)]


def test_divisor_is_the_rounded_clock_over_baud():
    assert baud_divisor(12_000_000, 115_200) == 104
    assert baud_divisor(25_000_000, 115_200) == 217
    assert baud_divisor(12_000_000, 3_000_000) == 4


@pytest.mark.parametrize("clk, baud, words", [(12_000_000, 4_000_000, "at least 4"),
                                              (12_000_000, 2_500_000, "off by"),
                                              (0, 115_200, "positive")])
def test_divisor_refuses_unusable_rates(clk, baud, words):
    with pytest.raises(ValueError, match=words):
        baud_divisor(clk, baud)


@pytest.mark.parametrize("cls", [UARTRx, UARTTx])
@pytest.mark.parametrize("bad", [3, 0, 4.0, True])
def test_components_refuse_a_divisor_below_four(cls, bad):
    assert "divisor" in refusal(cls, bad)


def test_tx_sends_every_byte_with_exact_bit_timing():
    data = list(range(256))
    line = rtl_tx_line(data, 4)
    ref = ref_tx_line(data, 4)
    assert line[:len(ref)] == ref
    assert set(line[len(ref):]) == {1}


def test_tx_bit_timing_at_an_odd_divisor():
    data = [0x00, 0xFF, 0x55, 0xA5, 0x01, 0x80]
    ref = ref_tx_line(data, 13)
    assert rtl_tx_line(data, 13)[:len(ref)] == ref


def test_tx_catches_a_wrong_bit():
    """The reference comparison above can fail: a frame with one bit flipped differs."""
    line = rtl_tx_line([0x5A], 4)
    wrong = ref_tx_line([0x5B], 4)
    assert line[:len(wrong)] != wrong


def test_rx_receives_every_byte():
    data = list(range(256))
    got, errors = rtl_rx(line_for(data, 4), 4)
    assert got == data and errors == {"frame": 0, "overrun": 0}


@pytest.mark.parametrize("skew", [-0.02, 0.02])
def test_rx_tolerates_two_percent_baud_error(skew):
    rng = random.Random(14)
    data = [rng.randrange(256) for _ in range(40)]
    got, errors = rtl_rx(line_for(data, 16 * (1 + skew)), 16)
    assert got == data and errors == {"frame": 0, "overrun": 0}


def test_rx_drops_a_frame_without_stop_bit_and_recovers():
    bits = [1, 1] + frame_bits(0x3C)[:9] + [0, 0, 1, 1] + frame_bits(0xC3) + [1, 1]
    line = [b for b in bits for _ in range(6)]
    got, errors = rtl_rx(line, 6)
    assert got == [0xC3] and errors == {"frame": 1, "overrun": 0}


def test_rx_ignores_a_glitch_shorter_than_half_a_bit():
    line = [1] * 10 + [0] * 2 + [1] * 20 + line_for([0x96], 8)
    got, errors = rtl_rx(line, 8)
    assert got == [0x96] and errors["frame"] == 0


def test_rx_overrun_keeps_the_first_byte():
    data = [0x11, 0x22, 0x33]
    line = line_for(data, 5)
    got, errors = rtl_rx(line, 5, ready=lambda i: False)
    assert got == [0x11] and errors == {"frame": 0, "overrun": 2}


def test_tx_into_rx_loopback_random_bytes():
    rng = random.Random(5)
    data = [rng.randrange(256) for _ in range(100)]
    line = rtl_tx_line(data, 5)
    got, errors = rtl_rx([1] * 4 + line, 5)
    assert got == data and errors == {"frame": 0, "overrun": 0}
