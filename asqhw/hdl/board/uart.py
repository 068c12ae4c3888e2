"""8N1 UART receiver and transmitter with a fixed baud divisor (docs/board.md).

A bit lasts ``divisor`` clock cycles (``divisor = round(f_clk / baud)``, see
:func:`baud_divisor`). Frames are one start bit (0), eight data bits least significant
first, one stop bit (1); the line idles high.

The receiver synchronises ``rx`` through two flip-flops, waits for a falling edge,
checks the start bit at its middle (``divisor // 2`` cycles after the edge) and then
samples each data bit and the stop bit ``divisor`` cycles apart. A frame whose stop bit
is 0 is dropped and raises ``frame_error`` for one cycle; a byte completed while the
previous one still waits on the stream is dropped and raises ``overrun`` for one cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["baud_divisor", "UARTRx", "UARTTx", "MAX_BAUD_ERROR"]

MAX_BAUD_ERROR = 0.02          # 2 %: an 8N1 receiver samples the stop bit 9.5 bits after the edge


def baud_divisor(clk_hz: int, baud: int) -> int:
    """Clock cycles per bit, ``round(clk_hz / baud)``, checked to be usable.

    Raises
    ------
    ValueError
        If the divisor is below 4 or the achieved rate is off by more than 2 %.
    """
    if not (isinstance(clk_hz, int) and clk_hz > 0 and isinstance(baud, int) and baud > 0):
        raise ValueError(f"clock and baud rate must be positive integers, not {clk_hz!r} and {baud!r}")
    div = (clk_hz + baud // 2) // baud
    if div < 4:
        raise ValueError(f"{baud} baud needs at least 4 cycles per bit; a {clk_hz} Hz clock gives {clk_hz / baud:.2f}")
    err = abs(clk_hz / div - baud) / baud
    if err > MAX_BAUD_ERROR:
        raise ValueError(f"{baud} baud from a {clk_hz} Hz clock is off by {100 * err:.1f} % (divisor {div})")
    return div


def _check_divisor(divisor) -> int:
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 4:
        raise TypeError(f"divisor must be an integer of at least 4, not {divisor!r}")
    return divisor


class UARTRx(wiring.Component):
    """8N1 receiver.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least 4).

    Ports
    -----
    rx : In(1), init 1
        The line (asynchronous; synchronised inside).
    o : Out(stream.Signature(8))
        Received bytes; ``valid`` holds until ``ready``.
    frame_error : Out(1), overrun : Out(1)
        One-cycle pulses when a frame is dropped (stop bit 0, or ``o`` still full).
    """

    def __init__(self, divisor: int):
        self._div = _check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "frame_error": Out(1),
            "overrun": Out(1),
        })

    @property
    def divisor(self) -> int:
        return self._div

    def elaborate(self, platform):
        m = Module()
        div = self._div
        sync1 = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]
        timer = Signal(range(div))
        bits = Signal(range(10))                # bits sampled so far after the start bit
        shift = Signal(8)
        m.d.sync += [self.frame_error.eq(0), self.overrun.eq(0)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):              # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(bits != 8):
                    m.d.sync += [shift.eq((line << 7) | (shift >> 1)), bits.eq(bits + 1),
                                 timer.eq(div - 1)]
                with m.Elif(~line):
                    m.d.sync += self.frame_error.eq(1)
                    m.next = "BREAK"
                with m.Else():
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                    m.next = "IDLE"
            with m.State("BREAK"):              # wait for the line to return high
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least 4).

    Ports
    -----
    i : In(stream.Signature(8))
        Bytes to send; one is taken (``ready``) when the line is idle or on the last cycle
        of a stop bit, so that frames follow back to back, each exactly ``10 * divisor``
        cycles long.
    tx : Out(1), init 1
        The line.
    """

    def __init__(self, divisor: int):
        self._div = _check_divisor(divisor)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divisor(self) -> int:
        return self._div

    def elaborate(self, platform):
        m = Module()
        div = self._div
        timer = Signal(range(div))
        frame = Signal(10, init=0x3FF)          # stop, data[7:0], start; sent from bit 0
        left = Signal(range(11))
        # a new frame may start on the last cycle of the previous stop bit: frames back to back
        m.d.comb += [self.tx.eq(frame[0]), self.i.ready.eq((left == 0) | ((left == 1) & (timer == 0)))]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [frame.eq((1 << 9) | (self.i.payload << 1)), left.eq(10), timer.eq(div - 1)]
        with m.Elif((left != 0) & (timer != 0)):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(left != 0):
            m.d.sync += [frame.eq((1 << 9) | (frame >> 1)), left.eq(left - 1), timer.eq(div - 1)]
        return m
