"""``asqhw conform --rtl --unit network [NET.npz ...]``: whole networks through the accelerator in Verilator.

Every golden sample of each export runs through ``hdl.accel`` (docs/accelerator.md); the report
gives values compared, mismatches (each named by node, array, sample, index, expected and actual),
cycles per step and phase, measured and modelled, the stream figures and the fit per device.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asqhw.core.errors import UserError

__all__ = ["conform_network"]


def _paths(args, default_networks) -> list[Path]:
    from asqhw.cli.netconform import split_paths

    cases, nets = split_paths(args.paths or [default_networks()])
    for p in cases:
        if not Path(p).exists():
            raise UserError(f"{p}: no such file or directory")
        raise UserError(f"{p}: not a network export; --unit network runs network exports")
    if not nets:
        raise UserError("no network export given")
    return nets


def conform_network(args, default_networks) -> int:
    """Run the networks of ``args.paths`` (default: the bundled ones); return the exit code."""
    from asqhw.core.network import read_network
    from asqhw.hdl.accel import cosim, fit, program
    from asqhw.hdl.accel.cycles import image_cycles

    from .common import table

    if args.simulator != "verilator":
        raise UserError("the network co-simulation runs in Verilator only (--simulator verilator)")
    lanes = 8 if args.lanes is None else args.lanes
    if args.trace is not None:
        from asqhw.core.atomic import check_target

        if Path(args.trace).exists() or Path(args.trace).is_symlink():
            raise UserError(f"{args.trace} exists; remove it or name another trace file")
        check_target(args.trace, False)
        if Path(args.trace).suffix.lower() not in (".fst", ".vcd"):
            raise UserError(f"{args.trace}: a trace file must end in .fst or .vcd")
    records, ok = [], True
    for path in _paths(args, default_networks):
        net = read_network(path)
        if not net.samples:
            raise UserError(f"{path}: network has no golden vectors (samples = 0)")
        prog = program.build(net, lanes)

        def progress(what, _name=net.name):
            if not args.quiet:
                print(f"{_name}: {what}", file=sys.stderr, flush=True)

        run = cosim.run_network(net, prog, stall=args.stall, manual_start=args.manual_start,
                                trace=Path(args.trace) if args.trace else None, progress=progress,
                                samples=1 if args.trace else None)       # a trace covers the first sample
        model = image_cycles(prog)
        off = sum(c != model.total for c in run.cycles)
        good = run.mismatches == 0 and off == 0 and run.step_errors == 0 and len(run.cycles) == run.samples
        ok &= good
        rec = {"network": net.name, "path": str(path), "lanes": lanes, "samples": run.samples,
               "values": run.values, "mismatches": run.mismatches,
               "mismatch_list": [m.record() for m in run.listed],
               "cycles_measured": run.cycles, "cycles_model": model.total, "model_errors": off,
               "step_model_errors": run.step_errors, "stall": args.stall,
               "steps": [{"step": s.step, "op": s.op, "node": s.node, "model": s.total, "measured": mt,
                          "phases_model": s.phases, "phases_measured": mp}
                         for s, mt, mp in zip(model.steps, run.steps, run.step_phases)],
               "transfers": run.transfers, "wall_s": round(run.wall_s, 3),
               "fit": {d: fit.fit_line(prog, d) for d in fit.DEVICES}, "ok": good}
        records.append(rec)
        if args.json:
            continue
        rows = [[s.step, s.op, s.node, ", ".join(f"{k} {v}" for k, v in s.phases.items()), s.total, mt,
                 "yes" if mt == s.total else "NO"] for s, mt in zip(model.steps, run.steps)]
        print(f"{net.name} ({path}): {lanes} lanes, {run.samples} samples"
              f"{', random stalls on s_in and m_out' if args.stall else ''}")
        print(table(["step", "op", "node", "model phases", "model", "measured", "equal"], rows))
        kinds = ", ".join(f"{k} {v}" for k, v in model.by_kind().items())
        print(f"per image: {model.total} cycles ({kinds}); measured (CYCLES register) "
              f"{sorted(set(run.cycles))} over {len(run.cycles)} samples; model off in {off}")
        t = run.transfers
        line = (f"streams: {t['in_beats']} input beats, {t['out_beats']} logit beats; one image every "
                f"{t['period_model']} cycles without stalls (model)")
        if "period_measured" in t:
            line += f", {t['period_measured']} measured"
        print(line)
        for d in fit.DEVICES:
            print("fit: " + fit.fit_line(prog, d))
        for m in run.listed:
            print(f"MISMATCH {m}")
        print(f"{run.values} values compared, {run.mismatches} mismatches ({run.wall_s:.1f} s simulated)")
    if args.json:
        print(json.dumps({"networks": records, "ok": ok}, indent=1))
    else:
        print("PASS: bit-exact, cycles equal to the model" if ok else "FAIL")
    return 0 if ok else 1


def accelerator_cycles(path, lanes_list) -> list[dict]:
    """Per lanes: the accelerator's exact cycles of one image of the export at ``path``
    (``hdl.accel.cycles``), or the reason it cannot run there."""
    from asqhw.core.network import read_network
    from asqhw.hdl.accel import program
    from asqhw.hdl.accel.cycles import image_cycles

    net = read_network(path)
    out = []
    for lanes in lanes_list:
        try:
            prog = program.build(net, lanes)
        except UserError as e:
            out.append({"lanes": lanes, "error": str(e)})
            continue
        ic = image_cycles(prog)
        out.append({"lanes": lanes, "cycles_per_image": ic.total, "period_cycles": ic.period,
                    "phases": ic.by_kind(),
                    "steps": [{"step": s.step, "op": s.op, "node": s.node, "cycles": s.total, "phases": s.phases}
                              for s in ic.steps]})
    return out


def format_accelerator(rows, clock_mhz: float) -> str:
    """The text block of ``asqhw cycles --model NET.npz`` for the network accelerator."""
    from .common import table

    lines = ["network accelerator (docs/accelerator.md; exact, one image, batch 1):"]
    for r in rows:
        if "error" in r:
            lines.append(f"  lanes {r['lanes']}: cannot run on the accelerator: {r['error']}")
            continue
        lines.append(f"lanes = {r['lanes']}")
        lines.append(table(["step", "op", "node", "phases", "cycles"],
                           [[s["step"], s["op"], s["node"], ", ".join(f"{k} {v}" for k, v in s["phases"].items()),
                             s["cycles"]] for s in r["steps"]]))
        lines.append(f"per image: {r['cycles_per_image']} cycles ("
                     + ", ".join(f"{k} {v}" for k, v in r["phases"].items())
                     + f"); one image every {r['period_cycles']} cycles with the stream transfers: "
                     f"{clock_mhz * 1e6 / r['period_cycles']:.1f} images/s at {clock_mhz:g} MHz")
    return "\n".join(lines)
