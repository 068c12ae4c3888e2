"""``asqhw board run|sim``: classify test images on a board (real or simulated) through the host driver.

``board run --port PORT`` talks to a board over a serial port or ``tcp://127.0.0.1:N`` (the
simulated board); ``board run --sim`` starts the simulated board itself. ``board sim`` starts
it and prints its port. docs/board.md.
"""

from __future__ import annotations

import json
import signal
import sys
import time

import numpy as np

from asqhw.core.errors import UserError

__all__ = ["register", "cmd_board_run", "cmd_board_sim"]


def register(sub) -> None:
    """Add the ``board`` subcommands to the argparse subparsers ``sub``."""
    g = sub.add_parser("board", help="run images on a board through the UART host link").add_subparsers(
        dest="board_cmd", required=True)
    p = g.add_parser("run", help="classify test images on a board: accuracy, images/s, cycles")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="PORT", help="serial device (/dev/ttyUSB1) or tcp://127.0.0.1:N")
    where.add_argument("--sim", action="store_true", help="start the simulated board (Verilator) and use it")
    p.add_argument("--model", required=True, metavar="NET.npz", help="the network the board was built for")
    p.add_argument("--data", default="digits", metavar="SPEC", help="'digits' or 'cifar10:DIR' (test split)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N test images")
    p.add_argument("--baud", type=int, default=115200, help="serial rate (default 115200)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a reply (default 30)")
    p.add_argument("--lanes", type=int, default=8, help="engine lanes the board was built with (default 8)")
    p.add_argument("--check", action="store_true",
                   help="also compare every logit with the numba model and the cycles with the cycle model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_board_run)

    p = g.add_parser("sim", help="start the simulated board (Verilator) and print its port")
    p.add_argument("--model", required=True, metavar="NET.npz")
    p.add_argument("--lanes", type=int, default=8, help="engine lanes (default 8)")
    p.add_argument("--tcp-port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    p.set_defaults(func=cmd_board_sim)


def _start_sim(net, lanes, say, **kw):
    from asqhw.hdl.board import simboard
    from asqhw.hdl.board.network import network_accelerator, network_program
    from asqhw.hdl.board.top import HostLink

    prog = network_program(net, lanes)
    accel = network_accelerator(prog)
    say("building the simulated board (Verilator; cached after the first build)")
    exe = simboard.build(HostLink(accel, divisor=simboard.SIM_DIVISOR, timeout=1 << 24))
    return simboard.start(exe, **kw), prog


def cmd_board_sim(args) -> int:
    """Serve the simulated board until interrupted."""
    from asqhw.core.network import read_network

    net = read_network(args.model)
    board, _ = _start_sim(net, args.lanes, lambda t: print(t, file=sys.stderr, flush=True), port=args.tcp_port)
    print(f"simulated board of {net.name} on {board.port}", flush=True)
    print(f"run: asqhw board run --port {board.port} --model {args.model}", flush=True)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))      # stop the simulator too
    try:
        board.proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        board.close()
    return 0


def _registers():
    from asqhw.hdl.accel import regmap

    regs = regmap.addresses()
    bit = {(r.name, f.name): f.lsb for r in regmap.REGISTERS for f in r.fields}
    return regs, bit, regmap.ID_MAGIC


def cmd_board_run(args) -> int:
    """Classify the test images on the board; print accuracy, images/s, cycles (and the check)."""
    from asqhw.core.datasets import input_codes, load_test_set
    from asqhw.core.network import read_network
    from asqhw.hdl.board.network import network_program
    from asqhw.host.driver import Board
    from asqhw.host.link import open_link

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be a positive integer, not {args.limit}")
    quiet = args.quiet or args.json
    say = (lambda t: None) if quiet else (lambda t: print(t, file=sys.stderr, flush=True))
    net = read_network(args.model)
    images, labels, what = load_test_set(args.data)
    if args.limit is not None:
        images, labels = images[:args.limit], labels[:args.limit]
    codes = input_codes(images, net.manifest["input"]).reshape(len(images), -1)
    sim = None
    if args.sim:
        sim, prog = _start_sim(net, args.lanes, say)
        port = sim.port
    else:
        prog = network_program(net, args.lanes)
        port = args.port
    regs, bit, magic = _registers()
    try:
        with open_link(port, baud=args.baud, timeout=args.timeout) as link:
            rec = _run(Board(link, regs), net, prog, codes, labels, bit, magic, say)
    finally:
        if sim is not None:
            sim.close()
    rec |= {"port": "sim" if args.sim else port, "data": args.data, "model": net.name, "lanes": args.lanes}
    ok = True
    if args.check:
        ok = _check(net, codes, rec)
    if args.json:
        print(json.dumps(rec, indent=1))
    else:
        _print(rec, what, args)
    return 0 if ok else 1


