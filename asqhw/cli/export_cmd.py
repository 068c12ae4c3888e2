"""``asqhw golden export --model CHECKPOINT``: a QAT checkpoint as a network export (docs/network.md)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from asqhw.core import atomic
from asqhw.core.errors import UserError

__all__ = ["add_model_args", "cmd_export_model"]


def add_model_args(p) -> None:
    """Add the ``--model`` options to the ``golden export`` parser."""
    p.add_argument("--model", metavar="CHECKPOINT",
                   help="export this QAT checkpoint (asqhw train) as a network into --out instead of the corpus")
    p.add_argument("--samples", type=int, default=8,
                   help="with --model: golden samples, the first test images (default 8: the digits CNN export stays near 0.5 MB)")
    p.add_argument("--arch", choices=["split", "lut"], default="split", help="with --model: POST architecture")
    p.add_argument("--name", help="with --model: network name (default: MODEL_SCHEMEBITS)")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}\Z")


def _check_name(name: str, what: str) -> str:
    """A network name that is one plain file name inside --out: letters, digits, ``_.+-``."""
    if not _NAME.match(name):
        raise UserError(f"{what} must be 1..100 letters, digits, '_', '.', '+' or '-' (no path), "
                        f"not {name!r}"[:300])
    return name


def cmd_export_model(args) -> int:
    """Write ``OUT/NAME.npz`` from ``--model``; refuse to overwrite without ``--force``."""
    from asqhw.golden.netexport import export_network
    from asqhw.golden.qat.checkpoint import load_checkpoint

    if args.case:
        raise UserError("--case selects corpus cases; it does not combine with --model")
    if not args.out:
        raise UserError("--model needs --out DIR")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is not a directory")
    if args.name is not None:
        _check_name(args.name, "--name")
    ckpt = load_checkpoint(args.model)
    sch = ckpt["scheme"]
    name = args.name or _check_name(f"{ckpt['model']}_{sch['name'].replace('+', '_')}{sch['bits']}",
                                    f"{args.model}: the network name it implies")
    atomic.ensure_dir(out)
    path = atomic.check_target(out / f"{name}.npz", args.force)
    command = (f"asqhw golden export --model {args.model} --out {args.out} --samples {args.samples} "
               f"--arch {args.arch} --name {name}")
    digest, manifest = export_network(ckpt, path, samples=args.samples, arch=args.arch, force=args.force,
                                      name=name, meta={"export_command": command})
    ops = [nd["op"] for nd in manifest["nodes"]]
    print(f"wrote {path}: {len(ops)} nodes ({ops.count('conv2d')} conv2d, {ops.count('linear')} linear, "
          f"{ops.count('adapter')} adapters), {manifest['samples']} golden samples, sha256 {digest[:16]}")
    if not args.quiet:
        acc = ckpt.get("qat_acc")
        print(f"scheme {sch['name']} {sch['bits']}-bit; QAT accuracy "
              f"{'-' if acc is None else f'{acc:.2f}%'}", file=sys.stderr)
    return 0
