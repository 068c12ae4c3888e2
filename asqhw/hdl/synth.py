"""``asqhw synth`` for dot units: build each configuration, run the sweep, write the tables.

Each configuration (:mod:`hdl.synth_config`) is built as a ``hdl.dot.DotUnit``, wrapped in
:class:`~hdl.synth_wrapper.RegisteredIO`, converted to Verilog and run through the open flow
(:mod:`hdl.synth_sweep`, :mod:`hdl.synth_tools`) on every target: yosys for resource counts,
nextpnr for the maximum clock frequency over several placement seeds. The tables are
written by :mod:`hdl.synth_report`; ``docs/hardware.md`` explains the columns. The names of
those modules that callers use are importable from here too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from asqhw.core.atomic import check_target, ensure_dir
from asqhw.core.errors import UserError
from asqhw.core.validate import check_int

from .jobs import JobRunner
from .synth_config import (DEFAULT_FAN_IN, DESIGNS, GROUPED_DESIGNS, SynthConfig, expand_configs, make_config,
                           parse_config, parse_configs, parse_int_list, parse_name_list)
from .synth_report import OUTPUT_NAMES, compare_to_baseline, format_markdown, markdown_table, write_outputs
from .synth_sweep import count_runs, seed_summary, sweep, worker_versions
from .synth_tools import TARGETS, YOSYS, Cache, default_cache_dir
from .synth_wrapper import RegisteredIO, to_verilog

__all__ = [
    "run_synth",
    "DESIGNS",
    "GROUPED_DESIGNS",
    "TARGETS",
    "DEFAULT_FAN_IN",
    "OUTPUT_NAMES",
    "SynthConfig",
    "make_config",
    "expand_configs",
    "parse_config",
    "parse_configs",
    "parse_int_list",
    "parse_name_list",
    "RegisteredIO",
    "to_verilog",
    "format_markdown",
    "markdown_table",
    "compare_to_baseline",
    "count_runs",
]


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _check_args(configs, targets, seeds, jobs, timeout, outdir, force):
    if not configs:
        raise UserError("no configuration to synthesise")
    for c in configs:
        if not isinstance(c, SynthConfig):
            raise TypeError(f"configs must be SynthConfig, not {c!r}")
    labels = [c.label for c in configs]
    dup = {lab for lab in labels if labels.count(lab) > 1}
    if dup:
        raise UserError(f"configuration listed twice: {sorted(dup)[0]}")
    if not targets:
        raise UserError("no target given")
    if len(set(targets)) != len(targets):
        raise UserError(f"target listed twice in {', '.join(targets)}")
    for t in targets:
        if t not in TARGETS:
            raise UserError(f"target must be among {', '.join(TARGETS)}, not {t!r}")
    check_int("seeds", seeds, 1, 100)
    check_int("jobs", jobs, 1, 64)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise UserError(f"time limit must be a positive number of seconds, not {timeout!r}")
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise UserError(f"output directory {out} is a file")
    existing = [str(out / n) for n in OUTPUT_NAMES if (out / n).exists()]
    if existing and not force:
        raise UserError(f"{existing[0]} exists; use --force to overwrite")
    return out


def run_synth(configs, targets, *, seeds: int = 3, jobs: int = 1, outdir, force: bool = False,
              allow_dsp: bool = False, timeout: float = 300.0, cache_dir=None,
              progress: Callable[[str], None] | None = _stderr_line,
              scheduler: str | None = None) -> list[dict]:
    """Synthesise, place and route every configuration on every target; write the tables.

    Parameters
    ----------
    configs : list of SynthConfig
        From :func:`make_config`, :func:`expand_configs` or :func:`parse_config`.
    targets : list of str
        Keys of :data:`TARGETS` (``ice40-up5k``, ``ice40-hx8k``, ``ecp5-25k``, ``xilinx``).
    seeds : int
        Place-and-route seeds 1..seeds per configuration and target (xilinx: synthesis only).
    jobs : int
        Tool runs at the same time on the local cluster (ignored with a scheduler).
    outdir : path-like
        Directory for ``synth.md``, ``synth.csv`` and ``synth.json`` (created if needed).
    force : bool
        Overwrite existing output files.
    allow_dsp : bool
        Let yosys map multipliers to DSP blocks (off: every design is built from LUTs).
    timeout : float
        Time limit of each tool run in seconds; a place-and-route run over it counts as a
        timeout, not a failure of the sweep.
    cache_dir : path-like or None
        Result cache (default :func:`hdl.synth_tools.default_cache_dir`).
    progress : callable or None
        Called with one line per finished run (default: print to stderr).
    scheduler : str or None
        Address of a running Dask scheduler to run the tool runs on (default
        ``$ASQHW_SCHEDULER``, else a local cluster in this process; :mod:`hdl.jobs`).
        Workers need the tools; only this process reads and writes the cache and outputs.

    Returns
    -------
    rows : list of dict
        One per configuration x target, keys as the columns of ``docs/hardware.md``.

    Raises
    ------
    UserError
        On bad arguments, existing outputs without ``force``, a missing tool or an
        unreachable scheduler. A tool run that fails, times out or loses its worker is
        reported in its row instead.
    """
    out = _check_args(configs, targets, seeds, jobs, timeout, outdir, force)
    say = progress or (lambda line: None)
    cache = Cache(cache_dir if cache_dir is not None else default_cache_dir())
    ensure_dir(cache.root)
    tools = [YOSYS] + sorted({TARGETS[t].pnr_tool for t in targets if TARGETS[t].pnr_tool})
    with JobRunner(jobs, scheduler) as runner:
        versions = worker_versions(runner, tools)  # every tool on every worker, before any work
        ensure_dir(out)   # an output directory that cannot be written fails now, not after the runs
        for name in OUTPUT_NAMES:
            check_target(out / name, True)
        sources = [to_verilog(c) for c in configs]
        synth, pnr = sweep(runner, configs, sources, targets, seeds, allow_dsp, timeout, cache,
                           versions, say)

    rows = []
    for i, c in enumerate(configs):
        for t in targets:
            s = synth[i, TARGETS[t].family]
            row = {"label": c.label, "design": c.design, "b_w": c.dp.w_bits, "b_a": c.dp.a_bits,
                   "lanes": c.lanes, "acc_bits": c.acc_bits, "pipeline": c.pipeline, "target": t,
                   "lut": s["lut"], "carry": s["carry"], "ff": s["ff"], "dsp": s["dsp"],
                   "cells": None, "io_bits": sources[i][1], "fmax_mhz": None, "fmax_seeds": [],
                   "seeds": [], "timeouts": 0, "error": s["error"]}
            if TARGETS[t].pnr_tool:
                seed_row = seed_summary([pnr[i, t, seed] for seed in range(1, seeds + 1)])
                row.update(seed_row, seeds=list(range(1, seeds + 1)),
                           error=row["error"] or seed_row["error"])
            rows.append(row)
    write_outputs(out, rows, {"tools": versions, "allow_dsp": allow_dsp, "seeds": seeds, "timeout_s": timeout},
                  force=bool(force))
    return rows
