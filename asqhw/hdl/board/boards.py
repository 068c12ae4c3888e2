"""The boards a bitstream is built for: platform (amaranth-boards), clock, UART pins, LEDs, tools.

One :class:`BoardSpec` per board, as data (docs/board.md, "Boards"). The OrangeCrab has no
UART on its USB connector; its UART is added on the Feather header pins ``0`` (rx, FPGA
input) and ``1`` (tx, FPGA output), for a 3.3 V USB-serial adapter.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from asqhw.core.errors import UserError

__all__ = ["BoardSpec", "BOARDS", "board_spec"]


@dataclass(frozen=True)
class BoardSpec:
    """One board.

    Attributes
    ----------
    name : str
        Name on the command line.
    title : str
        Board and FPGA part.
    platform : str
        ``module:Class`` of the amaranth-boards platform.
    family : str
        ``ice40`` or ``ecp5``.
    clk_hz : int
        The board clock the design runs at (its default clock, no PLL).
    nextpnr : tuple of str
        Device and package options of nextpnr.
    busy_led, error_led : tuple
        ``(resource, number)`` of the LED showing the bridge busy / an error flag.
    uart_note : str
        Where the UART is.
    capacity : dict
        Resource kind -> number on the part (``lut``, ``bram``, ``spram``, ``dsp``).
    """

    name: str
    title: str
    platform: str
    family: str
    clk_hz: int
    nextpnr: tuple
    busy_led: tuple
    error_led: tuple
    uart_note: str
    capacity: dict

    def make_platform(self):
        """A new amaranth-boards platform object (with the UART added where the board lacks one)."""
        module, cls = self.platform.split(":")
        try:
            mod = importlib.import_module(module)
        except ImportError:
            raise UserError("amaranth-boards is not installed: pip install -e '.[rtl]' "
                            "(or pip install amaranth-boards)") from None
        platform = getattr(mod, cls)()
        if self.name == "orangecrab":
            from amaranth.build import Attrs
            from amaranth_boards.resources import UARTResource

            platform.add_resources([UARTResource(0, rx="0", tx="1", conn=("io", 0),
                                                 attrs=Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP"))])
        return platform


BOARDS = {b.name: b for b in (
    BoardSpec("icebreaker", "iCEBreaker (Lattice iCE40UP5K-SG48)", "amaranth_boards.icebreaker:ICEBreakerPlatform",
              "ice40", 12_000_000, ("--up5k", "--package", "sg48"), ("led_g", 0), ("led_r", 0),
              "FTDI FT2232H channel B (the second USB serial port): FPGA pins 6 (rx) and 9 (tx)",
              {"lut": 5280, "bram": 30, "spram": 4, "dsp": 8}),
    BoardSpec("orangecrab", "OrangeCrab r0.2 (Lattice ECP5 LFE5U-25F-8MG285C)",
              "amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform", "ecp5", 48_000_000,
              ("--25k", "--package", "CSFBGA285", "--speed", "8"), ("rgb_led", 0), ("rgb_led", 0),
              "Feather header pin 0 (rx, FPGA ball N17) and pin 1 (tx, ball M18): a 3.3 V USB-serial adapter",
              {"lut": 24288, "bram": 56, "spram": 0, "dsp": 28}),
    BoardSpec("ulx3s", "ULX3S (Lattice ECP5 LFE5U-85F-6BG381C)", "amaranth_boards.ulx3s:ULX3S_85F_Platform",
              "ecp5", 25_000_000, ("--85k", "--package", "CABGA381", "--speed", "6"), ("led", 0), ("led", 1),
              "FTDI FT231X on the US1 USB port: FPGA balls M1 (rx) and L4 (tx)",
              {"lut": 83640, "bram": 208, "spram": 0, "dsp": 156}),
)}


def board_spec(name: str) -> BoardSpec:
    """The :class:`BoardSpec` called ``name``; UserError naming the choices otherwise."""
    if name not in BOARDS:
        raise UserError(f"--board must be one of {', '.join(BOARDS)}, not {name!r}")
    return BOARDS[name]
