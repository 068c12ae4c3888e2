"""``asqhw bitstream``: the accelerator of a network export plus the UART host link, as a bitstream.

Writes into ``OUT/``: ``BOARD.bin`` (iCE40) or ``BOARD.bit`` (ECP5), the pin constraints
(``BOARD.pcf``/``BOARD.lpf``) and ``BOARD.json`` (utilisation, Fmax, throughput, UART, protocol
and register map: docs/board.md). Nothing is overwritten without ``--force``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asqhw.core.atomic import check_target, ensure_dir, write_bytes, write_text
from asqhw.core.errors import UserError

from .common import table

__all__ = ["register", "cmd_bitstream"]


def register(sub) -> None:
    """Add the ``bitstream`` subcommand to the argparse subparsers ``sub``."""
    from asqhw.hdl.board.boards import BOARDS

    p = sub.add_parser("bitstream", help="build a bitstream of a network's accelerator for an open board")
    p.add_argument("--board", required=True, choices=list(BOARDS), help="the board (docs/board.md)")
    p.add_argument("--model", required=True, metavar="NET.npz", help="network export (docs/network.md)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--lanes", type=int, default=8, help="engine lanes of the accelerator (default 8)")
    p.add_argument("--baud", type=int, default=115200, help="UART rate (default 115200)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr seed (default 1)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per tool run (default 3600)")
    p.add_argument("--no-dsp", action="store_true", help="multipliers in logic, not in DSP blocks")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--no-fit-check", action="store_true",
                   help="run synthesis and placement even when the memory estimate says the network does not fit")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_bitstream)


def _say(quiet):
    def show(text):
        if not quiet:
            print(f"[bitstream] {text}", file=sys.stderr, flush=True)
    return show


def cmd_bitstream(args) -> int:
    """Build, write the files, print utilisation, Fmax and images/s."""
    from asqhw.core.network import read_network
    from asqhw.hdl.accel import regmap
    from asqhw.hdl.board.boards import board_spec
    from asqhw.hdl.board.build import build_bitstream
    from asqhw.hdl.board.network import (images_per_second, link_bytes, link_cycles, memory_fit,
                                         network_accelerator, network_program, predicted_cycles)
    from asqhw.hdl.board.uart import baud_divisor

    board = board_spec(args.board)
    if args.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, not {args.seed}")
    if not args.timeout > 0:
        raise UserError(f"--timeout must be positive, not {args.timeout}")
    try:
        divisor = baud_divisor(board.clk_hz, args.baud)
    except ValueError as e:
        raise UserError(f"--baud {args.baud} on the {board.name} ({board.clk_hz / 1e6:g} MHz): {e}") from None
    out = Path(args.out)
    ext = "bin" if board.family == "ice40" else "bit"
    cons = "pcf" if board.family == "ice40" else "lpf"
    paths = {k: out / f"{board.name}.{e}" for k, e in (("bitstream", ext), ("constraints", cons), ("report", "json"))}
    for p in paths.values():
        check_target(p, args.force)
    net = read_network(args.model)
    say = _say(args.quiet or args.json)
    say(f"building the accelerator of {net.name} ({args.lanes} lanes)")
    prog = network_program(net, args.lanes)
    verdict = memory_fit(prog, board)
    if verdict is not None and not args.no_fit_check:
        raise UserError(verdict)
    accel = network_accelerator(prog)
    compute = predicted_cycles(prog)
    res = build_bitstream(accel, board, baud=args.baud, seed=args.seed, timeout=args.timeout, dsp=not args.no_dsp,
                          progress=say)
    per_image = link_cycles(prog.n_in, prog.classes, divisor, compute)
    sent, received = link_bytes(prog.n_in, prog.classes)
    rate = images_per_second(board.clk_hz, per_image)
    rec = {
        "board": board.name, "title": board.title, "model": net.name, "model_path": str(args.model),
        "lanes": args.lanes, "program_digest": prog.digest(), "dsp": not args.no_dsp,
        "clock_mhz": res["clock_mhz"], "fmax_mhz": res["fmax_mhz"], "timing_met": res["timing_met"],
        "utilisation": res["utilisation"], "seed": res["seed"],
        "uart": {"baud": args.baud, "divisor": divisor, "frame": "8N1", "pins": board.uart_note},
        "leds": {"busy": list(board.busy_led), "error": list(board.error_led)},
        "throughput": {"compute_cycles": compute, "bytes_to_board": sent, "bytes_from_board": received,
                       "cycles_per_image": per_image, "images_per_second": round(rate, 2),
                       "compute_only_images_per_second": round(images_per_second(board.clk_hz, compute), 2)},
        "protocol_version": 1, "registers": json.loads(regmap.as_json()),
        "tools": res["tools"], "build_seconds": res["seconds"], "cached": res["cached"],
        "files": {k: str(p) for k, p in paths.items()},
        "silicon": "not run on hardware here: built and simulated only",
    }
    ensure_dir(out)
    write_bytes(paths["bitstream"], res["bitstream"], force=args.force)
    write_text(paths["constraints"], res["constraints"][1], force=args.force)
    write_text(paths["report"], json.dumps(rec, indent=1) + "\n", force=args.force)
    if args.json:
        print(json.dumps(rec, indent=1))
    else:
        print(f"{board.title}: {net.name}, {args.lanes} lanes, {args.baud} baud (divisor {divisor})")
        rows = [[kind, u["used"], u["available"], f"{100 * u['used'] / u['available']:.1f}%"]
                for kind, u in res["utilisation"].items() if kind != "io"]
        print(table(["resource", "used", "available", "share"], rows))
        met = "met" if res["timing_met"] else "NOT MET"
        print(f"Fmax {res['fmax_mhz']:.2f} MHz against the {res['clock_mhz']:g} MHz board clock: timing {met}")
        print(f"cycles per image: {compute} compute + UART ({sent} bytes in, {received} out) = {per_image}: "
              f"{rate:.1f} images/s at {res['clock_mhz']:g} MHz (compute alone {rec['throughput']['compute_only_images_per_second']:.1f})")
        for p in paths.values():
            print(f"wrote {p}")
    if not res["timing_met"]:
        print(f"asqhw: error: timing not met on the {board.name}: Fmax {res['fmax_mhz']:.2f} MHz < "
              f"{res['clock_mhz']:g} MHz (the bitstream is written but may not work)", file=sys.stderr)
        return 1
    return 0
