"""Parameter checks at the boundary: each raises one :class:`UserError` naming the value and what was expected.

A UserError is a ValueError, so a component built from a script fails the way Python code
expects and the command line prints the same message on one line.
"""

from __future__ import annotations

from .errors import UserError

__all__ = ["is_int", "check_int", "check_bool", "check_choice"]


def is_int(value) -> bool:
    """True for a Python ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` if it is an integer in ``lo..hi`` (a bound of None is open), else a UserError.

    Examples of the messages: ``lanes must be an integer, not 2.5``; ``lanes must be in
    1..256, not 300``; ``lanes must be a positive integer, not 0`` (``lo=1``, no ``hi``).
    """
    if not is_int(value):
        raise UserError(f"{name} must be an integer, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UserError(f"{name} must be {_expected(lo, hi)}, not {value}")
    return value


def _expected(lo: int | None, hi: int | None) -> str:
    if hi is None:
        return "a positive integer" if lo == 1 else f"at least {lo}"
    return f"at most {hi}" if lo is None else f"in {lo}..{hi}"


def check_bool(name: str, value) -> bool:
    """``value`` if it is ``True`` or ``False``, else a UserError."""
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, not {value!r}")
    return value


def check_choice(name: str, value, choices) -> object:
    """``value`` if it is one of ``choices``, else a UserError that lists them."""
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")
    return value
