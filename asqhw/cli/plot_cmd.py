"""``asqhw plot``: figures as PNGs, never overwriting a file without ``--force``.

- ``activations``: activation histograms before and after quantisation, LSQ against ASQ, with
  each image's ``beta`` (the paper's Fig. 4), from two QAT checkpoints;
- ``block-error``: the error between unquantised (or float) and quantised block outputs, LSQ
  against ASQ (Fig. 5), from two QAT checkpoints;
- ``beta``: the distribution of ``beta_q`` per adapter of a network export over a data set, in
  the integer model, with its range and percentiles (what sizes the ``1/beta`` unit).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asqhw.core.errors import UserError

__all__ = ["register"]


def _out(path: str | None, force: bool, required: bool = True) -> Path | None:
    if path is None:
        if required:
            raise UserError("--out PNG is required")
        return None
    from asqhw.core.atomic import check_target

    if Path(path).suffix.lower() != ".png":
        raise UserError(f"--out must name a .png file, not {path!r}")
    return check_target(path, force, need_dir=True)


def _check_images(n: int, most: int) -> None:
    if not 1 <= n <= most:
        raise UserError(f"--images must be in 1..{most}, not {n}")


def _pair(args):
    from asqhw.golden.qat.checkpoint import load_checkpoint

    return load_checkpoint(args.lsq), load_checkpoint(args.asq)


def cmd_activations(args) -> int:
    from asqhw.golden.plots import plot_histograms

    out = _out(args.out, args.force)
    _check_images(args.images, 16)                     # one row of the figure each
    lsq, asq = _pair(args)
    res = plot_histograms(lsq, asq, out, node=args.node, images=args.images, force=args.force)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        for key in ("lsq", "asq"):
            r = res[key]
            print(f"{r['scheme']} {r['bits']}-bit, {args.node}: step {r['step']:.4g}, beta "
                  + ", ".join(f"{b:.3f}" for b in r["beta"])
                  + f"; codes in use {', '.join(map(str, r['codes_in_use']))} of {1 << r['bits']}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_block_error(args) -> int:
    from asqhw.golden.plots import plot_block_error

    out = _out(args.out, args.force)
    _check_images(args.images, 1 << 20)
    lsq, asq = _pair(args)
    res = plot_block_error(lsq, asq, out, images=args.images, reference=args.reference, force=args.force)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        w = max(len(b) for b in res["lsq"]["blocks"])
        print(f"{'block'.ljust(w)}  {res['lsq']['scheme']:>10}  {res['asq']['scheme']:>10}  (mean relative L2 error against the {args.reference} network)")
        for i, b in enumerate(res["lsq"]["blocks"]):
            print(f"{b.ljust(w)}  {res['lsq']['mean'][i]:10.4f}  {res['asq']['mean'][i]:10.4f}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_beta(args) -> int:
    from .betadist import PERCENTILES, beta_stats, collect_betas, plot_betas
    from asqhw.core.datasets import input_codes, load_test_set
    from asqhw.core.network import read_network

    out = _out(args.out, args.force, required=False)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be a positive integer, not {args.limit}")
    net = read_network(args.model)
    meta = net.manifest.get("meta") if isinstance(net.manifest.get("meta"), dict) else {}
    data = args.data or (meta.get("data") if isinstance(meta.get("data"), str) else "digits")
    images, _, what = load_test_set(data)
    if args.limit is not None:
        images = images[:args.limit]
    betas = collect_betas(net, input_codes(images, net.manifest["input"]))
    rows = beta_stats(net, betas)
    if out is not None:
        plot_betas(net, betas, out, what, force=args.force)
    if args.json:
        print(json.dumps({"model": net.name, "data": data, "images": len(images), "adapters": rows}, indent=1))
    else:
        pct = [f"p{p}" for p in PERCENTILES]
        head = ["adapter", "C", "b_beta/f_b", "min", *pct, "max", "distinct", "at 1", "at max", "bits", "beta range"]
        cells = [[r["adapter"], r["channels"], f"{r['beta_bits']}/{r['beta_frac']}", r["min"],
                  *(r["percentiles"][str(p)] for p in PERCENTILES), r["max"], r["distinct"], r["at_floor"],
                  r["at_ceiling"], r["bits_used"], f"{r['beta_min']:.3f}..{r['beta_max']:.3f}"] for r in rows]
        cells = [head] + [[str(c) for c in row] for row in cells]
        widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
        print(f"{net.name}: beta_q per adapter over {len(images)} images of the {what} (integer model)")
        for j, row in enumerate(cells):
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
            if j == 0:
                print("  ".join("-" * w for w in widths))
        print("(beta = beta_q / 2^f_b; at 1 / at max: images on the clamp bounds 1 and 2^b_beta - 1; "
              "bits: bitlen of the largest beta_q, the divider's operand width)")
    if out is not None:
        print(f"wrote {out}", file=sys.stderr)
    return 0


def register(sub) -> None:
    """Add the ``plot`` subcommand (with its figures) to the argparse subparsers ``sub``."""
    p = sub.add_parser("plot", help="figures: activation histograms, block error, beta distribution (PNG)")
    figs = p.add_subparsers(dest="figure", required=True)

    def common(q, png_required=True):
        q.add_argument("--out", required=png_required, metavar="PNG", help="the PNG to write")
        q.add_argument("--force", action="store_true", help="overwrite an existing PNG")
        q.add_argument("--json", action="store_true", help="print the figure's numbers as JSON")

    q = figs.add_parser("activations", help="activation histograms before/after quantisation, LSQ vs ASQ (Fig. 4)")
    q.add_argument("--lsq", required=True, metavar="CHECKPOINT", help="QAT checkpoint without adapters")
    q.add_argument("--asq", required=True, metavar="CHECKPOINT", help="QAT checkpoint of the same network with adapters")
    q.add_argument("--node", default="q1", help="the quantiser to show (default q1, the first)")
    q.add_argument("--images", type=int, default=3, help="test images, one row each (default 3)")
    common(q)
    q.set_defaults(func=cmd_activations)

    q = figs.add_parser("block-error", help="error of every block output against the float network, LSQ vs ASQ (Fig. 5)")
    q.add_argument("--lsq", required=True, metavar="CHECKPOINT", help="QAT checkpoint without adapters")
    q.add_argument("--asq", required=True, metavar="CHECKPOINT", help="QAT checkpoint of the same network with adapters")
    q.add_argument("--images", type=int, default=256, help="the first N test images (default 256)")
    q.add_argument("--reference", choices=["unquantised", "float"], default="unquantised",
                   help="compare with the same network with its quantisers off (default), or with the float "
                        "network QAT started from")
    common(q)
    q.set_defaults(func=cmd_block_error)

    q = figs.add_parser("beta", help="distribution of beta per adapter of an export over a data set")
    q.add_argument("--model", required=True, metavar="EXPORT", help="network export (.npz) with adapters")
    q.add_argument("--data", default=None, metavar="SPEC",
                   help="'digits' or 'cifar10:DIR' (default: the export's meta.data, else digits)")
    q.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N test images")
    common(q, png_required=False)
    q.set_defaults(func=cmd_beta)
