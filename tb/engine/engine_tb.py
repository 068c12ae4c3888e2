"""cocotb testbench of the layer engine: one golden case through the generated Verilog.

Written from docs/engine.md and the sidecar only (``host.py`` builds the stream words). The
three load streams get random valid gaps, the output stream random ready stalls; every
output code is compared with the case's ``y``, and the output stream is checked against
the AXI-Stream rules (valid and payload hold while ready is low). Settings (environment):

``ENGINE_SIDECAR``  the JSON sidecar of ``asqhw verilog --unit engine``
``ENGINE_CASE``     a golden case file (docs/vectors.md)
``ENGINE_STALL``    probability of a stall cycle per stream word (default 0.3)
``ENGINE_MUTATE``   an index of the expected codes to change (shows that the compare can fail)
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

sys.path.insert(0, str(Path(__file__).resolve().parent))
import host  # noqa: E402


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


async def _load(dut, clk, prefix: str, words: list[int], rng: random.Random, stall: float):
    """Send ``words`` on stream ``prefix`` with random valid gaps; a word moves when ready is high."""
    valid, payload, ready = (getattr(dut, f"{prefix}__{n}") for n in ("valid", "payload", "ready"))
    for w in words:
        while rng.random() < stall:
            valid.value = 0
            await RisingEdge(clk)
        valid.value = 1
        payload.value = w
        while True:
            await ReadOnly()
            moved = int(ready.value) == 1
            await RisingEdge(clk)
            if moved:
                break
    valid.value = 0


@cocotb.test()
async def engine_case(dut):
    side = json.loads(Path(os.environ["ENGINE_SIDECAR"]).read_text())
    manifest, arrays = host.read_case(os.environ["ENGINE_CASE"])
    stall = float(os.environ.get("ENGINE_STALL", "0.3"))
    rng = random.Random(int(os.environ.get("ENGINE_SEED", "1")))
    # Fill the Wr - Wp gap columns with a nonzero code: the docs say no valid lane reads them.
    img = host.build_images(side, manifest, arrays, fill_gap=1)
    expected = host.expected_codes(manifest, arrays)
    if "ENGINE_MUTATE" in os.environ:
        i = int(os.environ["ENGINE_MUTATE"])
        expected[i] += 1
    p = side["parameters"]
    clk = getattr(dut, side["clock"])
    rst = getattr(dut, side["reset"])
    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    for name in ("start", "w_in__valid", "a_in__valid", "p_in__valid", "y_out__ready"):
        getattr(dut, name).value = 0
    dut.layer.value = 0
    rst.value = 1                       # synchronous, active high
    for _ in range(2):
        await RisingEdge(clk)
    rst.value = 0

    loads = [cocotb.start_soon(_load(dut, clk, prefix, words, rng, stall))
             for prefix, words in (("w_in", img["terms"]), ("a_in", img["act"]), ("p_in", img["params"]))]
    for t in loads:
        await t
    dut.layer.value = img["layer"]
    dut.start.value = 1
    await RisingEdge(clk)
    dut.start.value = 0
    cycles = 1
    while True:
        await ReadOnly()
        if int(dut.done.value):
            break
        assert int(dut.y_out__valid.value) == 0, "y_out valid before done"
        await RisingEdge(clk)
        cycles += 1
        assert cycles < 10_000_000, "no done"
    await RisingEdge(clk)

    got, held = [], None
    idle = 0
    while len(got) < img["n_out"]:
        ready = 0 if rng.random() < stall else 1
        dut.y_out__ready.value = ready
        await ReadOnly()
        valid = int(dut.y_out__valid.value)
        payload = int(dut.y_out__payload.value)
        if held is not None:             # AXI-Stream: a stalled word stays valid and unchanged
            assert valid == 1 and payload == held, \
                f"y_out changed while stalled: valid {valid}, payload {payload} (held {held})"
        held = payload if valid and not ready else None
        if valid and ready:
            code = payload & ((1 << p["out_bits"]) - 1)
            got.append(_signed(code, p["out_bits"]) if p["out_signed"] else code)
        idle = 0 if valid else idle + 1
        assert idle < 100, f"y_out stopped after {len(got)} of {img['n_out']} codes"
        await RisingEdge(clk)
    dut.y_out__ready.value = 1
    await ReadOnly()
    assert int(dut.y_out__valid.value) == 0, "y_out still valid after the last code"
    await RisingEdge(clk)

    bad = [i for i, (e, g) in enumerate(zip(expected, got)) if e != g]
    dut._log.info("%s: %d codes, %d mismatches, %d cycles start to done",
                  manifest["name"], len(got), len(bad), cycles)
    assert not bad, (f"{len(bad)} mismatches of {len(got)}; first at output index {bad[0]}: "
                     f"expected {expected[bad[0]]}, got {got[bad[0]]}")
