"""The board top: UART receiver and transmitter, the host bridge and the accelerator.

:class:`HostLink` is everything between the two UART pins (it is also the top of the
simulated board); :class:`BoardTop` puts it on a board's clock, UART pins and LEDs
through an amaranth-boards platform.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io, stream, wiring
from amaranth.lib.wiring import In, Out

from .boards import BoardSpec
from .bridge import CODE_LAYOUT, LOGIT_LAYOUT, HostBridge
from .uart import UARTRx, UARTTx, baud_divisor

__all__ = ["ACCEL_SIGNATURE", "check_accelerator", "HostLink", "BoardTop"]

#: The accelerator's host interface (issue 14): input codes in, logits out, a register port.
ACCEL_SIGNATURE = wiring.Signature({
    "s_in": In(stream.Signature(CODE_LAYOUT)),
    "m_out": Out(stream.Signature(LOGIT_LAYOUT)),
    "csr_addr": In(6),
    "csr_w_en": In(1),
    "csr_w_data": In(32),
    "csr_r_en": In(1),
    "csr_r_data": Out(32),
})


def check_accelerator(accel) -> None:
    """Raise TypeError unless ``accel`` is a component with (at least) :data:`ACCEL_SIGNATURE`'s members."""
    sig = getattr(accel, "signature", None)
    members = getattr(sig, "members", None)
    if not isinstance(accel, wiring.Component) or members is None:
        raise TypeError(f"accelerator must be a wiring.Component, not {accel!r}")
    for name, member in ACCEL_SIGNATURE.members.items():
        if name not in members or members[name] != member:
            raise TypeError(f"accelerator port {name!r} must be {member!r}, not "
                            f"{members[name] if name in members else 'missing'!r}")


class HostLink(wiring.Component):
    """UART pins to the accelerator: receiver, bridge, transmitter, accelerator.

    Parameters
    ----------
    accel : wiring.Component
        The accelerator (:data:`ACCEL_SIGNATURE`).
    divisor : int
        Clock cycles per UART bit.
    timeout : int
        The bridge's argument timeout in cycles.

    Ports
    -----
    rx : In(1), init 1 ; tx : Out(1), init 1
        The UART pins.
    busy : Out(1)
        A command is in progress.
    error : Out(1)
        A sticky bridge flag is set (read and cleared by ``S``).
    """

    def __init__(self, accel, *, divisor: int, timeout: int = 1 << 24):
        check_accelerator(accel)
        self.accel = accel
        self.uart_rx = UARTRx(divisor)
        self.uart_tx = UARTTx(divisor)
        self.bridge = HostBridge(timeout=timeout)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1), "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx, m.submodules.uart_tx = self.uart_rx, self.uart_tx
        m.submodules.bridge, m.submodules.accel = self.bridge, self.accel
        b, a = self.bridge, self.accel
        wiring.connect(m, self.uart_rx.o, b.rx)
        wiring.connect(m, b.tx, self.uart_tx.i)
        wiring.connect(m, b.codes, a.s_in)
        wiring.connect(m, a.m_out, b.logits)
        m.d.comb += [
            self.uart_rx.rx.eq(self.rx), self.tx.eq(self.uart_tx.tx),
            b.rx_overrun.eq(self.uart_rx.overrun), b.rx_frame_error.eq(self.uart_rx.frame_error),
            a.csr_addr.eq(b.csr_addr), a.csr_w_en.eq(b.csr_w_en), a.csr_w_data.eq(b.csr_w_data),
            a.csr_r_en.eq(b.csr_r_en), b.csr_r_data.eq(a.csr_r_data),
            self.busy.eq(b.busy), self.error.eq(b.flags != 0),
        ]
        return m


class BoardTop(Elaboratable):
    """:class:`HostLink` on a board: its default clock, its UART pins, a busy and an error LED.

    Parameters
    ----------
    accel : wiring.Component
    board : BoardSpec
    baud : int
        UART rate; the divisor is ``round(clk / baud)`` (:func:`~.uart.baud_divisor`).
    """

    def __init__(self, accel, board: BoardSpec, *, baud: int = 115200):
        self.board = board
        self.baud = baud
        self.divisor = baud_divisor(board.clk_hz, baud)
        self.link = HostLink(accel, divisor=self.divisor, timeout=board.clk_hz)      # 1 s

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
        m.d.comb += [link.rx.eq(rx.i), tx.o.eq(link.tx)]
        busy_res, busy_num = self.board.busy_led
        err_res, err_num = self.board.error_led
        if (busy_res, busy_num) == (err_res, err_num):          # one RGB LED: green busy, red error
            rgb = platform.request(busy_res, busy_num, dir="-")
            busy_port, error_port = rgb.g, rgb.r
        else:
            busy_port = platform.request(busy_res, busy_num, dir="-")
            error_port = platform.request(err_res, err_num, dir="-")
        m.submodules.busy_led = busy = io.Buffer("o", busy_port)
        m.submodules.error_led = error = io.Buffer("o", error_port)
        m.d.comb += [busy.o.eq(link.busy), error.o.eq(link.error)]
        return m
