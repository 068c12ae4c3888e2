"""Quantisation schemes: which activation quantiser and which weight format a network uses."""

from __future__ import annotations

from dataclasses import dataclass

from asqhw.core.errors import UserError
from asqhw.core.validate import check_choice, check_int

__all__ = ["Scheme", "SCHEMES", "E_MAX_CHOICES"]

#: scheme name -> (activation quantiser, weight format)
SCHEMES = {
    "lsq": ("lsq", "uniform"),
    "asq": ("asq", "uniform"),        # Scheme 1 of the paper
    "asq+post": ("asq", "post"),      # Scheme 2
    "lsq+pot": ("lsq", "pot"),
    "lsq+post": ("lsq", "post"),
    "asq+pot": ("asq", "pot"),
}
#: ``default``: E_max = 2^(b-1) - 2 (b storage bits); ``eq17``: 2^(b-1) - 1 (paper Eq. 17)
E_MAX_CHOICES = ("default", "eq17")


@dataclass(frozen=True)
class Scheme:
    """A quantisation scheme for the layers between the first conv and the last FC.

    The first conv (signed 8-bit input codes) and the last FC (8-bit input codes) always use
    8-bit uniform weights.

    Parameters
    ----------
    name : str
        One of :data:`SCHEMES`.
    bits : int
        Activation and weight width ``b`` of the inner layers (2..8).
    e_max : {"default", "eq17"}
        Largest POT/POST exponent: ``2^(b-1) - 2`` or the paper's Eq. 17 set ``2^(b-1) - 1``.
    reduction : int
        Adapter reduction ``r`` (hidden width ``C // r``).
    beta_bits, beta_frac : int
        Fixed-point format of ``beta`` (docs/datapath.md section 13).
    """

    name: str
    bits: int
    e_max: str = "default"
    reduction: int = 4
    beta_bits: int = 10
    beta_frac: int = 8

    def __post_init__(self):
        check_choice("scheme", self.name, SCHEMES)
        check_int("bits", self.bits, 2, 8)
        check_choice("e_max", self.e_max, E_MAX_CHOICES)
        check_int("adapter reduction", self.reduction, 1)
        if not 2 <= self.beta_bits <= 15 or not 0 <= self.beta_frac <= self.beta_bits:
            raise UserError(f"beta format ({self.beta_bits}, {self.beta_frac}) is outside the spec's ranges")

    @property
    def adapter(self) -> bool:
        """Activations use ASQ with an adapter (else LSQ, ``beta = 1``)."""
        return SCHEMES[self.name][0] == "asq"

    @property
    def weight_format(self) -> str:
        """``uniform``, ``pot`` or ``post``."""
        return SCHEMES[self.name][1]

    @property
    def e_max_value(self) -> int | None:
        """The integer ``E_max`` of the inner layers (None for uniform weights)."""
        if self.weight_format == "uniform":
            return None
        return 2 ** (self.bits - 1) - (1 if self.e_max == "eq17" else 2)

    def as_dict(self) -> dict:
        """JSON-able form (checkpoints, export metadata)."""
        return {"name": self.name, "bits": self.bits, "e_max": self.e_max, "reduction": self.reduction,
                "beta_bits": self.beta_bits, "beta_frac": self.beta_frac}
