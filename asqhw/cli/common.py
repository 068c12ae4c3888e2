"""What the subcommands share: bundled data paths, argument groups, the text table."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from asqhw.core.errors import UserError

__all__ = ["default_corpus", "default_networks", "int_list", "progress", "table", "datapath_from",
           "add_datapath_args", "add_scheduler_arg"]


def default_corpus() -> Path:
    """The bundled corpus, located without importing asqhw/golden/ (and torch)."""
    spec = importlib.util.find_spec("asqhw.golden")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the bundled corpus (package 'asqhw.golden') is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "vectors"


def default_networks() -> Path:
    """The bundled trained network(s), next to the corpus."""
    return default_corpus().parent / "networks"


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {text!r}") from None


def progress(quiet: bool):
    def show(i, n, name):
        if not quiet:
            print(f"[{i}/{n}] {name}", file=sys.stderr, flush=True)
    return show


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    out = [line(headers), "  ".join("-" * w for w in widths)]
    return "\n".join(out + [line(r) for r in cells])


def datapath_from(args):
    from asqhw.core.params import Datapath

    mode = args.mode if args.weights == "post" else None
    return Datapath(fmt=args.weights, a_bits=args.a_bits, w_bits=args.w_bits, arch=mode,
                    a_signed=args.a_signed, e_max=args.e_max, frac_bits=args.frac_bits)


def add_datapath_args(p, *, multi=False):
    p.add_argument("--weights", choices=["uniform", "pot", "post"], default="post")
    p.add_argument("--mode", choices=["lut", "split"], default="split", help="POST architecture")
    p.add_argument("--a-bits", type=int, default=4)
    p.add_argument("--w-bits", type=int, default=4)
    p.add_argument("--a-signed", action="store_true", help="signed activation codes")
    p.add_argument("--e-max", type=int, default=None, help="largest exponent (default 2^(b_w-1)-2)")
    p.add_argument("--frac-bits", type=int, default=None, help="F of the lut architecture")


def add_scheduler_arg(p):
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the tool jobs on this Dask scheduler, e.g. tcp://HOST:8786 "
                        "(default: $ASQHW_SCHEDULER, else a local cluster of --jobs threads)")
