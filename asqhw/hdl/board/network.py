"""The network accelerator of an export, for the board tops, and the images/s of a board.

:func:`network_program` and :func:`network_accelerator` build ``hdl.accel``'s program and
accelerator for a network;
:func:`link_cycles` and :func:`images_per_second` give the throughput of the UART protocol
of docs/board.md at a board clock (docs/board.md, "Throughput").
"""

from __future__ import annotations

from asqhw.core.errors import UserError

__all__ = ["network_program", "network_accelerator", "predicted_cycles", "memory_fit", "link_bytes", "link_cycles",
           "images_per_second"]

#: Board -> the device of ``hdl.accel.fit`` whose block RAM it has (None: not estimated, synthesis decides).
FIT_DEVICE = {"icebreaker": "ice40up5k", "orangecrab": "ecp5-25f", "ulx3s": None}


def network_program(net, lanes: int = 8):
    """The accelerator program of a network export (``hdl.accel.program.build``)."""
    if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
        raise UserError(f"--lanes must be a positive integer, not {lanes!r}")
    from asqhw.hdl.accel.program import build

    return build(net, lanes)


def network_accelerator(prog):
    """The ``NetworkAccelerator`` of a program (:func:`network_program`)."""
    from asqhw.hdl.accel.top import NetworkAccelerator

    return NetworkAccelerator(prog)


def predicted_cycles(prog) -> int:
    """The accelerator's exact cycles per image (its ``CYCLES`` register), from ``hdl.accel.cycles``."""
    from asqhw.hdl.accel.cycles import image_cycles

    return image_cycles(prog).total


def memory_fit(prog, board) -> str | None:
    """None if ``prog``'s memories fit ``board``'s block RAM (or it is not estimated), else one
    sentence: by how much they do not, and what would make them fit."""
    from asqhw.hdl.accel.fit import DEVICES, fit

    device = FIT_DEVICE.get(board.name)
    if device is None:
        return None
    f = fit(prog, device)
    if f["fits"]:
        return None
    dev = DEVICES[device]
    kbit = lambda bits: f"{bits / 1024:.1f} kbit"          # noqa: E731
    bram_bits = dev["brams"] * dev["bram_bits"]
    weights = f["bits"].get("weights", 0)
    line = (f"{prog.net.name} does not fit the {board.title}: its memories need {f['brams']} block RAMs "
            f"(+{f['brams'] - f['brams_available']} over the {f['brams_available']}"
            + (f", even with the {f['sprams_available']} SPRAMs holding working memories" if f["sprams_available"] else "")
            + f"; {', '.join(f'{k} {kbit(v)}' for k, v in f['bits'].items())})")
    if dev["spram"] and weights > bram_bits:
        spram_bits = dev["spram"] * dev["spram_words"] * dev["spram_width"]
        line += (f"; the weights alone ({kbit(weights)}) exceed all its block RAM ({kbit(bram_bits)}): it would "
                 f"fit with the weight ROMs in the {dev['spram']} SPRAMs ({kbit(spram_bits)}), loaded at start-up "
                 f"from the flash or over the UART, or on a larger board (--board orangecrab or ulx3s)")
    else:
        line += "; it would fit on a larger board (--board ulx3s)"
    return line


def link_bytes(n_in: int, classes: int) -> tuple[int, int]:
    """Bytes host -> board and board -> host of one image: ``I``, count, codes, ``L``; ``I``, ``L``, 5 per logit."""
    return n_in + 4, 2 + 5 * classes


def link_cycles(n_in: int, classes: int, divisor: int, compute: int) -> int:
    """Board clock cycles per image when the host sends the image, waits for ``I``, sends ``L``
    and reads the logits (10 bit times per byte; the host's own latency excluded).

    The accelerator starts on the last code, so the ``I`` reply, the ``L`` command and the
    ``L`` header overlap its run: ``10 d (n_in + 3) + max(compute, 30 d) + 50 d K``.
    """
    byte = 10 * divisor
    return byte * (n_in + 3) + max(compute, 3 * byte) + 5 * classes * byte


def images_per_second(clk_hz: float, cycles: int) -> float:
    """Images per second at ``clk_hz`` for ``cycles`` per image."""
    return clk_hz / cycles
