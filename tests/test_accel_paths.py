"""A ``quant`` read by a pool is stored first: the path the digits and random networks never take.

A small network in the Amaranth simulator: conv -> [adapter] quant -> max pool of codes -> 1x1
pot conv (``beta_from``) -> average pool -> quant (8-bit) -> linear. Every tensor the accelerator
writes, the adapter's ``beta_q`` and the logits are compared with ``golden.netref``; the
``CYCLES`` register with the model.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from asqhw.core.network import FORMAT, FORMAT_VERSION, Network, validate
from asqhw.core.params import Datapath
from asqhw.core.spec import SPEC_VERSION
from asqhw.golden import netref
from asqhw.hdl.accel import program
from asqhw.hdl.accel.cycles import image_cycles
from asqhw.hdl.accel.regmap import register
from asqhw.hdl.accel.top import NetworkAccelerator

from netcases import _Builder, random_input


def stored_quant_net(asq: bool) -> Network:
    b = _Builder(np.random.default_rng(5), 0)
    wide = (0, 2**15 - 1)
    b.layer("c1", "input", "conv2d", dp=Datapath(fmt="uniform", a_bits=8, w_bits=8, a_signed=True), fan=9,
            target=3000, out=wide, in_channels=1, out_channels=2, kernel=[3, 3], stride=1, padding=1, groups=1)
    a1 = b.adapter("a1", "c1", 2, 16, 3000) if asq else None
    b.quant("q1", "c1", 4, a1)
    b.nodes.append({"name": "mp", "op": "maxpool", "inputs": ["q1"], "kernel": [2, 2], "stride": 2, "padding": 0})
    b.layer("c2", "mp", "conv2d", dp=Datapath(fmt="pot", a_bits=4, w_bits=4, arch="shift"), fan=2, target=2500,
            out=wide, beta=a1, in_channels=2, out_channels=3, kernel=[1, 1], stride=1, padding=0, groups=1)
    b.params["c2/w"] = np.array([[[[3]], [[2]]], [[[1]], [[4]]], [[[2]], [[1]]]])          # positive: c2 > 0
    b.params["c2/B"] = np.zeros(3, dtype=np.int64)
    b.params |= {"gap/M": [40000], "gap/sh": [17]}
    b.nodes.append({"name": "gap", "op": "avgpool", "inputs": ["c2"], "kernel": [2, 2], "stride": 2,
                    "output": {"lo": wide[0], "hi": wide[1]}})
    b.quant("q3", "gap", 8)
    b.layer("fc", "q3", "linear", dp=Datapath(fmt="uniform", a_bits=8, w_bits=8), fan=3, target=2000,
            out=(-(2**15), 2**15 - 1), in_features=3, out_features=4)
    m = {"name": "stored", "description": "", "classes": 4, "nodes": b.nodes, "output": "fc", "samples": 0,
         "input": {"shape": [1, 4, 4], "bits": 8, "signed": True, "step": 1 / 64, "mean": [0.0], "std": [1.0]},
         "format": FORMAT, "format_version": FORMAT_VERSION, "spec_version": SPEC_VERSION}
    return Network(m, {k: np.asarray(v) for k, v in b.params.items()}, {}, validate(m))


def run_images(prog, images):
    """Per image: the elements written by each step, the adapter's ``beta_q`` values, the logits
    and the ``CYCLES`` register."""
    dut = NetworkAccelerator(prog)
    out = []

    async def bench(ctx):
        for img in images:
            codes = img.reshape(-1)
            writes, betas, logits = {}, [], []
            for i, c in enumerate(codes):
                ctx.set(dut.s_in.valid, 1)
                ctx.set(dut.s_in.payload, {"data": int(c) & 0xFF, "last": int(i == len(codes) - 1)})
                await ctx.tick()
            ctx.set(dut.s_in.valid, 0)
            ctx.set(dut.m_out.ready, 1)
            for _ in range(20000):
                if ctx.get(dut.dbg_busy) and ctx.get(dut.dbg_wr_valid):
                    writes.setdefault(ctx.get(dut.dbg_step), []).append(ctx.get(dut.dbg_wr_data.as_signed()))
                if ctx.get(dut.dbg_ad_done):
                    betas.append(ctx.get(dut.dbg_beta))
                if ctx.get(dut.m_out.valid):
                    logits.append(ctx.get(dut.m_out.payload.data))
                await ctx.tick()
                if len(logits) == prog.classes:
                    break
            ctx.set(dut.m_out.ready, 0)
            ctx.set(dut.csr_addr, register("CYCLES_LO").addr)
            ctx.set(dut.csr_r_en, 1)
            await ctx.tick()
            ctx.set(dut.csr_r_en, 0)
            out.append((writes, betas, logits, ctx.get(dut.csr_r_data)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("asq", [True, False])
def test_stored_quant_and_pool_of_codes_are_bit_exact(asq):
    net = stored_quant_net(asq)
    prog = program.build(net, 2)
    assert [(s.op, s.node) for s in prog.steps if s.op == "VEC"] == [("VEC", "q1"), ("VEC", "mp"), ("VEC", "gap")]
    x = random_input(5, net.manifest, 3)
    want = netref.run_network(net, x)
    assert np.count_nonzero(want["vec/c2"]) > 10          # the path carries information to the logits
    for n, (writes, betas, logits, cycles) in enumerate(run_images(prog, x)):
        for i, s in enumerate(prog.steps):
            if s.op != "ADAPTER":
                assert writes[i] == want[f"vec/{s.node}"][n].reshape(-1).tolist(), (n, s.node)
        assert betas == ([int(want["vec/a1/beta"][n])] if asq else [])
        assert logits == want["vec/fc"][n].tolist()
        assert cycles == image_cycles(prog).total


def test_the_comparison_sees_a_wrong_stored_quant():
    net = stored_quant_net(False)
    net.node("q1")["g"] += 1                  # the hardware quantises with another shift
    prog = program.build(net, 2)
    net.node("q1")["g"] -= 1
    x = random_input(5, net.manifest, 1)
    want = netref.run_network(net, x)
    writes = run_images(prog, x)[0][0]
    q1 = next(i for i, s in enumerate(prog.steps) if s.node == "q1")
    assert writes[q1] != want["vec/q1"][0].reshape(-1).tolist()
