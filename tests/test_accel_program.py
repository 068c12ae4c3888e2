"""The accelerator's host side: steps, regions, descriptors, layouts, register map, fit, files.

No simulator here; tests/test_accel_cosim.py runs the RTL.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from asqhw.core.errors import UserError
from asqhw.core.network import FORMAT, FORMAT_VERSION, Network, read_network, validate
from asqhw.core.spec import SPEC_VERSION
from asqhw.hdl.accel import emit, fit, program, regmap
from asqhw.hdl.accel.cycles import OUT_LATENCY, image_cycles
from asqhw.hdl.engine.adapter import adapter_cycles
from asqhw.hdl.engine.cycles import run_cycles
from asqhw.hdl.engine.program import build_program

from conftest import assert_one_line_error, run
from netcases import random_network

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "asqhw" / "golden" / "networks" / "digits_cnn_asq_post4.npz"


@pytest.fixture(scope="module")
def digits():
    return read_network(BUNDLED)


@pytest.fixture(scope="module")
def prog(digits):
    return program.build(digits, 8)


def _random(seed=0, **kw):
    m, p = random_network(seed, samples=0, **kw)
    m = dict(m, format=FORMAT, format_version=FORMAT_VERSION, spec_version=SPEC_VERSION)
    return Network(m, p, {}, validate(m))


def test_digits_steps_follow_the_nodes_with_adapters_after_their_producers(prog):
    assert [(s.op, s.node) for s in prog.steps] == [
        ("LAYER", "conv1"), ("ADAPTER", "q1_adapter"), ("LAYER", "conv2"), ("VEC", "pool"),
        ("ADAPTER", "q2_adapter"), ("LAYER", "conv3"), ("VEC", "gap"), ("ADAPTER", "q3_adapter"),
        ("LAYER", "fc")]
    taps = [s.node for s in prog.steps if s.fields.get("tap")]
    assert taps == ["conv1", "pool", "gap"]
    assert prog.steps[-1].fields["last"] == 1 and prog.steps[-1].fields["is_output"] == 1


def test_one_engine_per_distinct_datapath(prog):
    assert [e.layers for e in prog.engines] == [["conv1"], ["conv2", "conv3"], ["fc"]]
    assert [e.ecfg.out_signed for e in prog.engines] == [False, False, True]
    assert [e.ecfg.term_rom for e in prog.engines] == [tuple(e.terms) for e in prog.engines]      # terms in ROM


def test_quant_read_by_layers_is_applied_on_the_load(prog):
    conv2 = next(s for s in prog.steps if s.node == "conv2")
    assert conv2.fields["use_slot"] == 1 and conv2.fields["slot"] == 0
    assert (conv2.fields["lo"], conv2.fields["hi"]) == (0, 15)
    assert conv2.fields["src_a"] == prog.regions["conv1"][0]
    conv1 = prog.steps[0]
    assert (conv1.fields["m0"], conv1.fields["sh"], conv1.fields["lo"], conv1.fields["hi"]) == (1, 0, -128, 127)


def _live_intervals(p):
    """Per stored tensor: (step that writes it, last step that reads it)."""
    first, last = {"input": -1}, {}
    for i, s in enumerate(p.steps):
        for t in s.reads:
            last[t] = i
        if s.op in ("LAYER", "VEC"):
            first[s.node] = i
    return first, last


def _overlaps(p) -> list:
    """Pairs of stored tensors that share words of tmem while both are live."""
    first, last = _live_intervals(p)
    names = [t for t in p.regions if t in first]
    bad = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (ba, na), (bb, nb) = p.regions[a], p.regions[b]
            la, lb = (first[a], last.get(a, len(p.steps))), (first[b], last.get(b, len(p.steps)))
            if ba < bb + nb and bb < ba + na and la[0] <= lb[1] and lb[0] <= la[1]:
                bad.append((a, b))
    return bad


def test_live_regions_never_overlap(prog):
    assert _overlaps(prog) == []
    assert _overlaps(program.build(_random(0), 4)) == []
    assert _overlaps(program.build(_random(3, asq=False), 2)) == []


def test_the_overlap_check_sees_a_shared_region(digits):
    p = program.build(digits, 8)
    p.regions["conv2"] = p.regions["conv1"]          # conv2 is written while conv1 is read
    assert ("conv1", "conv2") in _overlaps(p)


@pytest.mark.parametrize("stride,pad", [(1, 1), (2, 1), (2, 0), (3, 2)])
def test_activation_walk_is_the_engine_image(stride, pad):
    from asqhw.hdl.engine.params import EngineConfig
    from asqhw.hdl.engine.program import LayerShape
    from asqhw.core.params import Datapath

    shape = LayerShape("conv2d", 3, 2, h=5, w=7, kh=3, kw=3, stride=stride, pad=pad)
    ecfg = EngineConfig(Datapath(fmt="uniform", a_bits=8, w_bits=8, a_signed=True), 4, 24, 15, False,
                        act_depth=4096, term_depth=4096, out_depth=4096)
    x = np.random.default_rng(stride * 10 + pad).integers(-128, 128, size=(1, 3, 5, 7))
    pr = build_program(ecfg, shape, x, np.ones((2, 3, 3, 3)), np.ones((2, 1)), np.zeros(2), np.zeros(2))
    idx = program.act_layout_index(shape, (3, 5, 7))
    want = np.array(pr.act)
    got = np.where(idx >= 0, x.reshape(-1)[np.maximum(idx, 0)] & 0xFF, 0)
    assert np.array_equal(got, want)


def test_descriptor_fields_pack_in_order_and_refuse_overflow():
    word = program.pack_desc({"op": 2, "last": 1, "b": -1})
    assert word & 3 == 2 and word >> 2 & 1 == 1
    off = sum(w for n, w, _ in program.DESC_FIELDS[:program.DESC_FIELDS.index(("b", 48, True))])
    assert word >> off & ((1 << 48) - 1) == (1 << 48) - 1
    with pytest.raises(UserError, match="t_count = 65536 does not fit 16 bits"):
        program.pack_desc({"t_count": 1 << 16})
    with pytest.raises(ValueError, match="unknown descriptor field"):
        program.pack_desc({"nonsense": 1})


def test_a_layer_output_outside_the_wide_ranges_is_refused():
    net = _random(0)
    net.node("c2")["output"] = {"lo": -5, "hi": 100}
    with pytest.raises(UserError, match="'c2': output range \\[-5, 100\\] is not a wide-code range"):
        program.build(net, 4)


def test_cycle_model_is_the_sum_of_its_documented_parts(prog):
    ic = image_cycles(prog)
    total = 0
    for s in prog.steps:
        f = s.fields
        if s.op == "LAYER":
            e = prog.engines[f["engine"]].ecfg
            total += 2 + max(s.act_words + 3, f["p_count"] + 2) \
                + run_cycles(e.lanes, s.shape.engine_geometry, s.counts).cycles + f["out_words"]
        elif s.op == "VEC":
            total += s.act_words + 4
        else:
            loads = [n + 2 for n in (f["aw_count"], f["aq_count"], f["am_count"]) if n]
            total += 2 + max(loads + [1]) + adapter_cycles(f["channels"], f["hidden"], multipliers=f["am_count"])
    assert ic.total == total == 76716
    assert ic.period == max(64 + 1 + total, total + 10 + OUT_LATENCY)


def test_register_map_table_in_the_docs_is_the_generated_one():
    doc = (ROOT / "docs" / "accelerator.md").read_text()
    assert regmap.markdown() in doc


def test_c_header_and_json_carry_every_field():
    h = regmap.c_header()
    js = json.loads(regmap.as_json())
    assert "#define ASQHW_CTRL_AUTO_MASK 0x00000004u" in h
    assert "#define ASQHW_CYCLES_HI_OFFSET 0x18u" in h
    names = {(r["name"], f["name"]) for r in js["registers"] for f in r["fields"]}
    assert names == {(r.name, f.name) for r in regmap.REGISTERS for f in r.fields}
    addrs = [r.addr for r in regmap.REGISTERS]
    assert len(set(addrs)) == len(addrs) and max(addrs) < 64
    assert regmap.addresses() == {r.name: r.addr for r in regmap.REGISTERS}


def test_fit_line_names_the_numbers(prog):
    line = fit.fit_line(prog, "ice40up5k")
    assert re.match(r"digits_cnn_asq_post4 does not fit ice40up5k: needs \d+ block RAMs, the device has 30", line)
    assert fit.fit(prog, "ecp5-25f")["fits"]
    kinds = fit.by_kind(fit.memories(prog))
    assert set(kinds) == {"weights", "engine", "tensors", "tables"}
    assert kinds["tensors"] == prog.tmem_depth * 16


def test_rom_images_round_trip_through_the_hex_files(prog):
    files = emit.files(prog)
    for m in emit.images(prog):
        words = [int(v, 16) for v in files[f"{m['name']}.hex"].split()]
        assert words == [int(w) for w in m["words"]]
        assert [int(v, 2) for v in files[f"{m['name']}.mem"].split()] == words
        assert all(len(v) == m["width"] for v in files[f"{m['name']}.mem"].split())
    man = json.loads(files["manifest.json"])
    assert man["cycles_per_image"] == 76716
    assert {r["name"] for r in man["roms"]} >= {"engine1_terms", "descriptors", "adapter_q"}


def test_program_command_writes_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "prog"
    code, _, err = run(capsys, "program", str(BUNDLED), "-o", str(out))
    assert code == 0, err
    assert (out / "asqhw_regmap.h").is_file() and (out / "engine0_terms.hex").is_file()
    before = (out / "manifest.json").read_bytes()
    code, _, err = run(capsys, "program", str(BUNDLED), "-o", str(out))
    assert_one_line_error(code, err, "exists; pass --force")
    assert (out / "manifest.json").read_bytes() == before
    assert run(capsys, "program", str(BUNDLED), "-o", str(out), "--force")[0] == 0


def test_program_command_refuses_bad_lanes(tmp_path, capsys):
    code, _, err = run(capsys, "program", str(BUNDLED), "-o", str(tmp_path / "x"), "--lanes", "6")
    assert_one_line_error(code, err, "--lanes must be a power of two")


def test_cycles_command_gives_the_accelerator_count_of_an_export(capsys):
    code, out, err = run(capsys, "cycles", "--model", str(BUNDLED), "--lanes", "8", "--json")
    assert code == 0, err
    acc = json.loads(out)["accelerator"][0]
    assert acc["lanes"] == 8 and acc["cycles_per_image"] == 76716
    assert [s["cycles"] for s in acc["steps"]] == [2317, 223, 35779, 2052, 631, 34231, 516, 583, 384]
    code, out, _ = run(capsys, "cycles", "--model", str(BUNDLED), "--lanes", "8")
    assert "per image: 76716 cycles" in out


def test_program_for_a_device_it_does_not_fit_is_one_line_with_the_numbers(tmp_path, capsys):
    code, _, err = run(capsys, "program", str(BUNDLED), "-o", str(tmp_path / "x"), "--device", "ice40up5k")
    assert_one_line_error(code, err, "does not fit ice40up5k: needs 63 block RAMs, the device has 30")
    assert not (tmp_path / "x").exists()
    code, _, err = run(capsys, "program", str(BUNDLED), "-o", str(tmp_path / "y"), "--device", "ecp5-25f")
    assert code == 0, err


def test_program_devices_are_the_fit_devices():
    from asqhw.cli.program_cmd import DEVICES

    assert set(DEVICES) == set(fit.DEVICES)


@pytest.mark.parametrize("name,fragment", [("t.txt", "must end in .fst or .vcd"), ("exists.vcd", "exists; remove it")])
def test_conform_network_trace_name_is_checked_before_any_work(tmp_path, capsys, name, fragment):
    (tmp_path / "exists.vcd").write_text("keep")
    code, _, err = run(capsys, "conform", "--rtl", "--unit", "network", "--trace", str(tmp_path / name), str(BUNDLED))
    assert_one_line_error(code, err, fragment)
    assert (tmp_path / "exists.vcd").read_text() == "keep"


def test_adapters_of_different_beta_formats_are_refused_in_one_line():
    net = _random(0)
    net.node("a2")["beta_bits"] = 9
    with pytest.raises(UserError, match="different \\(beta_bits, beta_frac\\) \\[\\(9, 8\\), \\(10, 8\\)\\]"):
        program.build(net, 4)


def test_the_output_layer_must_be_the_last_step():
    m, p = random_network(0, samples=0)
    m["nodes"].append({"name": "extra", "op": "maxpool", "inputs": ["c3"], "kernel": [1, 1], "stride": 1,
                       "padding": 0})
    m = dict(m, format=FORMAT, format_version=FORMAT_VERSION, spec_version=SPEC_VERSION)
    net = Network(m, p, {}, validate(m))
    with pytest.raises(UserError, match="the output node 'fc' must be the last step"):
        program.build(net, 4)
