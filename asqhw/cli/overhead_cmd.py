"""``asqhw overhead``: the adapters' cost against the quantised model, in paper Table 1's layout."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from asqhw.core.atomic import check_target, write_text
from asqhw.core.errors import UserError

__all__ = ["register", "cmd_overhead", "parse_bits", "parse_reduction", "load_model"]

_CSV_COLUMNS = ["bits", "paper_param_pct", "param_pct", "param_rel_diff", "paper_compute_pct", "compute_pct",
                "compute_pct_paper_counting", "compute_pct_extended"]


def parse_bits(text: str) -> list[int]:
    """Comma-separated bit widths, each 2..32, no repeats.

    Parameters
    ----------
    text : str
        E.g. ``"8,4,3,2"``.

    Returns
    -------
    list of int
    """
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise UserError(f"--bits must be comma-separated integers such as 8,4,3,2, not {text!r}")
    try:
        bits = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"--bits must be comma-separated integers such as 8,4,3,2, not {text!r}") from None
    bad = [b for b in bits if not 2 <= b <= 32]
    if bad:
        raise UserError(f"--bits: bit width {bad[0]} is outside 2..32")
    if len(set(bits)) != len(bits):
        raise UserError(f"--bits lists a width twice: {text!r}")
    return bits


def parse_reduction(text: str) -> int:
    """The adapter's ``r`` (hidden width ``C // r``), an integer in 1..4096.

    Parameters
    ----------
    text : str

    Returns
    -------
    int
    """
    try:
        r = int(text)
    except ValueError:
        raise UserError(f"--reduction must be an integer, not {text!r}") from None
    if not 1 <= r <= 4096:
        raise UserError(f"--reduction must be in 1..4096, not {r}")
    return r


def load_model(model: str, reduction: int, fc_adapter: bool):
    """Adapters and model size of a built-in topology name or a network export file.

    Parameters
    ----------
    model : str
        A name in :data:`asqhw.core.topologies.TOPOLOGIES` or the path of a network export.
    reduction : int
        ``r`` for a built-in topology (an export's adapters have their own hidden widths).
    fc_adapter : bool
        Built-in topologies only: also an adapter on the last linear layer's input.

    Returns
    -------
    tuple
        ``(sites, ModelCount, source)``, ``source`` describing where they came from.
    """
    from .overhead import network_count, network_sites, topology_count, topology_sites
    from asqhw.core.topologies import TOPOLOGIES

    if model in TOPOLOGIES:
        layers = TOPOLOGIES[model]()
        where = "layer" if fc_adapter else "conv (the last linear layer has none)"
        return (topology_sites(layers, reduction, fc_adapter), topology_count(model, layers),
                f"built-in topology, one adapter (r = {reduction}) on the input of every {where} "
                f"whose input is quantised")
    path = Path(model)
    if not path.exists():
        raise UserError(f"--model {model!r} is neither a built-in topology ({', '.join(TOPOLOGIES)}) "
                        f"nor an existing file")
    if fc_adapter:
        raise UserError("--fc-adapter applies to built-in topologies; an export's adapters are its own")
    from asqhw.core.network import read_network

    net = read_network(path)
    return network_sites(net), network_count(net), f"network export {path}, its adapter nodes as exported"


def _fmt(v, digits=2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _text(rep: dict, source: str, paper: bool) -> str:
    from asqhw.cli.common import table
    from .overhead import DIVIDER_STEPS

    m, t = rep["model"], rep["totals"]
    out = [f"{m['name']}: {source}",
           f"model: {m['layers']} conv/linear layers, {m['params']:,} parameters (Eq. 10-11), "
           f"{m['macs']:,} multiply-adds per sample (Eq. 12-13; quantised convs {m['quant_conv_macs']:,})", ""]
    rows = [[a["name"], f"{a['channels']}x{a['height']}x{a['width']}", a["hidden"], f"{a['params']:,}",
             f"{a['fc_macs']:,}", f"{a['pool_adds']:,}", f"{a['requant_mults']:,}", f"{a['consumer_mults']:,}",
             f"{a['held_bits'] / 8192:,.1f}"] for a in rep["adapters"]]
    rows.append(["total", f"{t['adapters']} adapters", "", f"{t['params']:,}", f"{t['fc_macs']:,}",
                 f"{t['pool_adds']:,}", f"{t['requant_mults']:,}", f"{t['consumer_mults']:,}",
                 f"{t['held_bits'] / 8192:,.1f}"])
    out.append(table(["adapter", "reads CxHxW", "hidden", "params", "FC MACs", "pool adds", "requant mults",
                       "consumer mults", "held KiB"], rows))
    ratio = f"{t['pool_adds'] / t['fc_macs']:.2f}x" if t["fc_macs"] else "-"
    out += [f"per sample also: {t['divisions']} reciprocal divisions ({DIVIDER_STEPS} quotient steps each), "
            f"{t['adapter_requants']:,} adapter requantisations; pool additions = {ratio} the FC MACs; "
            f"largest tensor held while beta is unknown {t['peak_held_bits'] / 8192:,.1f} KiB "
            f"(16-bit wide codes); adapter parameters {t['param_bits'] / 8192:,.1f} KiB at 8 bits", ""]
    head = ["bits", "Param% paper", "Param% ours", "diff", "Compute% paper", "Compute% ours",
            "Compute% paper's counting", "Compute% with pools + requant"]
    body = [[r["bits"], _fmt(r["paper_param_pct"]), _fmt(r["param_pct"]),
             "-" if r["param_rel_diff"] is None else f"{100 * r['param_rel_diff']:+.1f}%",
             _fmt(r["paper_compute_pct"]), _fmt(r["compute_pct"], 3),
             _fmt(r["compute_pct_paper_counting"], 3), _fmt(r["compute_pct_extended"], 3)] for r in rep["rows"]]
    if not paper:
        keep = [0, 2, 5, 6, 7]
        head, body = [head[i] for i in keep], [[row[i] for i in keep] for row in body]
    out.append(table(head, body))
    c = rep["conventions"]
    out += ["", "Assumptions:", f"- {c['param']}", f"- {c['compute']}", f"- {c['compute_paper_counting']}",
            f"- {c['extended']}"]
    if paper:
        out.append("- Paper values: Table 1 (ResNet-18). The paper's Compute% is reproduced by its counting "
                   "above, not by ours; counting the pools and the per-sample requantisation multiplies the "
                   "cost many times over (docs/overhead.md).")
    return "\n".join(out)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r[k] is None else (round(r[k], 6) if isinstance(r[k], float) else r[k])
                    for k in _CSV_COLUMNS})
    return buf.getvalue()


def cmd_overhead(args) -> int:
    """Handle ``asqhw overhead``: print the report, optionally write the Table 1 rows as CSV."""
    from .overhead import TABLE1, report

    bits = parse_bits(args.bits)
    reduction = parse_reduction(args.reduction)
    csv_path = Path(args.csv) if args.csv else None
    if csv_path is not None:
        check_target(csv_path, args.force, need_dir=True)          # before any work
    sites, model, source = load_model(args.model, reduction, args.fc_adapter)
    paper = args.model == "resnet18" and reduction == 4 and not args.fc_adapter
    rep = report(sites, model, bits, TABLE1 if paper else None)
    rep["source"] = source
    if csv_path is not None:
        write_text(csv_path, _csv(rep["rows"]), force=args.force)     # atomic, exactly this path
    print(json.dumps(rep, indent=1) if args.json else _text(rep, source, paper))
    return 0


def register(sub) -> None:
    """Add the ``overhead`` subcommand to the CLI's subparsers.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        ``build_parser``'s subparsers.
    """
    p = sub.add_parser("overhead", help="adapter parameters and operations against the quantised model (Table 1)")
    p.add_argument("--model", required=True,
                   help="a built-in topology (resnet18, resnet34, resnet20, mobilenetv2) or a network export")
    p.add_argument("--bits", default="8,4,3,2", help="comma-separated bit widths of the model (default 8,4,3,2)")
    p.add_argument("--reduction", default="4", help="r of the adapters' hidden layer C//r (built-ins; default 4)")
    p.add_argument("--fc-adapter", action="store_true",
                   help="built-ins: also put an adapter on the last linear layer's input")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.add_argument("--csv", metavar="FILE", help="also write the Table 1 rows to this CSV file")
    p.add_argument("--force", action="store_true", help="overwrite an existing CSV file")
    p.set_defaults(func=cmd_overhead)
