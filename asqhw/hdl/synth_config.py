"""Synthesis configurations: the designs, one validated :class:`SynthConfig`, and their labels.

A configuration names a design (weight format, product architecture and schedule), a
datapath and the dot unit's lanes, accumulator width and pipeline depth. Its label is
readable and parses back into the same configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from amaranth.lib import wiring

from asqhw.core.errors import UserError
from asqhw.core.params import MAX_ACC_BITS, Datapath
from asqhw.core.validate import check_int

__all__ = ["DESIGNS", "GROUPED_DESIGNS", "DEFAULT_FAN_IN", "SynthConfig", "make_config", "expand_configs",
           "parse_config", "parse_configs", "parse_int_list", "parse_name_list"]

#: Design name -> (weight format, product architecture, schedule).
DESIGNS = {
    "uniform": ("uniform", "mul", "any"),
    "uniform-grouped": ("uniform", "mul", "grouped"),
    "pot": ("pot", "shift", "any"),
    "pot-grouped": ("pot", "shift", "grouped"),
    "post-lut": ("post", "lut", "any"),
    "post-split": ("post", "split", "any"),
    "post-split-grouped": ("post", "split", "grouped"),
}

#: Fan-in whose natural accumulator width is the default (a 3x3x64 convolution).
DEFAULT_FAN_IN = 576

#: Designs of the ``grouped`` schedule (compared with ``uniform-grouped``, their fair baseline).
GROUPED_DESIGNS = tuple(d for d, (_, _, sched) in DESIGNS.items() if sched == "grouped")


@dataclass(frozen=True)
class SynthConfig:
    """One unit to synthesise.

    Attributes
    ----------
    design : str
        Key of :data:`DESIGNS`.
    dp : Datapath
        The datapath (its fmt/arch match the design).
    lanes, acc_bits, pipeline : int
        DotUnit parameters.
    build : callable or None
        ``build(config) -> Component`` replacing ``hdl.dot.DotUnit`` (for tests and
        experiments); not part of equality or of the label.
    """

    design: str
    dp: Datapath
    lanes: int
    acc_bits: int
    pipeline: int = 1
    build: Callable | None = field(default=None, compare=False, repr=False)

    @property
    def schedule(self) -> str:
        """``any`` or ``grouped``."""
        return DESIGNS[self.design][2]

    @property
    def label(self) -> str:
        """Readable name; :func:`parse_config` turns it back into this configuration."""
        dp = self.dp
        text = f"{self.design} b_w={dp.w_bits} b_a={dp.a_bits} lanes={self.lanes}"
        if self.acc_bits != dp.natural_acc_bits(DEFAULT_FAN_IN):
            text += f" acc_bits={self.acc_bits}"
        if self.pipeline != 1:
            text += f" pipeline={self.pipeline}"
        default = Datapath(dp.fmt, dp.a_bits, dp.w_bits, dp.arch)
        if dp.e_max != default.e_max:
            text += f" e_max={dp.e_max}"
        if dp.frac_bits != default.frac_bits:
            text += f" frac_bits={dp.frac_bits}"
        if dp.a_signed:
            text += " signed_a"
        return text

    def unit(self) -> wiring.Component:
        """The unit under test, unwrapped."""
        if self.build is not None:
            return self.build(self)
        from .dot import DotUnit

        return DotUnit(self.dp, lanes=self.lanes, acc_bits=self.acc_bits,
                       schedule=self.schedule, pipeline=self.pipeline)


def make_config(design: str, *, w_bits: int, a_bits: int, lanes: int, acc_bits: int | None = None,
                pipeline: int = 1, fan_in: int = DEFAULT_FAN_IN, a_signed: bool = False,
                e_max: int | None = None, frac_bits: int | None = None,
                build: Callable | None = None) -> SynthConfig:
    """Validated configuration; ``acc_bits=None`` takes the natural width for ``fan_in``.

    Raises
    ------
    UserError
        On an unknown design or a parameter out of range.
    """
    if design not in DESIGNS:
        raise UserError(f"design must be one of {', '.join(DESIGNS)}, not {design!r}")
    fmt, arch, _ = DESIGNS[design]
    dp = Datapath(fmt, a_bits, w_bits, arch, a_signed=a_signed, e_max=e_max, frac_bits=frac_bits)
    check_int("lanes", lanes, 1, 256)
    check_int("pipeline", pipeline, 0, 8)
    check_int("fan-in", fan_in, 1, 2**24)
    if acc_bits is None:
        acc_bits = dp.natural_acc_bits(fan_in)
    check_int("accumulator bits", acc_bits, 2, MAX_ACC_BITS)
    return SynthConfig(design, dp, lanes, acc_bits, pipeline, build)


def expand_configs(designs, w_bits, a_bits, lanes, *, acc_bits: int | None = None,
                   pipeline: int = 1, fan_in: int = DEFAULT_FAN_IN) -> list[SynthConfig]:
    """Every combination, ordered b_w, b_a, lanes, then design (designs to compare sit together)."""
    return [make_config(d, w_bits=w, a_bits=a, lanes=n, acc_bits=acc_bits, pipeline=pipeline,
                        fan_in=fan_in)
            for w in w_bits for a in a_bits for n in lanes for d in designs]


def parse_configs(*, designs, w_bits, a_bits, lanes, fan_in: int = DEFAULT_FAN_IN,
                  pipeline: int = 1, acc_bits: int | None = None) -> list[SynthConfig]:
    """Keyword form of :func:`expand_configs` for the command line (lists from ``--design`` etc.)."""
    return expand_configs(designs, w_bits, a_bits, lanes, acc_bits=acc_bits, pipeline=pipeline,
                          fan_in=fan_in)


_KEYS = {"b_w": "w_bits", "b_a": "a_bits", "lanes": "lanes", "acc_bits": "acc_bits",
         "pipeline": "pipeline", "e_max": "e_max", "frac_bits": "frac_bits", "fan_in": "fan_in"}


def parse_config(text: str) -> SynthConfig:
    """Configuration from a label such as ``post-split-grouped b_w=4 b_a=4 lanes=8``.

    Optional words: ``acc_bits=N``, ``pipeline=N``, ``e_max=N``, ``frac_bits=N``,
    ``fan_in=N`` (for the default accumulator width) and ``signed_a``.

    Raises
    ------
    UserError
        On a malformed label.
    """
    words = text.split()
    if not words:
        raise UserError("empty synthesis configuration")
    kwargs: dict = {}
    for word in words[1:]:
        if word == "signed_a":
            kwargs["a_signed"] = True
            continue
        name, eq, value = word.partition("=")
        if not eq or name not in _KEYS:
            raise UserError(f"bad word {word!r} in configuration {text!r}; expected "
                            f"{', '.join(k + '=N' for k in _KEYS)} or signed_a")
        try:
            kwargs[_KEYS[name]] = int(value)
        except ValueError:
            raise UserError(f"{name} must be an integer, not {value!r}") from None
    for need in ("b_w", "b_a", "lanes"):
        if _KEYS[need] not in kwargs:
            raise UserError(f"configuration {text!r} lacks {need}=N")
    return make_config(words[0], **kwargs)


def parse_int_list(text: str, name: str) -> list[int]:
    """``"3,4"`` -> ``[3, 4]``; a UserError naming ``name`` on anything else."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{name} must be a comma-separated list of integers, not {text!r}") from None
    return values


def parse_name_list(text: str, name: str, choices) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``, each checked against ``choices``."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise UserError(f"{name} is empty")
    for v in values:
        if v not in choices:
            raise UserError(f"{name} must be among {', '.join(choices)}, not {v!r}")
    return values
