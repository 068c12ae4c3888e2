"""Datapath parameters of docs/datapath.md section 1, validated, with derived facts."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError
from .validate import check_choice, check_int

__all__ = ["Datapath", "ARCHS", "FORMATS", "MAX_ACC_BITS"]

FORMATS = ("uniform", "pot", "post")
ARCHS = {"uniform": ("mul",), "pot": ("shift",), "post": ("lut", "split")}
MAX_ACC_BITS = 40


@dataclass(frozen=True)
class Datapath:
    """One validated datapath configuration (everything but the layer shape).

    ``e_max`` and ``frac_bits`` may be None to take the spec's defaults.
    """

    fmt: str
    a_bits: int
    w_bits: int
    arch: str | None = None
    a_signed: bool = False
    e_max: int | None = None
    frac_bits: int | None = None

    def __post_init__(self):
        check_choice("weight format", self.fmt, FORMATS)
        arch = self.arch or ARCHS[self.fmt][0]
        if arch not in ARCHS[self.fmt]:
            raise UserError(f"{self.fmt} weights support arch {'/'.join(ARCHS[self.fmt])}, not {arch!r}")
        object.__setattr__(self, "arch", arch)
        check_int("activation bits", self.a_bits, 2, 8)
        check_int("weight bits", self.w_bits, 2, 8)
        if self.fmt == "uniform":
            if self.e_max is not None:
                raise UserError("e_max applies to pot/post weights only")
            if self.frac_bits not in (None, 0):
                raise UserError("frac_bits applies to post lut only")
            object.__setattr__(self, "frac_bits", 0)
            return
        e_max = 2 ** (self.w_bits - 1) - 2 if self.e_max is None else self.e_max
        check_int("e_max", e_max, 0, 2 ** (self.w_bits - 1) - 1)
        object.__setattr__(self, "e_max", e_max)
        if arch == "lut":
            lo = -(-e_max // 2)
            if lo > 16:
                raise UserError(f"post lut needs F >= ceil(e_max/2) = {lo} > 16 fractional bits; "
                                f"use e_max <= 32 or the split architecture")
            f = min(lo + 2, 16) if self.frac_bits is None else self.frac_bits
            check_int("frac_bits (F)", f, lo, 16)
        elif arch == "split":
            f = e_max // 2
            if self.frac_bits not in (None, f):
                raise UserError(f"split uses S = floor(e_max/2) = {f} fractional bits, not {self.frac_bits}")
        else:
            f = e_max
            if self.frac_bits not in (None, f):
                raise UserError(f"pot uses E_max = {f} fractional bits, not {self.frac_bits}")
        object.__setattr__(self, "frac_bits", f)

    # --- derived facts -------------------------------------------------
    @property
    def m_bits(self) -> int:
        """Width of the magnitude field of a pot/post code word (0 for uniform)."""
        if self.fmt == "uniform":
            return 0
        return self.w_bits - 1 if self.e_max <= 2 ** (self.w_bits - 1) - 2 else self.w_bits

    @property
    def storage_bits(self) -> int:
        """Bits one stored weight code occupies."""
        return self.w_bits if self.fmt == "uniform" else 1 + self.m_bits

    @property
    def n_acc(self) -> int:
        """Number of accumulators (2 for post split)."""
        return 2 if self.arch == "split" else 1

    @property
    def a_range(self) -> tuple[int, int]:
        """Inclusive range of activation codes."""
        if self.a_signed:
            return -(2 ** (self.a_bits - 1)), 2 ** (self.a_bits - 1) - 1
        return 0, 2**self.a_bits - 1

    @property
    def a_max(self) -> int:
        """Largest activation magnitude."""
        return 2 ** (self.a_bits - 1) if self.a_signed else 2**self.a_bits - 1

    @property
    def w_range(self) -> tuple[int, int]:
        """Inclusive range of stored weight codes (q for uniform, code words otherwise)."""
        if self.fmt == "uniform":
            return -(2 ** (self.w_bits - 1)), 2 ** (self.w_bits - 1) - 1
        return 0, 2**self.storage_bits - 1

    @property
    def p_max(self) -> int:
        """Largest product magnitude (docs/datapath.md section 5)."""
        shift = {"mul": self.w_bits - 1, "shift": self.e_max, "lut": self.frac_bits, "split": self.frac_bits}
        return self.a_max << shift[self.arch]

    def natural_acc_bits(self, fan_in: int) -> int:
        """Accumulator width that can never overflow for this fan-in."""
        return (fan_in * self.p_max).bit_length() + 1

    def check_weight_codes_valid(self, codes) -> int:
        """Number of out-of-range weight codes in an integer numpy array."""
        import numpy as np

        lo, hi = self.w_range
        bad = (codes < lo) | (codes > hi)
        if self.fmt != "uniform":
            m = codes & ((1 << self.m_bits) - 1)
            bad |= m > self.e_max + 1
        return int(np.count_nonzero(bad))


def output_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive output code range; unsigned means a fused ReLU (lower bound 0).

    Output codes fit a signed 16-bit integer: 2..16 bits signed, 2..15 unsigned.
    """
    check_int("signed output bits" if signed else "unsigned output bits", bits, 2, 16 if signed else 15)
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1
