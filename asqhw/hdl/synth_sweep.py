"""The synthesis sweep: every yosys and nextpnr run of a set of designs, cached or as Dask tasks.

Shared by ``asqhw synth`` for dot units (:mod:`hdl.synth`) and for layer engines
(:mod:`hdl.engine.synth`). Results are read from the cache of :mod:`hdl.synth_tools`
where they exist; the other runs go to a :class:`hdl.jobs.JobRunner`.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from asqhw.core.errors import UserError

from . import synth_tools as tools_
from .jobs import JobRunner
from .synth_tools import TARGETS, tool_versions

__all__ = ["count_runs", "worker_versions", "sweep", "seed_summary"]


def count_runs(configs, targets, seeds: int) -> int:
    """Number of tool runs a sweep performs when nothing is cached (syntheses + P&R seeds)."""
    families = {TARGETS[t].family for t in targets}
    pnr = sum(1 for t in targets if TARGETS[t].pnr_tool)
    return len(configs) * (len(families) + pnr * seeds)


def worker_versions(runner: JobRunner, tools: list[str]) -> dict[str, str]:
    """Tool versions, the same on every worker, or a UserError (a missing tool included)."""
    found = runner.on_workers(tool_versions, tools)
    first = next(iter(found.values()))
    for worker, versions in found.items():
        if versions != first:
            raise UserError(f"the Dask workers have different tools: {first} vs {versions} "
                            f"on {worker}")
    return first


def sweep(runner, configs, sources, targets, seeds, allow_dsp, timeout, cache, versions, say):
    """Every synthesis and place-and-route run: cached ones read here, the rest on the cluster.

    ``configs`` need only a ``label``; ``sources`` are ``(verilog, io_bits)`` per configuration.
    Returns ``synth[i, family]`` and ``pnr[i, target, seed]``, the result dicts of
    :mod:`hdl.synth_tools`; ``say`` is called with one line per finished run.
    """
    families = sorted({TARGETS[t].family for t in targets})
    pnr_targets = [t for t in targets if TARGETS[t].pnr_tool]
    total = count_runs(configs, targets, seeds)
    done = 0
    scratch = None if runner.remote else cache.root   # a worker elsewhere: its own cache dir
    synth: dict[tuple[int, str], dict] = {}
    pnr: dict[tuple[int, str, int], dict] = {}

    def report(line, cached):
        nonlocal done
        done += 1
        say(f"[{done}/{total}] {line}{' (cached)' if cached else ''}")

    def got_synth(i, fam, res):
        synth[i, fam] = res
        what = res["error"] or (f"{res['lut']} LUT, {res['carry']} carry, {res['ff']} FF, "
                                f"{res['dsp']} DSP")
        report(f"{configs[i].label} {fam} synthesis: {what}", res["cached"])
        for t in pnr_targets:
            if TARGETS[t].family == fam:
                for seed in range(1, seeds + 1):
                    start_pnr(i, t, seed, res)

    def got_pnr(i, t, seed, res):
        pnr[i, t, seed] = res
        what = (f"{res['fmax_mhz']:.1f} MHz" if res["status"] == "ok"
                else f"{res['status']}: {res['error']}")
        report(f"{configs[i].label} {t} seed {seed}: {what}", res["cached"])

    def start_pnr(i, t, seed, res):
        if res["netlist"] is None:
            pnr[i, t, seed] = {"fmax_mhz": None, "cells": None, "status": "error",
                               "error": res["error"], "cached": True}
            report(f"{configs[i].label} {t} seed {seed}: skipped, synthesis failed", False)
            return
        netlist = Path(res["netlist"]).read_bytes()
        key = tools_.pnr_key(netlist, TARGETS[t], seed, versions)
        hit = tools_.cached_pnr(cache, key, timeout)
        if hit is not None:
            got_pnr(i, t, seed, hit)
        else:
            runner.submit(tools_.run_nextpnr, netlist, TARGETS[t], seed, timeout=timeout,
                          scratch=scratch, tag=("pnr", i, t, seed, key), name="nextpnr")

    for i in range(len(configs)):
        for fam in families:
            key = tools_.synth_key(sources[i][0], fam, allow_dsp, versions)
            hit = tools_.cached_synthesis(cache, key, fam)
            if hit is not None:
                got_synth(i, fam, hit)
            else:
                runner.submit(tools_.run_yosys, sources[i][0], fam, allow_dsp=allow_dsp,
                              timeout=timeout, scratch=scratch, tag=("synth", i, fam, key),
                              name="yosys")
    for outcome in runner.results():
        if outcome.tag[0] == "synth":
            _, i, fam, key = outcome.tag
            if outcome.error is None:
                got_synth(i, fam, tools_.store_synthesis(cache, key, fam, outcome.value))
            else:
                got_synth(i, fam, {"cells": {}, "lut": None, "carry": None, "ff": None,
                                   "dsp": None, "netlist": None, "cached": False,
                                   "error": f"yosys task failed: {outcome.error}"})
        else:
            _, i, t, seed, key = outcome.tag
            if outcome.error is None:
                got_pnr(i, t, seed, tools_.store_pnr(cache, key, outcome.value))
            else:
                got_pnr(i, t, seed, {"fmax_mhz": None, "cells": None, "status": "error",
                                     "limit_s": timeout, "cached": False,
                                     "error": f"nextpnr task failed: {outcome.error}"})
    return synth, pnr


def seed_summary(runs: list[dict]) -> dict:
    """One configuration and target's place-and-route seeds in a row's terms.

    ``fmax_mhz`` is the median over the seeds that finished (None if none did),
    ``fmax_seeds`` each seed's Fmax or status, ``timeouts`` how many ran out of time,
    ``cells`` the first cell count reported, ``error`` the first failed seed's message.
    """
    ok = [r["fmax_mhz"] for r in runs if r["status"] == "ok"]
    return {"fmax_mhz": round(statistics.median(ok), 2) if ok else None,
            "fmax_seeds": [r["fmax_mhz"] if r["status"] == "ok" else r["status"] for r in runs],
            "timeouts": sum(r["status"] == "timeout" for r in runs),
            "cells": next((r["cells"] for r in runs if r["cells"] is not None), None),
            "error": next((r["error"] for r in runs if r["status"] == "error"), None)}
