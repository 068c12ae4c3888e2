"""The accelerator's host interface, in the Amaranth simulator on a one-layer network.

Streams (``s_in``, ``m_out``: valid/ready, ``last``), the register block (docs/accelerator.md
table), framing errors, ``AUTO``/``START``, ``SOFT_RESET``; logits against ``golden.netref``.
Runs in a second; tests/test_accel_cosim.py covers whole networks in Verilator.
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from asqhw.core.network import FORMAT, FORMAT_VERSION, Network, validate
from asqhw.core.spec import SPEC_VERSION
from asqhw.golden import netref
from asqhw.hdl.accel import program
from asqhw.hdl.accel.cycles import image_cycles
from asqhw.hdl.accel.regmap import ID_MAGIC, register
from asqhw.hdl.accel.top import NetworkAccelerator

R = {name: register(name).addr for name in ("ID", "VERSION", "CTRL", "STATUS", "IMAGES", "CYCLES_LO",
                                            "CYCLES_HI", "IN_CODES", "OUT_LOGITS", "PROGRAM", "STEPS",
                                            "FRAME_ERRORS")}
BUSY, DONE, ERR, IN_READY, OUT_VALID, WAITING = (1 << i for i in range(6))


def tiny_net() -> Network:
    """input 1x2x2 (signed 8-bit) -> linear 4 -> 3 logits."""
    node = {"name": "fc", "op": "linear", "inputs": ["input"], "in_features": 4, "out_features": 3,
            "activation": {"bits": 8, "signed": True},
            "weights": {"format": "uniform", "bits": 8, "e_max": None, "arch": "mul", "frac_bits": 0,
                        "storage_bits": 8},
            "accumulator": {"bits": 18}, "output": {"lo": -32768, "hi": 32767}, "beta_from": None}
    m = {"name": "tiny", "description": "", "classes": 3, "nodes": [node], "output": "fc", "samples": 0,
         "input": {"shape": [1, 2, 2], "bits": 8, "signed": True, "step": 1.0, "mean": [0.0], "std": [1.0]},
         "format": FORMAT, "format_version": FORMAT_VERSION, "spec_version": SPEC_VERSION}
    p = {"fc/w": np.array([[1, -2, 3, -4], [5, 6, -7, 8], [-128, 127, 0, 1]], dtype=np.int16),
         "fc/M": np.array([[40000], [30000], [65535]]), "fc/B": np.array([1000, -5000, 0]),
         "fc/sh": np.array([8, 10, 3])}
    return Network(m, p, {}, validate(m))


NET = tiny_net()
PROG = program.build(NET, 2)
IMAGES = np.array([[[[-128, 127], [5, -7]]], [[[3, 3], [3, 3]]], [[[0, -1], [100, -100]]]])
WANT = netref.run_network(NET, IMAGES)["vec/fc"].tolist()


def simulate(bench_body):
    """Run ``bench_body(h)`` against a fresh accelerator; ``h`` has the helpers below."""
    dut = NetworkAccelerator(PROG)

    class H:
        def __init__(self, ctx):
            self.ctx = ctx

        async def read(self, name):
            c = self.ctx
            c.set(dut.csr_addr, R[name] if isinstance(name, str) else name)
            c.set(dut.csr_r_en, 1)
            await c.tick()
            c.set(dut.csr_r_en, 0)
            return c.get(dut.csr_r_data)

        async def write(self, name, value):
            c = self.ctx
            c.set(dut.csr_addr, R[name])
            c.set(dut.csr_w_data, value)
            c.set(dut.csr_w_en, 1)
            await c.tick()
            c.set(dut.csr_w_en, 0)

        async def send(self, codes, last_at=None, gaps=0):
            """Send ``codes`` with ``last`` on index ``last_at`` (default: the final one)."""
            c = self.ctx
            last_at = len(codes) - 1 if last_at is None else last_at
            for i, v in enumerate(codes):
                for _ in range(gaps):
                    c.set(dut.s_in.valid, 0)
                    await c.tick()
                c.set(dut.s_in.valid, 1)
                c.set(dut.s_in.payload, {"data": int(v) & 0xFF, "last": int(i == last_at)})
                while not c.get(dut.s_in.ready):
                    await c.tick()
                await c.tick()
            c.set(dut.s_in.valid, 0)

        async def receive(self, n=3, stall_every=0, limit=5000):
            c = self.ctx
            out, t = [], 0
            while len(out) < n and t < limit:
                ready = not (stall_every and t % stall_every)
                c.set(dut.m_out.ready, int(ready))
                if ready and c.get(dut.m_out.valid):
                    out.append((c.get(dut.m_out.payload.data), c.get(dut.m_out.payload.last)))
                await c.tick()
                t += 1
            c.set(dut.m_out.ready, 0)
            return out

        async def ticks(self, n):
            await self.ctx.tick().repeat(n)

    H.dut = dut
    result = {}

    async def bench(ctx):
        result["value"] = await bench_body(H(ctx))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return result["value"]


def _logits(out):
    return [v for v, _ in out], [last for _, last in out]


def test_identity_registers():
    async def body(h):
        return [await h.read(n) for n in ("ID", "VERSION", "IN_CODES", "OUT_LOGITS", "STEPS", "PROGRAM")] \
            + [await h.read(63)]
    got = simulate(body)
    assert got == [ID_MAGIC, 0x01010100, 4, 3, 1, int(PROG.digest()[:8], 16), 0]


def test_images_in_logits_out_equal_the_reference_with_backpressure():
    async def body(h):
        outs = []
        for img in IMAGES:
            await h.send(img.reshape(-1), gaps=1)
            outs.append(await h.receive(stall_every=3))
        return outs, await h.read("IMAGES"), await h.read("CYCLES_LO"), await h.read("CYCLES_HI")
    outs, images, lo, hi = simulate(body)
    for got, want in zip(outs, WANT):
        assert _logits(got) == (want, [0, 0, 1])
    assert images == 3
    assert lo | hi << 32 == image_cycles(PROG).total


def test_logits_wait_for_ready_and_the_next_image_waits_for_the_logits():
    async def body(h):
        await h.send(IMAGES[0].reshape(-1))
        await h.ticks(200)
        status = await h.read("STATUS")
        await h.send(IMAGES[1].reshape(-1))            # accepted: the run is over
        await h.ticks(200)
        waiting = await h.read("STATUS")
        first = await h.receive()
        second = await h.receive()
        return status, waiting, first, second
    status, waiting, first, second = simulate(body)
    assert status & OUT_VALID and status & DONE and not status & BUSY
    assert waiting & WAITING                           # image 1 in, logits of image 0 unread
    assert _logits(first)[0] == WANT[0] and _logits(second)[0] == WANT[1]


def test_early_last_is_a_framing_error_and_the_image_is_dropped():
    async def body(h):
        await h.send(IMAGES[0].reshape(-1)[:2])        # last on the second code
        err = await h.read("STATUS")
        await h.send(IMAGES[1].reshape(-1))
        out = await h.receive()
        return err, out, await h.read("FRAME_ERRORS"), await h.read("IMAGES")
    err, out, ferr, images = simulate(body)
    assert err & ERR and ferr == 1 and images == 1
    assert _logits(out)[0] == WANT[1]


def test_missing_last_drops_codes_up_to_the_next_last():
    async def body(h):
        await h.send(list(IMAGES[0].reshape(-1)) + [9, 9], last_at=5)     # 6 codes, last on the sixth
        await h.send(IMAGES[2].reshape(-1))
        out = await h.receive()
        return out, await h.read("FRAME_ERRORS"), await h.read("IMAGES")
    out, ferr, images = simulate(body)
    assert ferr == 1 and images == 1
    assert _logits(out)[0] == WANT[2]


def test_status_done_and_error_are_write_one_to_clear():
    async def body(h):
        await h.send(IMAGES[0].reshape(-1)[:1])          # framing error
        await h.send(IMAGES[0].reshape(-1))
        await h.receive()
        before = await h.read("STATUS")
        await h.write("STATUS", DONE)
        mid = await h.read("STATUS")
        await h.write("STATUS", ERR)
        return before, mid, await h.read("STATUS")
    before, mid, after = simulate(body)
    assert before & DONE and before & ERR
    assert not mid & DONE and mid & ERR
    assert not after & ERR


def test_with_auto_off_an_image_waits_for_start():
    async def body(h):
        await h.write("CTRL", 0)
        ctrl = await h.read("CTRL")
        await h.send(IMAGES[0].reshape(-1))
        await h.ticks(100)
        waiting = await h.read("STATUS")
        await h.write("CTRL", 1)                           # START (AUTO stays 0)
        out = await h.receive()
        return ctrl, waiting, out, await h.read("IMAGES")
    ctrl, waiting, out, images = simulate(body)
    assert ctrl == 0 and waiting & WAITING and not waiting & BUSY
    assert _logits(out)[0] == WANT[0] and images == 1


def test_soft_reset_mid_run_returns_to_receive_and_clears_the_counters():
    async def body(h):
        await h.send(IMAGES[0].reshape(-1))
        await h.receive()
        await h.send(IMAGES[1].reshape(-1))
        await h.ticks(3)
        busy = await h.read("STATUS")
        await h.write("CTRL", 2 | 4)                       # SOFT_RESET, AUTO stays 1
        after = [await h.read(n) for n in ("STATUS", "IMAGES", "CYCLES_LO")]
        await h.send(IMAGES[2].reshape(-1))
        return busy, after, await h.receive(), await h.read("IMAGES")
    busy, after, out, images = simulate(body)
    assert busy & BUSY
    assert after[0] & IN_READY and not after[0] & (BUSY | DONE) and after[1:] == [0, 0]
    assert _logits(out)[0] == WANT[2] and images == 1
