"""`asqhw cycles`: per-layer tables of the engine's cycle model for built-in topologies."""

import csv
import io
import json
from pathlib import Path

import pytest

from asqhw.core.topologies import TOPOLOGIES, topology
from conftest import run

CORPUS = Path(__file__).resolve().parent.parent / "asqhw" / "golden" / "vectors"



def test_engine_macs_agree_with_the_topology(capsys):
    _, out, _ = run(capsys, "cycles", "--model", "resnet20", "--json")
    rows = json.loads(out)["layers"]["16"]
    assert [r["macs"] for r in rows] == [lay.macs for lay in topology("resnet20")]


def test_resnet18_table_lists_every_layer_and_totals(capsys):
    rc, out, _ = run(capsys, "cycles", "--model", "resnet18", "--weights", "post", "--w-bits", "4")
    assert rc == 0
    for lay in topology("resnet18"):
        assert f"\n{lay.name} " in out
    assert "frames/s" in out and "MSE-optimal clip" in out


def test_csv_and_json_agree(capsys):
    _, out_csv, _ = run(capsys, "cycles", "--model", "resnet20", "--csv")
    _, out_json, _ = run(capsys, "cycles", "--model", "resnet20", "--json")
    rows = list(csv.DictReader(io.StringIO(out_csv)))
    data = json.loads(out_json)
    assert [int(r["cycles"]) for r in rows] == [r["cycles"] for r in data["layers"]["16"]]
    assert data["summary"][0]["cycles"] == sum(int(r["cycles"]) for r in rows)
    assert data["exact"] is False and "N(0,1)" in data["weight_model"]


def test_sweep_gives_one_summary_row_per_array_size(capsys):
    rc, out, _ = run(capsys, "cycles", "--model", "resnet20", "--sweep", "lanes=8,16,32", "--json")
    cyc = [s["cycles"] for s in json.loads(out)["summary"]]
    assert rc == 0 and len(cyc) == 3 and cyc[0] > cyc[1] > cyc[2]


def test_case_files_give_exact_counts(capsys):
    rc, out, _ = run(capsys, "cycles", "--json", "--lanes", "4", str(CORPUS / "post4_split_lin72.npz"))
    data = json.loads(out)
    assert rc == 0 and data["exact"] is True and data["weight_model"] is None
    # measured in Verilator by tests/test_engine.py for the same case and lanes
    assert data["layers"]["4"][0]["cycles"] == 2113


def test_plot_writes_a_png_and_never_overwrites(capsys, tmp_path):
    png = tmp_path / "c.png"
    rc, _, _ = run(capsys, "cycles", "--model", "resnet20", "--sweep", "lanes=8,16", "--plot", str(png))
    assert rc == 0 and png.read_bytes()[:4] == b"\x89PNG"
    rc, _, err = run(capsys, "cycles", "--model", "resnet20", "--plot", str(png))
    assert rc == 2 and "exists; pass --force" in err


@pytest.mark.parametrize("argv, fragment", [
    (["--model", "vgg"], "unknown topology"),
    (["--model", "resnet20", "--sweep", "pes=2"], "--sweep takes lanes="),
    (["--model", "resnet20", "--lanes", "12"], "power of two"),
    ([], "give --model"),
])
def test_bad_input_is_one_line_error(capsys, argv, fragment):
    rc, _, err = run(capsys, "cycles", *argv)
    assert rc == 2 and err.startswith("asqhw: error:") and fragment in err and len(err.splitlines()) == 1


def test_every_topology_runs(capsys):
    for name in TOPOLOGIES:
        rc, _, _ = run(capsys, "cycles", "--model", name, "--json")
        assert rc == 0


def test_adapter_pass_is_counted_on_quantised_inputs_only(capsys):
    rc, out, _ = run(capsys, "cycles", "--model", "resnet20", "--adapter", "--json")
    data = json.loads(out)
    rows = {r["layer"]: r for r in data["layers"]["16"]}
    assert rows["conv1"]["adapter_cycles"] == 0                      # the image has no adapter
    # C = 16, hidden 16 // 4 = 4: 16 mean codes + 16*4 + 4 MACs, then the divider alongside
    # the layer's 16 x 2 (post split) per-sample multipliers: max(16, 32), + 3
    assert rows["layer1.0.conv1"]["adapter_cycles"] == 16 + 68 + 32 + 3
    assert data["summary"][0]["cycles"] == sum(r["cycles"] + r["adapter_cycles"] for r in rows.values())


def test_adapter_needs_a_built_in_topology(capsys):
    rc, _, err = run(capsys, "cycles", "--adapter", str(CORPUS / "post4_split_lin72.npz"))
    assert rc == 2 and "--adapter needs --model" in err


def test_synth_results_fill_luts_and_area_times_cycles(capsys, tmp_path):
    res = tmp_path / "engine_synth.json"
    res.write_text(json.dumps({"rows": [
        {"design": "post-split-grouped", "b_w": 4, "b_a": 4, "lanes": 16, "target": "ice40-hx8k",
         "lut": 1000, "bram": 12, "fmax_mhz": 50.0},
        {"design": "uniform", "b_w": 4, "b_a": 4, "lanes": 16, "target": "ice40-hx8k",
         "lut": 9999, "bram": 12, "fmax_mhz": 50.0}]}))
    rc, out, _ = run(capsys, "cycles", "--model", "resnet20", "--json", "--synth", str(res), "--clock-from-synth")
    s = json.loads(out)["summary"][0]
    assert rc == 0 and s["luts"] == 1000 and s["lut_x_cycles"] == 1000 * s["cycles"]
    assert s["frames_per_s"] == pytest.approx(50e6 / s["cycles"])


def test_network_export_gives_exact_counts_and_its_adapters(capsys):
    net = CORPUS.parent / "networks" / "digits_cnn_asq_post4.npz"
    rc, out, _ = run(capsys, "cycles", "--model", str(net), "--lanes", "8", "--adapter", "--json")
    data = json.loads(out)
    rows = {r["layer"]: r for r in data["layers"]["8"]}
    assert rc == 0 and data["exact"] is True
    assert list(rows) == ["conv1", "conv2", "conv3", "fc"]
    assert rows["conv1"]["adapter_cycles"] == 0                    # reads the image
    # 32 output channels x 2 accumulators = 64 per-sample multipliers (the RTL unit's 151 cycles)
    assert rows["conv2"]["adapter_cycles"] == 16 + 16 * 4 + 4 + 64 + 3
