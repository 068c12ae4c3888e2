"""The host bridge (asqhw/hdl/board/bridge.py) against the protocol of docs/board.md.

The bridge drives a stand-in accelerator (tests/board_double.py) with the real one's host
interface; every reply is compared byte for byte with what the protocol says, under
random gaps between received bytes and random stalls of the transmitter.
"""

from __future__ import annotations

import gc
import random
import warnings

import pytest
from amaranth.hdl import Module, UnusedElaboratable
from amaranth.lib import wiring
from amaranth.sim import Simulator

from asqhw.hdl.board.bridge import HostBridge
from asqhw.host import protocol as P
from board_double import ID, REGS, DoubleAccelerator, ref_logits

pytestmark = pytest.mark.rtl            # the Amaranth simulator


def rtl_replies(host_bytes, *, seed=0, gap=0, stall=0.0, timeout=1 << 16, pauses=None, n_logits=10,
                limit=400_000, busy=None):
    """Bytes the bridge answers to ``host_bytes`` (sent one at a time, with ``gap`` random idle
    cycles at most between them and ``pauses[i]`` idle cycles before byte ``i``), with the
    transmitter stalled at random with probability ``stall``; ends 200 quiet cycles after the last byte.
    ``busy``: a list that receives the bridge's ``busy`` of every cycle."""
    pauses = pauses or {}
    rng = random.Random(seed)
    bridge = HostBridge(timeout=timeout)
    acc = DoubleAccelerator(n_logits)
    m = Module()
    m.submodules.bridge, m.submodules.acc = bridge, acc
    wiring.connect(m, bridge.codes, acc.s_in)
    wiring.connect(m, acc.m_out, bridge.logits)
    m.d.comb += [acc.csr_addr.eq(bridge.csr_addr), acc.csr_w_en.eq(bridge.csr_w_en),
                 acc.csr_w_data.eq(bridge.csr_w_data), acc.csr_r_en.eq(bridge.csr_r_en),
                 bridge.csr_r_data.eq(acc.csr_r_data)]
    got = []

    async def bench(ctx):
        pending = list(host_bytes)
        wait = pauses.get(0, 0)
        quiet = 0
        for _ in range(limit):
            if pending and wait == 0:
                ctx.set(bridge.rx.valid, 1)
                ctx.set(bridge.rx.payload, pending[0])
            else:
                ctx.set(bridge.rx.valid, 0)
            ctx.set(bridge.tx.ready, int(rng.random() >= stall))
            sent = ctx.get(bridge.rx.valid) and ctx.get(bridge.rx.ready)
            if ctx.get(bridge.tx.valid) and ctx.get(bridge.tx.ready):
                got.append(ctx.get(bridge.tx.payload))
                quiet = 0
            if busy is not None:
                busy.append(ctx.get(bridge.busy))
            await ctx.tick()
            if sent:
                pending.pop(0)
                wait = (rng.randint(0, gap) if gap else 0) + pauses.get(len(host_bytes) - len(pending), 0)
            elif wait:
                wait -= 1
            if not pending:
                quiet += 1
                if quiet > 200:
                    break

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return bytes(got)


def logits_reply(codes, n_logits=10):
    values = ref_logits(list(codes), n_logits)
    return b"L" + b"".join((v & 0xFFFFFFFF).to_bytes(4, "little") + bytes([k == len(values) - 1])
                           for k, v in enumerate(values))


def status_reply(*names):
    return b"S" + bytes([sum(1 << P.FLAGS[n] for n in names), P.VERSION])


def test_read_answers_the_register_little_endian():
    assert rtl_replies(P.read_cmd(REGS["ID"])) == b"R" + ID.to_bytes(4, "little")


def test_write_then_read_back():
    cmds = P.write_cmd(REGS["SCRATCH"], 0xDEADBEEF) + P.read_cmd(REGS["SCRATCH"])
    assert rtl_replies(cmds) == b"W" + b"R" + (0xDEADBEEF).to_bytes(4, "little")


def test_image_then_logits():
    codes = [5, -3, 127, -128, 0, 1, 2, 3]
    assert rtl_replies(P.image_cmd(codes) + P.LOGITS_CMD) == b"I" + logits_reply(codes)


