"""``asqhw program NET.npz -o DIR``: the accelerator's memory images, manifest and register map.

Writes every ROM image of ``hdl.accel`` for the network (``.hex`` for ``$readmemh``, ``.mem``
for ``$readmemb``), ``manifest.json`` (every memory: depth, width, bit fields, what it holds;
tensor regions; steps with their descriptor fields and cycles; fit per device),
``regmap.json`` and ``asqhw_regmap.h``; with ``--verilog`` also the accelerator's Verilog
(ROMs initialised). Never overwrites a file without ``--force``. docs/accelerator.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asqhw.core.errors import UserError

__all__ = ["register", "cmd_program"]


def cmd_program(args) -> int:
    from asqhw.core.atomic import check_target, ensure_dir, write_text
    from asqhw.core.network import read_network
    from asqhw.hdl.accel import emit, fit, program

    if isinstance(args.lanes, bool) or not 1 <= args.lanes <= 256 or args.lanes & (args.lanes - 1):
        raise UserError(f"--lanes must be a power of two in 1..256, not {args.lanes}")
    net = read_network(args.model)
    prog = program.build(net, args.lanes)
    if args.device is not None and not fit.fit(prog, args.device)["fits"]:
        raise UserError(fit.fit_line(prog, args.device))
    out = Path(args.out)
    texts = emit.files(prog)
    if args.verilog:
        from asqhw.hdl.accel.cosim import render

        module = f"asqhw_accel_{prog.digest()[:12]}"
        texts[f"{module}.v"] = render(prog, module)[0]
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    for name in texts:                      # every target checked before anything is written
        check_target(out / name, args.force)
    ensure_dir(out)
    for name, text in texts.items():
        write_text(out / name, text, args.force)
    if args.json:
        print(json.dumps({"out": str(out), "files": sorted(texts),
                          "fit": {d: fit.fit_line(prog, d) for d in fit.DEVICES}}, indent=1))
    else:
        for name in sorted(texts):
            print(out / name)
        for d in fit.DEVICES:
            print("fit: " + fit.fit_line(prog, d), file=sys.stderr)
    return 0


DEVICES = ("ice40up5k", "ecp5-25f")       # hdl.accel.fit.DEVICES (not imported here: the parser stays light)


def register(sub) -> None:
    p = sub.add_parser("program", help="the network accelerator's memory images, manifest and register map")
    p.add_argument("model", metavar="NET.npz", help="a network export (docs/network.md)")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--lanes", type=int, default=8, help="engine lanes (a power of two; default 8)")
    p.add_argument("--verilog", action="store_true", help="also write the accelerator's Verilog")
    p.add_argument("--device", choices=sorted(DEVICES), default=None,
                   help="refuse (one line, with the numbers) when the memories do not fit this device")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_program)
