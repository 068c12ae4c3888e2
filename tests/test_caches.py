"""Tool caches (Verilator simulators, synthesis results) survive corruption, killed runs and two runs at once.

Every entry is built privately and renamed into place, validated when read and rebuilt
when invalid. The designs are tiny so that each real tool run takes seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asqhw.cli.main import main
from asqhw.hdl.synth import make_config, to_verilog
from asqhw.hdl.synth_tools import TARGETS, Cache, place_and_route, synthesize
from asqhw.hdl.verilator import build, entry_valid

ROOT = Path(__file__).parents[1]
TINY_V = "module tiny(input clk, input [3:0] a, output [3:0] y);\n  assign y = a + 4'd1;\nendmodule\n"
TINY_CPP = ('#include "Vtiny.h"\n#include "verilated.h"\n#include <cstdio>\n'
            'int main() {\n  Vtiny top;\n  top.a = 4;\n  top.eval();\n'
            '  std::printf("%d\\n", (int)top.y);\n  return 0;\n}\n')
BUILD_SCRIPT = ("import sys\nfrom asqhw.hdl.verilator import build\n"
                f"print(build({TINY_V!r}, 'tiny', {TINY_CPP!r}, cache=sys.argv[1]))\n")
SYNTH_ARGS = ["synth", "--config", "uniform b_w=2 b_a=2 lanes=1", "--target", "ice40-up5k", "--seeds", "1"]


def runs_correctly(exe: Path) -> bool:
    return subprocess.run([str(exe)], capture_output=True, text=True).stdout.strip() == "5"


def python(*args, cache=None, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if cache is not None:
        env["ASQHW_CACHE"] = str(cache)
    return subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def kill_when(proc, cond, timeout=60.0):
    """SIGKILL ``proc``'s process group as soon as ``cond()`` holds; True if it was killed running."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            proc.communicate()
            return False
        if cond():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return True
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    return False


# ---- Verilator ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("vcache")
    exe = build(TINY_V, "tiny", TINY_CPP, cache=root)
    assert runs_correctly(exe)
    return root, exe


def test_a_cached_simulator_is_reused(built):
    root, exe = built
    mtime = exe.stat().st_mtime_ns
    assert build(TINY_V, "tiny", TINY_CPP, cache=root) == exe and exe.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_cached_simulator_is_rebuilt(built, damage):
    root, exe = built
    data = exe.read_bytes()
    if damage == "truncate":
        exe.write_bytes(data[: len(data) // 2])
    else:
        exe.unlink()
    assert not entry_valid(exe.parent)
    again = build(TINY_V, "tiny", TINY_CPP, cache=root)
    assert again == exe and entry_valid(exe.parent) and runs_correctly(again)


def test_a_build_killed_midway_leaves_nothing_that_breaks_the_next(tmp_path):
    proc = python("-c", BUILD_SCRIPT, str(tmp_path))
    started = lambda: any((d / "obj").is_dir() for d in tmp_path.glob(".tmp-*"))  # noqa: E731
    assert kill_when(proc, started), "the build finished before it could be killed"
    assert not any(entry_valid(d) for d in tmp_path.glob("tiny-*"))
    exe = build(TINY_V, "tiny", TINY_CPP, cache=tmp_path)
    assert runs_correctly(exe)
    assert not list(tmp_path.glob(".tmp-*")), "the killed build's work directory was left behind"


def test_two_builds_at_once_on_a_cold_cache_both_succeed(tmp_path):
    procs = [python("-c", BUILD_SCRIPT, str(tmp_path)) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    exes = {o[0].strip() for o in outs}
    assert len(exes) == 1 and runs_correctly(Path(exes.pop()))
    assert sorted(p.name for p in tmp_path.iterdir()) == [next(tmp_path.glob("tiny-*")).name]


# ---- synthesis --------------------------------------------------------------------------------

SYNTH_V = to_verilog(make_config("uniform", w_bits=2, a_bits=2, lanes=1))[0]


@pytest.fixture(scope="module")
def synthesised(tmp_path_factory):
    cache = Cache(tmp_path_factory.mktemp("scache"))
    first = synthesize(SYNTH_V, "ice40", allow_dsp=False, cache=cache, timeout=120)
    assert first["error"] is None and not first["cached"]
    return cache, first


def _synth_entry(cache):
    (entry,) = (cache.root / "synth").glob("*.json")
    return entry


@pytest.mark.parametrize("damage", [b"\x00\xff garbage", b'{"lut": 1', b"[]", b'{"lut": "many", "error": null}'])
def test_a_corrupt_synthesis_result_is_recomputed(synthesised, damage):
    cache, first = synthesised
    _synth_entry(cache).write_bytes(damage)
    again = synthesize(SYNTH_V, "ice40", allow_dsp=False, cache=cache, timeout=120)
    assert not again["cached"] and again["lut"] == first["lut"] and again["error"] is None
    assert synthesize(SYNTH_V, "ice40", allow_dsp=False, cache=cache, timeout=120)["cached"]


def test_a_truncated_cached_netlist_is_resynthesised_not_an_error(synthesised):
    cache, first = synthesised
    netlist = Path(first["netlist"])
    netlist.write_bytes(netlist.read_bytes()[:100])
    again = synthesize(SYNTH_V, "ice40", allow_dsp=False, cache=cache, timeout=120)
    assert not again["cached"] and json.loads(Path(again["netlist"]).read_text())
    res = place_and_route(again["netlist"], TARGETS["ice40-up5k"], 1, cache=cache, timeout=120)
    assert res["status"] == "ok" and res["fmax_mhz"] > 0


def test_a_corrupt_place_and_route_result_is_recomputed(synthesised):
    cache, first = synthesised
    target = TARGETS["ice40-up5k"]
    ok = place_and_route(first["netlist"], target, 2, cache=cache, timeout=120)
    for entry in (cache.root / "pnr").glob("*.json"):
        entry.write_text('{"status": "ok", "fmax_mhz": "fast"}')
    again = place_and_route(first["netlist"], target, 2, cache=cache, timeout=120)
    assert not again["cached"] and again["fmax_mhz"] == ok["fmax_mhz"]


def test_two_synth_runs_at_once_on_a_cold_cache_both_succeed(tmp_path):
    procs = [python("-m", "asqhw.cli", *SYNTH_ARGS, "-o", str(tmp_path / f"out{i}"), cache=tmp_path / "cache")
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    assert (tmp_path / "out0" / "synth.json").read_text().count('"fmax_mhz"') == 1
    assert not list((tmp_path / "cache" / "synth" / "asqhw_run").iterdir())


def test_a_synth_run_killed_midway_leaves_nothing_that_breaks_the_next(tmp_path):
    cache = tmp_path / "cache"
    proc = python("-m", "asqhw.cli", *SYNTH_ARGS, "-o", str(tmp_path / "out"), cache=cache)
    runs = cache / "synth" / "asqhw_run"
    assert kill_when(proc, lambda: runs.is_dir() and any(runs.iterdir()))
    again = python("-m", "asqhw.cli", *SYNTH_ARGS, "-o", str(tmp_path / "out"), "--force", cache=cache)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-800:]
    assert not list(runs.iterdir()), "the killed run's work directory was left behind"


def test_synth_exits_nonzero_when_its_runs_fail(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ASQHW_CACHE", str(tmp_path / "cache"))
    code = main([*SYNTH_ARGS, "--timeout", "0.001", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("asqhw: error: 1 of 1 results failed")
    assert "timed out" in err[-1]
