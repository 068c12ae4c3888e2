"""The shape of one conv2d or linear layer: the one layer-shape type of every floor above.

Built-in topologies (:mod:`asqhw.core.topologies`), the engine's host side and cycle model
(``asqhw.hdl.engine``) and the command line all describe a layer with :class:`LayerShape`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError
from .validate import check_choice, check_int

__all__ = ["LayerShape", "KINDS"]

KINDS = ("conv2d", "linear")


@dataclass(frozen=True)
class LayerShape:
    """A conv2d (``kind="conv2d"``) or linear layer over a batch of ``n`` samples.

    ``h, w`` are the input size, ``kh, kw`` the kernel, ``pad`` the zero padding on every
    side. ``name`` labels the layer in a topology; ``quant_input`` is False for a layer
    whose input is the image rather than an activation quantiser (the first conv).
    """

    kind: str
    c_in: int
    c_out: int
    h: int = 1
    w: int = 1
    kh: int = 1
    kw: int = 1
    stride: int = 1
    pad: int = 0
    groups: int = 1
    n: int = 1
    name: str = ""
    quant_input: bool = True

    def __post_init__(self):
        check_choice("layer kind", self.kind, KINDS)
        for field in ("c_in", "c_out", "h", "w", "kh", "kw", "stride", "groups", "n"):
            check_int(field, getattr(self, field), 1)
        check_int("pad", self.pad, 0)
        if self.c_in % self.groups or self.c_out % self.groups:
            raise UserError(f"channels {self.c_in}/{self.c_out} not divisible by groups {self.groups}")
        if self.h_out < 1 or self.w_out < 1:
            raise UserError("layer has an empty output")

    @property
    def h_out(self) -> int:
        return (self.h + 2 * self.pad - self.kh) // self.stride + 1

    @property
    def w_out(self) -> int:
        return (self.w + 2 * self.pad - self.kw) // self.stride + 1

    @property
    def fan_in(self) -> int:
        """Inputs of one output value: ``c_in / groups * kh * kw``."""
        return self.c_in // self.groups * self.kh * self.kw

    @property
    def params(self) -> int:
        """Weights (no bias)."""
        return self.c_out * self.fan_in

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the dense layer over the batch (zero weights included)."""
        return self.n * self.params * self.h_out * self.w_out

    @property
    def out_words(self) -> int:
        """Output values over the batch."""
        return self.n * self.c_out * self.h_out * self.w_out

    # --- the engine's walk: every layer is a convolution over n_img images (docs/engine.md) ---
    @property
    def engine_geometry(self) -> dict:
        """``n_img, c_in, hp, wp, wq, wr, h_out, w_out, stride`` as the layer engine walks the layer.

        A linear layer is the 1x1 convolution of a ``1 x n`` image; a padded row of a conv is
        split into ``stride`` phases of ``wq`` codes (``wr = stride * wq``).
        """
        if self.kind == "linear":
            return dict(n_img=1, c_in=self.c_in, hp=1, wp=self.n, wq=self.n, wr=self.n, h_out=1,
                        w_out=self.n, stride=1)
        wp = self.w + 2 * self.pad
        wq = -(-wp // self.stride)
        return dict(n_img=self.n, c_in=self.c_in, hp=self.h + 2 * self.pad, wp=wp, wq=wq,
                    wr=wq * self.stride, h_out=self.h_out, w_out=self.w_out, stride=self.stride)

    @property
    def act_words(self) -> int:
        """Activation buffer words of the engine's layout (padded, phase-split rows)."""
        g = self.engine_geometry
        return g["n_img"] * g["c_in"] * g["hp"] * g["wr"]

    def describe(self) -> str:
        """``3x3/1 64->64 56x56`` (``g2`` for groups), or ``fc 512->10``."""
        if self.kind == "linear":
            return f"fc {self.c_in}->{self.c_out}"
        g = f" g{self.groups}" if self.groups > 1 else ""
        return (f"{self.kh}x{self.kw}/{self.stride} {self.c_in}->{self.c_out} "
                f"{self.h}x{self.w}{g}")
