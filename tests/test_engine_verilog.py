# amaranth: UnusedElaboratable=no
"""`asqhw verilog --unit engine`: lint-clean Verilog, sidecar, FuseSoC core, no overwrite."""

import json

import pytest

from asqhw.cli.main import main
from asqhw.core.errors import UserError
from asqhw.core.params import Datapath

from asqhw.hdl.engine.emit import generate, module_name
from asqhw.hdl.engine.params import EngineConfig
from asqhw.hdl.verilator import lint

SMALL = dict(act_depth=256, term_depth=256, out_depth=256, max_channels=8)
VARIANTS = {
    "uniform4-any-l4": EngineConfig(Datapath("uniform", 4, 4), 4, 16, 4, False, "any", **SMALL),
    "uniform4-grouped-l4": EngineConfig(Datapath("uniform", 4, 4), 4, 16, 4, False, "grouped", **SMALL),
    "pot3-grouped-l1": EngineConfig(Datapath("pot", 4, 3), 1, 14, 4, False, "grouped", **SMALL),
    "pot4-any-l2": EngineConfig(Datapath("pot", 4, 4), 2, 18, 8, False, "any", **SMALL),
    "post4-split-grouped-l8s": EngineConfig(Datapath("post", 8, 4, arch="split", a_signed=True), 8, 20, 8,
                                            True, "grouped", **SMALL),
    "post4-split-any-l4": EngineConfig(Datapath("post", 4, 4, arch="split"), 4, 16, 8, False, "any", **SMALL),
    "post3-lut-any-l4": EngineConfig(Datapath("post", 4, 3, arch="lut"), 4, 16, 4, False, "any", **SMALL),
}


@pytest.mark.parametrize("label", list(VARIANTS))
def test_engine_verilog_is_lint_clean(tmp_path, label):
    ecfg = VARIANTS[label]
    vpath, jpath, cpath = generate(ecfg, tmp_path)
    lint(vpath, module_name(ecfg))


def test_sidecar_names_memories_ports_and_the_cycle_formula(tmp_path):
    ecfg = VARIANTS["post4-split-grouped-l8s"]
    _, jpath, cpath = generate(ecfg, tmp_path)
    side = json.loads(jpath.read_text())
    names = {p["name"] for p in side["ports"]}
    assert {"start", "done", "busy", "w_in__payload", "a_in__valid", "y_out__ready", "layer"} <= names
    assert side["memories"]["activation"] == {"width": 8, "depth": 256, "read_ports": 8}
    assert side["memory_bits"]["term"] == 256 * ecfg.term_bits
    assert "max(n_c, nv_j + 1)" in side["cycle_formula"]
    core = cpath.read_text()
    assert core.startswith("CAPI=2:") and f"toplevel: {side['module']}" in core


def test_engine_verilog_is_deterministic(tmp_path):
    ecfg = VARIANTS["pot3-grouped-l1"]
    a = generate(ecfg, tmp_path / "a")[0].read_bytes()
    b = generate(ecfg, tmp_path / "b")[0].read_bytes()
    assert a == b


def test_engine_verilog_never_overwrites(tmp_path):
    ecfg = VARIANTS["pot3-grouped-l1"]
    generate(ecfg, tmp_path)
    with pytest.raises(UserError, match="exists; pass --force"):
        generate(ecfg, tmp_path)
    generate(ecfg, tmp_path, force=True)


def test_cli_writes_verilog_json_and_core(tmp_path, capsys):
    rc = main(["verilog", "--unit", "engine", "--weights", "pot", "--w-bits", "3", "--schedule", "grouped",
               "--lanes", "2", "--act-depth", "64", "--term-depth", "64", "--out-depth", "64",
               "--max-channels", "4", "-o", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out.split()
    assert [p.rsplit(".", 1)[1] for p in out] == ["v", "json", "core"]


def test_cli_rejects_lanes_that_are_not_a_power_of_two(tmp_path, capsys):
    rc = main(["verilog", "--unit", "engine", "--lanes", "6", "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("asqhw: error:") and "power of two" in err and len(err.splitlines()) == 1


def test_synthesis_top_loads_the_wide_words_serially():
    from amaranth.hdl import Value

    from asqhw.hdl.engine.synth import EngineSynthTop, engine_configs

    (_, _, ecfg), = engine_configs(["post-split-grouped"], [4], lanes=(8,))
    top = EngineSynthTop(ecfg)
    pins = sum(Value.cast(v).shape().width for _, _, v in top.signature.flatten(top))
    assert pins < 80                      # fits every iCE40/ECP5 package of asqhw synth
    assert ecfg.param_bits > 80 and Value.cast(top.engine.layer).shape().width > 60
    top._MustUse__silence = top.engine._MustUse__silence = True   # inspected, never elaborated


def test_engine_synthesis_refuses_to_overwrite_its_tables(tmp_path, capsys):
    (tmp_path / "engine_synth.md").write_text("earlier results\n")
    rc = main(["synth", "--unit", "engine", "--design", "uniform", "--w-bits", "4", "--lanes", "2",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "engine_synth.md exists; pass --force" in err
    assert (tmp_path / "engine_synth.md").read_text() == "earlier results\n"
