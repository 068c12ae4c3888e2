"""``asqhw cycles``: per-layer cycles of the layer engine (``hdl.engine``), SCALE-Sim style.

The counts come from ``hdl.engine.cycles.run_cycles``, which the tests hold equal to the
Verilator count of the engine, cycle for cycle. The entry count of a channel's term list
depends on its weight codes (zero weights are skipped; grouped schedules add shift-only
entries): exact when golden case files are given, otherwise the expectation of
``hdl.engine.expect`` under the stated Gaussian weight model.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

from asqhw.core.errors import UserError
from asqhw.core.validate import is_int

__all__ = ["register", "layer_rows", "parse_sweep"]


def _shape(layer, batch):
    from dataclasses import replace

    return replace(layer, n=batch)


def _engine(dp, lanes, schedule, out_bits, shape=None, entries=0):
    from asqhw.hdl.engine.params import EngineConfig

    if schedule == "auto":
        schedule = "grouped" if dp.arch in ("shift", "split") else "any"
    act = max(shape.act_words if shape else lanes, 1)
    act = -(-act // lanes) * lanes
    return EngineConfig(dp, lanes, 32, out_bits, True, schedule, act_depth=act,
                        term_depth=max(int(entries), 1),
                        out_depth=max(shape.out_words if shape else 1, 1),
                        max_channels=max(shape.c_out if shape else 1, 1))


def _buffer_bytes(ecfg, shape, entries_total) -> int:
    bits = (shape.act_words * ecfg.dp.a_bits + int(round(entries_total)) * ecfg.term_bits
            + shape.c_out * ecfg.param_bits + shape.out_words * ecfg.out_bits)
    return -(-bits // 8)


def layer_rows(layers, dp, *, lanes, schedule="auto", batch=1, out_bits=None, clip=None,
               weights=None, dps=None, rq_pipeline=1) -> list[dict]:
    """One dict per layer: name, shape, macs, entries (mean per channel), cycles, stalls, ...

    ``layers`` are ``(name, LayerShape)``; ``weights`` optionally maps a name to its weight
    codes (then the entry counts are exact); ``dps`` optionally maps a name to its own
    datapath (a network export's layers differ, e.g. the first layer's signed input).
    """
    base_dp = dp
    from asqhw.hdl.engine.cycles import io_cycles, run_cycles
    from asqhw.hdl.engine.expect import expected_entries
    from asqhw.hdl.engine.program import channel_entry_counts

    rows = []
    for name, shape in layers:
        dp = (dps or {}).get(name, base_dp)
        out_bits = out_bits or dp.a_bits
        probe = _engine(dp, lanes, schedule, out_bits, shape)
        if weights and name in weights:
            counts = channel_entry_counts(probe, weights[name])
            exact = True
        else:
            counts = [expected_entries(probe, shape.fan_in, clip)] * shape.c_out
            exact = False
        ecfg = _engine(dp, lanes, schedule, out_bits, shape, sum(counts))
        res = run_cycles(lanes, shape.engine_geometry, counts, rq_pipeline)
        cyc = res.cycles
        load, drain = io_cycles(int(round(sum(counts))), shape.act_words, shape.c_out, shape.out_words)
        rows.append({
            "layer": name, "shape": shape.describe(), "batch": shape.n, "macs": shape.macs,
            "entries_per_channel": sum(counts) / len(counts), "exact": exact,
            "cycles": cyc if exact else round(cyc), "stall_cycles": (res.stalls if exact else round(res.stalls)),
            "utilisation": res.work / (res.cycles * lanes), "macs_per_cycle": shape.macs / cyc,
            "adapter_cycles": None, "load_cycles": load, "drain_cycles": drain,
            "buffer_bytes": _buffer_bytes(ecfg, shape, sum(counts)), "schedule": ecfg.schedule,
        })
    return rows


def parse_sweep(text: str) -> tuple[str, list[int]]:
    """``lanes=8,16,32`` -> ("lanes", [8, 16, 32])."""
    key, _, vals = text.partition("=")
    if key.strip() != "lanes" or not vals:
        raise UserError(f"--sweep takes lanes=N,N,..., not {text!r}")
    try:
        out = [int(v) for v in vals.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--sweep lanes must be integers, not {vals!r}") from None
    if not out:
        raise UserError("--sweep lanes needs at least one value")
    for v in out:
        _check_lanes(v, "--sweep lanes")
    if len(set(out)) != len(out):
        raise UserError(f"--sweep lists a lane count twice: {vals!r}")
    return "lanes", out


MAX_LANES = 256
MAX_BATCH = 1 << 16


def _check_lanes(v: int, what: str = "--lanes") -> None:
    if not 1 <= v <= MAX_LANES:
        raise UserError(f"{what} must be in 1..{MAX_LANES}, not {v}")


def _finite(v: float, what: str, lo: float, hi: float) -> None:
    if not (math.isfinite(v) and lo < v <= hi):
        raise UserError(f"{what} must be a number above {lo:g} and at most {hi:g}, not {v!r}")


_PLOT_FORMATS = (".png", ".pdf", ".svg")


def check_args(args) -> None:
    """Every numeric option and the --plot path checked before any work (one line each)."""
    if args.sweep is None:
        _check_lanes(args.lanes)
    if args.batch is not None and not 1 <= args.batch <= MAX_BATCH:
        raise UserError(f"--batch must be in 1..{MAX_BATCH}, not {args.batch}")
    _finite(args.clock, "--clock (MHz)", 0.0, 1e5)
    if args.clip is not None:
        _finite(args.clip, "--clip (sigmas)", 0.0, 100.0)
    if args.out_bits is not None and not 2 <= args.out_bits <= 16:
        raise UserError(f"--out-bits must be in 2..16, not {args.out_bits}")
    if args.clock_from_synth and not args.synth:
        raise UserError("--clock-from-synth needs --synth JSON")
    if args.plot:
        from asqhw.core.atomic import check_target

        if Path(args.plot).suffix.lower() not in _PLOT_FORMATS + ("",):
            raise UserError(f"--plot must name a {', '.join(_PLOT_FORMATS)} file (no suffix: PNG), "
                            f"not {args.plot!r}")
        check_target(args.plot, args.force, need_dir=True)


def _adapter_rows(rows, layers, batch, reduction=4, n_acc=1):
    """Fill ``adapter_cycles`` for every layer whose input has an ASQ adapter.

    Each adapter also makes the per-sample multipliers of its layer (``C_out * n_acc``,
    spec section 11) alongside the divider.
    """
    from asqhw.hdl.engine.adapter import adapter_cycles

    from .overhead import topology_sites

    sites = {s.name: s for s in topology_sites(layers, reduction)}
    c_out = {l.name: l.c_out for l in layers}
    for r in rows:
        s = sites.get(r["layer"])
        r["adapter_cycles"] = (adapter_cycles(s.channels, s.hidden, batch, c_out[r["layer"]] * n_acc)
                               if s else 0)


def _synth_rows(path, dp, schedule, rq_pipeline=1) -> dict:
    """``{lanes: row}`` of an ``engine_synth.json`` for this datapath and schedule."""
    from asqhw.hdl.engine.synth import ENGINE_DESIGNS
    from asqhw.core.safezip import loads_json

    if not Path(path).is_file():                 # a FIFO or a device would block or never end
        raise UserError(f"cannot read engine synthesis results {path}: not a regular file")
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_SYNTH_JSON + 1)
    except OSError as exc:
        raise UserError(f"cannot read engine synthesis results {path}: {exc.strerror}") from None
    if len(raw) > _MAX_SYNTH_JSON:
        raise UserError(f"{path}: more than {_MAX_SYNTH_JSON} bytes, not an engine_synth.json")
    data = loads_json(raw, str(path))
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise UserError(f"{path}: not an engine_synth.json (needs an object with a 'rows' list)")
    for i, r in enumerate(rows):
        _synth_row_ok(r, f"{path}: rows[{i}]")
    design = next(d for d, v in ENGINE_DESIGNS.items() if v == (dp.fmt, dp.arch, schedule))
    return {r["lanes"]: r for r in rows
            if r["design"] == design and r["b_w"] == dp.w_bits and r["b_a"] == dp.a_bits
            and r.get("rq_pipeline", 1) == rq_pipeline}


_MAX_SYNTH_JSON = 1 << 24


def _synth_row_ok(r, where: str) -> None:
    """One row of engine_synth.json: the fields ``cycles`` reads, of the right types."""
    def num(v, positive=True):
        return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and (v > 0 if positive else v >= 0))

    if not isinstance(r, dict):
        raise UserError(f"{where} is not an object")
    if not isinstance(r.get("design"), str) or not isinstance(r.get("target"), str):
        raise UserError(f"{where}: design and target must be strings")
    for key in ("lanes", "b_w", "b_a"):
        v = r.get(key)
        if not (is_int(v) and v >= 1):
            raise UserError(f"{where}: {key} must be a positive integer, not {v!r}"[:200])
    if "rq_pipeline" in r and not is_int(r["rq_pipeline"]):
        raise UserError(f"{where}: rq_pipeline must be an integer")
    for key, positive in (("fmax_mhz", True), ("lut", False), ("bram", False)):
        v = r.get(key)
        if key not in r or (v is not None and not num(v, positive)):
            raise UserError(f"{where}: {key} must be a finite {'positive' if positive else 'non-negative'} "
                            f"number or null, not {v!r}"[:200])


def _layers_from_args(args):
    """``[(name, LayerShape)]`` and exact weights by name, from --model or case files."""
    if args.model and args.paths:
        raise UserError("give either --model or case files, not both")
    if args.model:
        from asqhw.core.topologies import TOPOLOGIES, topology

        args.batch = 1 if args.batch is None else args.batch
        if args.model not in TOPOLOGIES and Path(args.model).is_file():
            return _network_layers(args.model, args.batch)
        return [(lay.name, _shape(lay, args.batch)) for lay in topology(args.model)], None, args.model
    if not args.paths:
        raise UserError("give --model NAME or golden case files")
    from asqhw.hdl.engine.program import shape_of_case

    from asqhw.core.vectors import load_cases

    if args.batch is not None:
        raise UserError("--batch applies to --model; a case file has its own batch")
    cases = load_cases(args.paths)
    dps = {c.datapath for c in cases}
    if len(dps) != 1:
        raise UserError("case files with different datapaths; run them separately")
    batches = {c.manifest["batch"] for c in cases}
    if len(batches) != 1:
        raise UserError(f"case files with different batches ({', '.join(map(str, sorted(batches)))}); "
                        f"run them separately")
    args.batch = batches.pop()
    layers = [(c.name, shape_of_case(c)) for c in cases]
    return layers, {c.name: c["w"] for c in cases}, "cases", next(iter(dps))


def _network_layers(path, batch):
    """Layers, weight codes, label, main datapath, per-layer datapaths and adapters of an export."""
    from collections import Counter

    from asqhw.core.layershape import LayerShape
    from asqhw.core.network import read_network

    net = read_network(path)
    layers, weights, dps, adapters = [], {}, {}, {}
    quant_adapter = {nd["name"]: nd.get("adapter") for nd in net.nodes if nd["op"] == "quant"}
    adapter_nodes = {nd["name"]: nd for nd in net.nodes if nd["op"] == "adapter"}
    for nd in net.nodes:
        if nd["op"] not in ("conv2d", "linear"):
            continue
        name, src = nd["name"], nd["inputs"][0]
        if nd["op"] == "linear":
            shape = LayerShape("linear", nd["in_features"], nd["out_features"], n=batch)
        else:
            c, h, w = net.tensors[src].shape
            (kh, kw) = nd["kernel"]
            shape = LayerShape("conv2d", c, nd["out_channels"], h=h, w=w, kh=kh, kw=kw, stride=nd["stride"],
                               pad=nd["padding"], groups=nd["groups"], n=batch)
        layers.append((name, shape))
        weights[name] = net.param(name, "w")
        dps[name] = net.datapath(nd)
        ad = adapter_nodes.get(quant_adapter.get(src) or "")
        if ad is not None:                 # one pass per adapter, counted at its first consumer
            mult = sum(n["out_channels" if n["op"] == "conv2d" else "out_features"] * net.datapath(n).n_acc
                       for n in net.nodes if n.get("beta_from") == ad["name"])
            if all(a[3] != ad["name"] for a in adapters.values()):
                adapters[name] = (ad["channels"], ad["hidden"], mult, ad["name"])
    if not layers:
        raise UserError(f"{path}: the network has no conv2d or linear node")
    main = Counter(dps.values()).most_common(1)[0][0]
    return layers, weights, f"network {net.name}", main, dps, adapters


def _fmt_int(v):
    return f"{v:,}".replace(",", " ")


def cmd_cycles(args) -> int:
    from asqhw.cli.common import datapath_from, table

    check_args(args)
    got = _layers_from_args(args)
    dps = adapters = None
    if len(got) == 6:
        layers, weights, label, dp, dps, adapters = got
    elif len(got) == 4:
        layers, weights, label, dp = got
    else:
        (layers, weights, label), dp = got, datapath_from(args)
    lanes_list = parse_sweep(args.sweep)[1] if args.sweep else [args.lanes]
    from asqhw.hdl.engine.expect import mse_clip

    exact_only = weights is not None and all(name in weights for name, _ in layers)
    # the weight model is only needed (and only built) when some entry count is an expectation
    clip = args.clip if args.clip is not None else (0.0 if exact_only else mse_clip(dp))
    model_text = (f"entry counts: expectation for i.i.d. N(0,1) weights quantised to the nearest "
                  f"{dp.fmt} {dp.w_bits}-bit level, largest level at {clip:g} sigma"
                  + (" (the MSE-optimal clip)" if args.clip is None else ""))
    results = {}
    for lanes in lanes_list:
        results[lanes] = layer_rows(layers, dp, lanes=lanes, schedule=args.schedule, batch=args.batch,
                                    out_bits=args.out_bits, clip=clip, weights=weights, dps=dps,
                                    rq_pipeline=args.rq_pipeline)
    if args.adapter and adapters is not None:
        from asqhw.hdl.engine.adapter import adapter_cycles

        for rows in results.values():
            for r in rows:
                a = adapters.get(r["layer"])
                r["adapter_cycles"] = adapter_cycles(a[0], a[1], args.batch, a[2]) if a else 0
    elif args.adapter:
        if not args.model:
            raise UserError("--adapter needs --model (a built-in topology or a network export)")
        from asqhw.core.topologies import topology

        for rows in results.values():
            _adapter_rows(rows, topology(args.model), args.batch, n_acc=dp.n_acc)
    mhz = args.clock
    synth = (_synth_rows(args.synth, dp, results[lanes_list[0]][0]["schedule"], args.rq_pipeline)
             if args.synth else {})
    summary = []
    for lanes, rows in results.items():
        total = sum(r["cycles"] + (r["adapter_cycles"] or 0) for r in rows)
        macs = sum(r["macs"] for r in rows)
        s = synth.get(lanes)
        clock = s["fmax_mhz"] if s and s.get("fmax_mhz") and args.clock_from_synth else mhz
        summary.append({"lanes": lanes, "cycles": total, "stall_cycles": sum(r["stall_cycles"] for r in rows),
                        "macs": macs, "macs_per_cycle": macs / total,
                        "utilisation": sum(r["utilisation"] * r["cycles"] for r in rows) / total,
                        "frames_per_s": args.batch * clock * 1e6 / total, "clock_mhz": clock,
                        "luts": s["lut"] if s else None, "bram": s["bram"] if s else None,
                        "fmax_mhz": s["fmax_mhz"] if s else None, "synth_target": s["target"] if s else None,
                        "lut_x_cycles": s["lut"] * total if s and s["lut"] else None})
    exact = all(r["exact"] for rows in results.values() for r in rows)
    accel = None
    if adapters is not None and args.model and Path(args.model).is_file():     # a network export
        from .netsim_cmd import accelerator_cycles, format_accelerator

        accel = accelerator_cycles(args.model, lanes_list)
    if dps:
        desc = (f"{label}: datapath and schedule of each layer from the export (most layers {dp.fmt} "
                f"{dp.arch} a{dp.a_bits}/w{dp.w_bits}), batch {args.batch}, {mhz:g} MHz")
    else:
        desc = (f"{label}: {dp.fmt} {dp.arch} a{dp.a_bits}/w{dp.w_bits}, schedule "
                f"{results[lanes_list[0]][0]['schedule']}, batch {args.batch}, {mhz:g} MHz")
    if args.json:
        print(json.dumps({"network": label, "datapath": {"fmt": dp.fmt, "arch": dp.arch, "a_bits": dp.a_bits,
                                                         "w_bits": dp.w_bits, "e_max": dp.e_max},
                          "exact": exact, "weight_model": None if exact else model_text,
                          "summary": summary,
                          "layers": {str(k): v for k, v in results.items()},
                          **({"accelerator": accel} if accel is not None else {})}, indent=1))
    elif args.csv:
        buf = io.StringIO()
        wr = csv.writer(buf)
        wr.writerow(["lanes", "layer", "shape", "batch", "macs", "entries_per_channel", "cycles",
                     "stall_cycles", "utilisation_pct", "macs_per_cycle", "adapter_cycles", "load_cycles",
                     "drain_cycles", "buffer_bytes", "exact"])
        for lanes, rows in results.items():
            for r in rows:
                wr.writerow([lanes, r["layer"], r["shape"], r["batch"], r["macs"],
                             f"{r['entries_per_channel']:.3f}", r["cycles"], r["stall_cycles"],
                             f"{100 * r['utilisation']:.2f}", f"{r['macs_per_cycle']:.3f}",
                             "" if r["adapter_cycles"] is None else r["adapter_cycles"],
                             r["load_cycles"], r["drain_cycles"], r["buffer_bytes"], r["exact"]])
        sys.stdout.write(buf.getvalue())
    else:
        print(desc)
        for lanes, rows in results.items():
            if len(results) > 1:
                print(f"\nlanes = {lanes}")
            print(table(["layer", "shape", "MACs", "entries/ch", "cycles", "stall cycles", "util %",
                          "MACs/cycle", "adapter cycles", "load+drain", "buffer bytes"],
                         [[r["layer"], r["shape"], _fmt_int(r["macs"]), f"{r['entries_per_channel']:.1f}",
                           _fmt_int(r["cycles"]), _fmt_int(r["stall_cycles"]),
                           f"{100 * r['utilisation']:.1f}", f"{r['macs_per_cycle']:.1f}",
                           "-" if r["adapter_cycles"] is None else _fmt_int(r["adapter_cycles"]),
                           _fmt_int(r["load_cycles"] + r["drain_cycles"]),
                           _fmt_int(r["buffer_bytes"])] for r in rows]))
        print()
        print(table(["lanes", "cycles", "stall cycles", "util %", "MACs/cycle", "clock MHz",
                      "frames/s", "LUTs", "BRAM", "Fmax MHz", "LUT x cycles"],
                     [[s["lanes"], _fmt_int(s["cycles"]), _fmt_int(s["stall_cycles"]),
                       f"{100 * s['utilisation']:.1f}", f"{s['macs_per_cycle']:.1f}", f"{s['clock_mhz']:g}",
                       f"{s['frames_per_s']:.2f}", "-" if s["luts"] is None else s["luts"],
                       "-" if s["bram"] is None else s["bram"],
                       "-" if s["fmax_mhz"] is None else s["fmax_mhz"],
                       "-" if s["lut_x_cycles"] is None else f"{s['lut_x_cycles']:.3g}"] for s in summary]))
        if args.synth:
            print(f"(LUTs, BRAM, Fmax: {args.synth}, target {next((s['synth_target'] for s in summary if s['synth_target']), '-')})")
        print("(cycles: start to done of one layer run, exact for the engine RTL given the entry counts;\n"
              " util: lane-cycles on valid outputs / (cycles x lanes); MACs/cycle: dense MACs, zero\n"
              " weights included, per cycle; adapter: ASQ adapter pass on the layer's input (--adapter;\n"
              " exact for the companion adapter unit asqhw/hdl/engine/adapter_unit.py; in the totals);\n"
              " load+drain: stream cycles to fill the memories and read the outputs when not\n"
              " overlapped with the run (not in the totals); buffer: on-chip bytes the layer needs:\n"
              " activations, terms, channels, outputs)")
        print("exact entry counts from the weight codes" if exact else model_text)
        if accel is not None:
            print()
            print(format_accelerator(accel, mhz))
    if args.plot:
        _plot(results, Path(args.plot), args.force, desc)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _plot(results, path: Path, force: bool, title: str):
    """Write exactly ``path`` (its suffix names the format), atomically, never over a file without ``force``."""
    from asqhw.core.atomic import write_bytes

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["layer"] for r in next(iter(results.values()))]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names)), 4))
    width = 0.8 / len(results)
    for i, (lanes, rows) in enumerate(results.items()):
        xs = [j + i * width for j in range(len(rows))]
        ax.bar(xs, [r["cycles"] for r in rows], width, label=f"{lanes} lanes")
    ax.set_yscale("log")
    ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(names))])
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel("cycles per layer")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lower()[1:] or "png", dpi=120)
    plt.close(fig)
    write_bytes(path, buf.getvalue(), force=force)


def register(sub) -> None:
    """Add the ``cycles`` subcommand."""
    from asqhw.cli.common import add_datapath_args

    p = sub.add_parser("cycles", help="cycles per layer of the layer engine (exact cycle model)")
    p.add_argument("paths", nargs="*", help="golden case files (exact entry counts from their weights)")
    p.add_argument("--model", help="built-in topology (resnet18, resnet34, resnet20, mobilenetv2) or a "
                                   "network export NET.npz (exact entry counts from its weights)")
    add_datapath_args(p)
    p.add_argument("--schedule", choices=["auto", "any", "grouped", "grouped1"], default="auto",
                   help="auto: grouped except post lut")
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--rq-pipeline", type=int, default=1, choices=[1, 2, 3],
                   help="requantiser register stages of the engine")
    p.add_argument("--sweep", help="lanes=8,16,32: one table per array size")
    p.add_argument("--batch", type=int, default=None,
                   help="images per layer run with --model (default 1; a case file has its own)")
    p.add_argument("--out-bits", type=int, default=None, help="output code bits (default: --a-bits)")
    p.add_argument("--clock", type=float, default=100.0, help="clock in MHz for frames/s")
    p.add_argument("--synth", metavar="JSON",
                   help="engine_synth.json of `asqhw synth --unit engine`: LUTs, BRAM, Fmax per lanes")
    p.add_argument("--clock-from-synth", action="store_true",
                   help="frames/s at the Fmax of --synth instead of --clock")
    p.add_argument("--clip", type=float, default=None,
                   help="weight model: largest level in sigmas (default: MSE-optimal)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--json", action="store_true")
    p.add_argument("--adapter", action="store_true",
                   help="add the ASQ adapter pass before every quantised layer (model of a companion "
                        "unit, not RTL-verified)")
    p.add_argument("--plot", metavar="PNG", help="bar chart of cycles per layer (.png, .pdf or .svg; "
                                                 "exactly this file is written)")
    p.add_argument("--force", action="store_true", help="overwrite an existing plot file")
    p.set_defaults(func=cmd_cycles)
