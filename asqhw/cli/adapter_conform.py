"""``asqhw conform --rtl --unit adapter``: every adapter of network exports through the RTL unit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asqhw.core.errors import UserError

__all__ = ["conform_adapters"]

MAX_LISTED = 20


def _network_paths(paths) -> list[Path]:
    from asqhw.cli.netconform import split_paths

    cases, nets = split_paths(paths)
    for p in cases:
        if not Path(p).exists():
            raise UserError(f"{p}: no such file or directory")
        raise UserError(f"{p}: not a network export; --unit adapter checks the adapters of networks")
    return nets


def conform_adapters(args, default_networks) -> int:
    """Run the adapters of ``args.paths`` (default: the bundled networks) in Verilator.

    Checks ``S``, ``P``, ``H``, ``beta_q`` against the golden vectors, ``R`` and ``sh``
    against section 14 of the spec applied to the golden ``beta_q``, and every sample's
    cycle count against :func:`hdl.engine.adapter.adapter_cycles`. Returns the exit code.
    """
    from asqhw.core.network import read_network

    from asqhw.hdl.engine.adapter import adapter_cycles
    from asqhw.hdl.engine.adapter_cosim import (adapter_jobs, build_adapter, compare_run, config_of, expected_of, hw_of,
                                run_adapter)

    if args.simulator != "verilator":
        raise UserError("the adapter co-simulation runs in Verilator only (--simulator verilator)")
    nets = [read_network(p) for p in _network_paths(args.paths or [default_networks()])]
    for net in nets:
        if not net.samples:
            raise UserError(f"{net.path}: network has no golden vectors (samples = 0)")
        if not any(nd["op"] == "adapter" for nd in net.nodes):
            raise UserError(f"{net.path}: network has no adapter nodes")
    builds = {}
    for cfg in config_of(nets):
        try:
            cfg.check()
        except ValueError as e:
            raise UserError(f"an adapter of these networks is too large for the unit ({e})") from None
        if not args.quiet:
            print(f"building {cfg.module()}", file=sys.stderr, flush=True)
        builds[(cfg.beta_bits, cfg.beta_frac)] = (cfg, *build_adapter(cfg))
    rows, listed, bad_total, off_total = [], [], 0, 0
    for net in nets:
        for name, nd, params, z, g, mults in adapter_jobs(net):
            cfg, exe, ports = builds[(nd["beta_bits"], nd["beta_frac"])]
            run = run_adapter(cfg, exe, ports, nd, params, z, g, mults, name=f"{net.name}/{name}")
            exp = expected_of(net, nd, net.vectors)
            bad = compare_run(net.name, name, run, exp)
            model = adapter_cycles(nd["channels"], nd["hidden"], multipliers=len(mults))
            off = sum(c != model for c in run.cycles)
            values = sum(int(v.size) for v in exp.values())
            bad_total += len(bad)
            off_total += off
            listed += bad[:MAX_LISTED - len(listed)] if len(listed) < MAX_LISTED else []
            rows.append({"network": net.name, "adapter": name, "channels": nd["channels"],
                         "hidden": nd["hidden"], "hw": hw_of(net, nd), "multipliers": len(mults),
                         "samples": len(run.cycles),
                         "values": values, "mismatches": len(bad), "cycles": sorted(set(run.cycles)),
                         "model_cycles": model, "model_off": off})
    ok = bad_total == 0 and off_total == 0
    if args.json:
        print(json.dumps({"summary": {"adapters": len(rows), "mismatches": bad_total,
                                      "model_cycle_errors": off_total, "ok": ok,
                                      "rtl_unit": "adapter", "rtl_simulator": "verilator"},
                          "adapters": rows,
                          "mismatch_list": [dict(zip(("network", "adapter", "array", "sample", "index",
                                                      "expected", "actual"), b)) | {"index": list(b[4])}
                                            for b in listed]}, indent=1))
        return 0 if ok else 1
    from asqhw.cli.common import table

    print(table(["network", "adapter", "C", "C_h", "H*W", "M_n", "samples", "values", "mismatches",
                  "rtl cycles", "model cycles"],
                 [[r["network"], r["adapter"], r["channels"], r["hidden"], r["hw"], r["multipliers"],
                   r["samples"],
                   r["values"], r["mismatches"], "/".join(map(str, r["cycles"])), r["model_cycles"]]
                  for r in rows]))
    print("(values: S, P, H, beta_q, R, sh and the per-sample multipliers M_n of the consuming\n"
          " layers, every sample; cycles per sample, start to done)\n")
    for b in listed:
        print(f"MISMATCH {b[0]} {b[1]} {b[2]}[sample {b[3]}{''.join(f', {i}' for i in b[4])}]: "
              f"expected {b[5]}, got {b[6]}")
    print(f"{len(rows)} adapters: {bad_total} mismatches; cycle model off in {off_total} samples")
    print("PASS: bit-exact" if ok else "FAIL: mismatches found")
    return 0 if ok else 1