def _run(board, net, prog, codes, labels, bit, magic, say) -> dict:
    from asqhw.hdl.board.network import predicted_cycles

    board.status()                                           # protocol version, clears the flags
    ident = board.read("ID")
    if ident != magic:
        raise UserError(f"{board.link.name}: ID register {ident:#010x}, not an asq-hw accelerator ({magic:#010x})")
    digest = int(prog.digest()[:8], 16)
    have = board.read("PROGRAM")
    if have != digest:
        raise UserError(f"{board.link.name}: the board runs program {have:08x}, {net.name} at these lanes is "
                        f"{digest:08x}: rebuild the bitstream for this model (or pass the right --lanes)")
    n_in, classes = board.read("IN_CODES"), board.read("OUT_LOGITS")
    if n_in != codes.shape[1]:
        raise UserError(f"{board.link.name}: the board takes {n_in} codes per image, the data has {codes.shape[1]}")
    board.write("CTRL", 1 << bit[("CTRL", "SOFT_RESET")] | 1 << bit[("CTRL", "AUTO")])
    logits, cycles = [], []
    sent0, recv0 = board.bytes_sent, board.bytes_received
    t0 = time.perf_counter()
    n = codes.shape[0]
    for i in range(n):
        out = board.classify(codes[i].tolist())
        if len(out) != classes:
            raise UserError(f"{board.link.name}: image {i}: {len(out)} logits, the board announced {classes}")
        logits.append(out)
        cycles.append(board.read("CYCLES_LO") | board.read("CYCLES_HI") << 32)
        if (i + 1) % 8 == 0 or i + 1 == n:
            say(f"[{i + 1}/{n}] images")
    seconds = time.perf_counter() - t0
    images = board.read("IMAGES")
    status = board.read("STATUS")
    flags = board.status()
    if images != n:
        raise UserError(f"{board.link.name}: IMAGES reads {images} after {n} images")
    if status >> bit[("STATUS", "ERR_FRAME")] & 1 or flags:
        raise UserError(f"{board.link.name}: the board reported errors: STATUS {status:#x}, link flags {flags}")
    logits = np.asarray(logits, dtype=np.int64)
    pred = np.argmax(logits, axis=1)
    correct = int(np.count_nonzero(pred == labels))
    return {"images": n, "correct": correct, "accuracy": round(correct / n, 6),
            "images_per_second": round(n / seconds, 2), "seconds": round(seconds, 3),
            "bytes_sent": board.bytes_sent - sent0, "bytes_received": board.bytes_received - recv0,
            "cycles_per_image": {"min": min(cycles), "max": max(cycles), "mean": round(sum(cycles) / n, 1)},
            "cycles": cycles, "predicted_cycles": predicted_cycles(prog), "program": f"{digest:08x}",
            "logits": logits.tolist()}


def _check(net, codes, rec) -> bool:
    """Every logit against the numba model, the cycles against the cycle model; adds ``check`` to ``rec``."""
    from asqhw.sim.network import IntNetwork

    model = IntNetwork(net, "auto")
    want = model.run(codes.reshape((-1, *net.manifest["input"]["shape"])), keep=False)[f"vec/{net.output}"]
    got = np.asarray(rec["logits"], dtype=np.int64)
    bad = np.argwhere(got != want)
    mismatches = [{"sample": int(s), "index": int(k), "expected": int(want[s, k]), "actual": int(got[s, k])}
                  for s, k in bad[:10]]
    cycle_off = [i for i, c in enumerate(rec["cycles"]) if c != rec["predicted_cycles"]]
    rec["check"] = {"logits_compared": int(got.size), "mismatches": int(len(bad)), "mismatch_list": mismatches,
                    "cycle_errors": len(cycle_off), "ok": len(bad) == 0 and not cycle_off}
    return rec["check"]["ok"]


def _print(rec, what, args) -> None:
    c = rec["cycles_per_image"]
    print(f"model {rec['model']} on {'the simulated board' if args.sim else rec['port']}, {what}, "
          f"{rec['images']} images")
    print(f"accuracy                {100 * rec['accuracy']:.2f}% ({rec['correct']}/{rec['images']})")
    print(f"speed                   {rec['images_per_second']} images/s measured by the host "
          f"({rec['seconds']:.2f} s, {rec['bytes_sent']} bytes sent, {rec['bytes_received']} received)")
    span = f"{c['min']}" if c["min"] == c["max"] else f"{c['min']}..{c['max']}"
    print(f"cycle counter           {span} cycles per image (CYCLES; the cycle model predicts {rec['predicted_cycles']})")
    if "check" in rec:
        k = rec["check"]
        print(f"check                   {k['logits_compared']} logits against the numba model: "
              f"{k['mismatches']} mismatches; cycle model off on {k['cycle_errors']} images")
        for m in k["mismatch_list"]:
            print(f"MISMATCH sample {m['sample']} logit {m['index']}: expected {m['expected']}, got {m['actual']}")
        print("PASS: bit-exact" if k["ok"] else "FAIL")