def test_logits_reference_can_fail():
    codes = [5, -3, 127, -128]
    assert rtl_replies(P.image_cmd(codes) + P.LOGITS_CMD) != b"I" + logits_reply([5, -3, 127, -127])


def test_status_reports_the_version_and_no_flags():
    assert rtl_replies(P.STATUS_CMD) == status_reply()


def test_unknown_command_answers_question_mark_and_sets_a_flag_until_read():
    assert rtl_replies(b"x" + P.STATUS_CMD + P.STATUS_CMD) == b"?" + status_reply("BAD_COMMAND") + status_reply()


@pytest.mark.parametrize("cmd", [b"R\x40", b"W\xff\x01\x02\x03\x04", b"I\x00\x00"])
def test_bad_address_or_empty_image_answers_question_mark(cmd):
    assert rtl_replies(cmd + P.STATUS_CMD) == b"?" + status_reply("BAD_COMMAND")


def test_a_command_whose_arguments_stop_is_abandoned_after_the_timeout():
    cmds = b"W\x05" + P.STATUS_CMD + P.read_cmd(REGS["ID"])
    assert rtl_replies(cmds, timeout=40, pauses={2: 45}) == status_reply("TIMEOUT") + b"R" + ID.to_bytes(4, "little")


def test_a_pause_shorter_than_the_timeout_is_waited_for():
    cmds = P.write_cmd(REGS["SCRATCH"], 7) + P.read_cmd(REGS["SCRATCH"]) + P.STATUS_CMD
    assert rtl_replies(cmds, timeout=40, pauses={2: 35, 4: 35}) == b"WR" + (7).to_bytes(4, "little") + status_reply()


def test_a_byte_abandons_a_logits_command_that_waits():
    assert rtl_replies(P.LOGITS_CMD + b"\x00" + P.STATUS_CMD, pauses={1: 30}) == b"L" + status_reply()


def test_busy_is_high_from_a_command_byte_to_the_end_of_its_reply():
    trace = []
    assert rtl_replies(P.image_cmd([1, 2, 3]), busy=trace, stall=0.5) == b"I"
    high = [i for i, b in enumerate(trace) if b]
    assert trace[0] == 0 and trace[-1] == 0
    assert high == list(range(high[0], high[-1] + 1)) and len(high) >= 6


@pytest.mark.parametrize("seed", range(3))
def test_random_command_sequences_with_gaps_and_stalls(seed):
    rng = random.Random(seed)
    cmds, want = b"", b""
    for _ in range(8):
        kind = rng.choice("wrisx")
        if kind == "w":
            value = rng.randrange(1 << 32)
            cmds += P.write_cmd(REGS["SCRATCH"], value) + P.read_cmd(REGS["SCRATCH"])
            want += b"WR" + value.to_bytes(4, "little")
        elif kind == "r":
            cmds += P.read_cmd(REGS["ID"])
            want += b"R" + ID.to_bytes(4, "little")
        elif kind == "i":
            codes = [rng.randrange(-128, 128) for _ in range(rng.randint(1, 70))]
            cmds += P.image_cmd(codes) + P.LOGITS_CMD
            want += b"I" + logits_reply(codes)
        elif kind == "s":
            cmds += P.STATUS_CMD
            want += status_reply()
        else:
            cmds += b"\xaa" + P.STATUS_CMD
            want += b"?" + status_reply("BAD_COMMAND")
    assert rtl_replies(cmds, seed=seed, gap=3, stall=0.5) == want


def test_images_counter_and_cycles_through_registers():
    codes = list(range(-10, 10))
    cmds = (P.write_cmd(REGS["CTRL"], 2) + P.image_cmd(codes) + P.LOGITS_CMD + P.image_cmd(codes) + P.LOGITS_CMD
            + P.read_cmd(REGS["IMAGES"]))
    assert rtl_replies(cmds).endswith(b"R" + (2).to_bytes(4, "little"))


def test_bridge_refuses_a_bad_timeout():
    assert "timeout" in refusal(HostBridge, timeout=0)


def refusal(cls, *args, **kwargs) -> str:
    """The TypeError message of a refused construction (the half-built component is not reported unused)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            cls(*args, **kwargs)
        except TypeError as e:
            message = str(e)
        else:
            message = ""
        gc.collect()
    return message
