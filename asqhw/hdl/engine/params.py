"""Engine parameters and the bit layouts of its memory words and layer configuration."""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import unsigned
from amaranth.lib import data

from asqhw.core.errors import UserError
from asqhw.core.params import MAX_ACC_BITS, Datapath
from asqhw.core.validate import check_bool, check_int

__all__ = ["EngineConfig", "ENGINE_SCHEDULES", "M_BITS", "B_BITS", "SH_BITS"]

ENGINE_SCHEDULES = ("any", "grouped", "grouped1")
M_BITS, B_BITS, SH_BITS = 16, 48, 6
COUNT_FIELD_BITS = 16


def _bitlen(v: int) -> int:
    return max(int(v).bit_length(), 1)


@dataclass(frozen=True)
class EngineConfig:
    """One engine build: datapath, array size, widths and memory depths.

    Parameters
    ----------
    dp : Datapath
    lanes : int
        Output positions computed in parallel (a power of two, 1..256); one weight term per
        cycle is broadcast to all lanes. The activation buffer has one bank per lane.
    acc_bits : int
        Accumulator width (wraps modulo ``2^acc_bits``, docs/datapath.md section 5).
    out_bits, out_signed :
        Output code format (section 6).
    schedule : {"any", "grouped", "grouped1"}
        ``any``: each lane has the product lane of ``dp.arch`` (``hdl.lanes``).
        ``grouped``: terms sorted offline by shift; each lane adds ``+-A`` and doubles its
        accumulator(s) when the shift level drops (Horner); for ``uniform`` the weight
        is split into its magnitude bits (bit planes). Not for ``lut``.
        ``grouped1``: post split only; ``grouped`` with one accumulator per lane: a tile
        issues the odd-exponent terms (``acc_1``), parks their sum, then the even ones
        (``acc_0``); the shadow bank receives both sums (docs/engine.md).
    act_depth, term_depth, out_depth, max_channels : int
        Depth of the activation buffer (codes), the term memory (entries), the output
        buffer (codes) and the channel memory (output channels).
    rq_pipeline : int
        Register stages of the drain's requantiser, 1..3 (``hdl.requant``); each one adds
        a cycle to the end of a run and shortens the requantiser's critical path.
    term_rom : tuple of int
        Initial contents of the term memory (empty: none). With it the engine has a
        ``term_base`` port added to every term address, so one build holds the terms of
        several layers and a run needs no ``w_in`` load (``hdl.accel``).
    """

    dp: Datapath
    lanes: int
    acc_bits: int
    out_bits: int
    out_signed: bool
    schedule: str = "any"
    act_depth: int = 4096
    term_depth: int = 4096
    out_depth: int = 4096
    max_channels: int = 64
    rq_pipeline: int = 1
    term_rom: tuple = ()

    def __post_init__(self):
        if not isinstance(self.dp, Datapath):
            raise TypeError(f"dp must be a Datapath, not {self.dp!r}")
        check_int("lanes", self.lanes, 1, 256)
        if self.lanes & (self.lanes - 1):
            raise UserError(f"lanes must be a power of two (the activation buffer has one bank "
                            f"per lane), not {self.lanes}")
        check_int("accumulator bits", self.acc_bits, 2, MAX_ACC_BITS)
        check_bool("out_signed", self.out_signed)
        check_int("output bits", self.out_bits, 2, 16 if self.out_signed else 15)
        if self.schedule not in ENGINE_SCHEDULES:
            raise UserError(f"engine schedule must be one of {', '.join(ENGINE_SCHEDULES)}, "
                            f"not {self.schedule!r}")
        if self.schedule == "grouped" and self.dp.arch == "lut":
            raise UserError("schedule 'grouped' needs uniform, pot or post split weights, not post lut")
        if self.schedule == "grouped1" and self.dp.arch != "split":
            raise UserError(f"schedule 'grouped1' needs post split weights, not {self.dp.fmt} {self.dp.arch}")
        for name in ("act_depth", "term_depth", "out_depth", "max_channels"):
            check_int(name, getattr(self, name), 1, 1 << 24)
        check_int("rq_pipeline", self.rq_pipeline, 1, 3)
        if self.act_depth % self.lanes:
            raise UserError(f"act_depth must be a multiple of lanes ({self.lanes}), not {self.act_depth}")
        if not isinstance(self.term_rom, tuple) or len(self.term_rom) > self.term_depth:
            raise UserError(f"term_rom must be a tuple of at most term_depth ({self.term_depth}) words")

    # --- derived widths ----------------------------------------------------
    @property
    def grouped(self) -> bool:
        """Terms sorted by shift level with Horner doubling (``grouped`` or ``grouped1``)."""
        return self.schedule in ("grouped", "grouped1")

    @property
    def one_acc(self) -> bool:
        """``grouped1``: one accumulator per lane, the two sums issued one after the other."""
        return self.schedule == "grouped1"

    @property
    def n_acc(self) -> int:
        return self.dp.n_acc

    @property
    def act_addr_bits(self) -> int:
        """Width of an activation address (and of a term's offset)."""
        return _bitlen(self.act_depth - 1)

    @property
    def payload_bits(self) -> int:
        """Bits of a term entry besides its offset.

        ``any``: the weight code as stored. ``grouped``: ``neg``, ``zero``, ``dbl``
        (and ``k`` for split) at bits 0, 1, 2 (3). ``grouped1``: ``neg``, ``zero``, ``dbl``,
        ``park`` at bits 0..3.
        """
        if self.grouped:
            return 4 if self.dp.arch == "split" else 3
        return self.dp.storage_bits

    @property
    def term_bits(self) -> int:
        """Width of one term entry: payload in the low bits, activation offset above."""
        return self.payload_bits + self.act_addr_bits

    @property
    def count_bits(self) -> int:
        """Width of a channel's term count (1..term_depth)."""
        return _bitlen(self.term_depth)

    @property
    def lane_bits(self) -> int:
        """``log2(lanes)``: the bank-select bits of an activation address."""
        return self.lanes.bit_length() - 1

    @property
    def bank_depth(self) -> int:
        """Rows of each activation bank."""
        return self.act_depth // self.lanes

    @property
    def chan_bits(self) -> int:
        return _bitlen(self.max_channels - 1)

    @property
    def param_bits(self) -> int:
        """Channel memory word: count, then ``M[k]`` (16 each), ``B`` (48), ``sh`` (6)."""
        return self.count_bits + self.n_acc * M_BITS + B_BITS + SH_BITS

    def param_layout(self) -> data.StructLayout:
        return data.StructLayout({"count": unsigned(self.count_bits),
                                  "m": unsigned(self.n_acc * M_BITS),
                                  "b": unsigned(B_BITS), "sh": unsigned(SH_BITS)})

    def layer_layout(self) -> data.StructLayout:
        """The ``layer`` input port: the run's loop bounds and address steps (held while busy)."""
        return data.StructLayout({
            "n_chan": unsigned(_bitlen(self.max_channels)),
            "n_img": unsigned(COUNT_FIELD_BITS),
            "h_out": unsigned(COUNT_FIELD_BITS),
            "tiles_x": unsigned(COUNT_FIELD_BITS),
            "last_lanes": unsigned(_bitlen(self.lanes)),
            "row_step": unsigned(self.act_addr_bits),
            "img_step": unsigned(self.act_addr_bits),
        })

    @property
    def out_shape(self):
        from amaranth.hdl import signed
        return signed(self.out_bits) if self.out_signed else unsigned(self.out_bits)

    def tag(self) -> str:
        """Module-name tag of every parameter that changes the design."""
        dp = self.dp
        t = f"{dp.fmt}_{dp.arch}_a{dp.a_bits}{'s' if dp.a_signed else 'u'}_w{dp.w_bits}"
        if dp.fmt != "uniform":
            t += f"e{dp.e_max}f{dp.frac_bits}"
        t += (f"_l{self.lanes}_acc{self.acc_bits}_{self.schedule}_o{self.out_bits}"
              f"{'s' if self.out_signed else 'u'}_d{self.act_depth}x{self.term_depth}x"
              f"{self.out_depth}x{self.max_channels}")
        if self.rq_pipeline != 1:
            t += f"_rq{self.rq_pipeline}"
        if self.term_rom:
            import hashlib

            t += "_trom" + hashlib.sha256(repr(self.term_rom).encode()).hexdigest()[:8]
        return t

    def memory_bits(self) -> dict:
        """Bits of each on-chip memory (the activation buffer is ``lanes`` banks of ``act_depth/lanes``)."""
        return {"activation": self.act_depth * self.dp.a_bits,
                "term": self.term_depth * self.term_bits,
                "channel": self.max_channels * self.param_bits,
                "output": self.out_depth * self.out_bits}
