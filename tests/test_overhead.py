"""Adapter overhead (paper Eq. 10-16, Table 1): counts, percentages and the ``asqhw overhead`` command."""

import csv
import json

import pytest

from asqhw.core.network import write_network
from asqhw.cli.overhead import (TABLE1, Site, adapter_costs, hidden_width, overhead_rows, topology_count,
                            topology_sites)
from asqhw.core.layershape import LayerShape
from asqhw.core.topologies import topology
from conftest import assert_one_line_error, run
from netcases import random_network




def resnet18_rows():
    layers = topology("resnet18")
    return overhead_rows(topology_sites(layers), topology_count("resnet18", layers), [8, 4, 3, 2], TABLE1)


# A hand network: the image conv (no adapter), a 4-channel conv (single-layer adapter, C < 8),
# a 16-channel conv (hidden 16 // 4 = 4) and a linear layer (no adapter unless asked for).
HAND = [LayerShape("conv2d", 3, 4, 8, 8, 3, 3, 1, 1, name="c1", quant_input=False),
        LayerShape("conv2d", 4, 16, 8, 8, 3, 3, 2, 1, name="c2"),
        LayerShape("conv2d", 16, 8, 4, 4, 1, 1, 1, 0, name="c3"),
        LayerShape("linear", 128, 10, name="fc")]


@pytest.mark.parametrize("row", resnet18_rows(), ids=lambda r: f"{r['bits']}bit")
def test_param_pct_is_within_2_percent_of_table1(row):
    assert abs(row["param_pct"] / TABLE1[row["bits"]][0] - 1) <= 0.02


def test_papers_counting_reproduces_table1_compute_at_its_printed_precision():
    assert [round(r["compute_pct_paper_counting"], 2) for r in resnet18_rows()] == [0.04, 0.07, 0.10, 0.14]


def test_resnet18_has_19_adapters_whose_pools_add_6_6_times_their_fc_macs():
    layers = topology("resnet18")
    costs = [adapter_costs(s) for s in topology_sites(layers)]
    assert len(costs) == 19
    ratio = sum(c["pool_adds"] for c in costs) / sum(c["fc_macs"] for c in costs)
    assert 6.5 < ratio < 6.7


def test_hidden_width_is_c_over_r_and_zero_below_8_channels():
    assert [hidden_width(c, 4) for c in (3, 7, 8, 64)] == [0, 0, 2, 16]
    assert hidden_width(64, 16) == 4


def test_hand_network_adapter_counts():
    sites = topology_sites(HAND)
    assert sites == [Site("c2", 4, 8, 8, 0, 16), Site("c3", 16, 4, 4, 4, 8)]
    c2, c3 = (adapter_costs(s) for s in sites)
    # c2: Linear(4, 1): 4 weights + 1 bias, 4 MACs; tensor 4x8x8 = 256 elements
    assert (c2["params"], c2["fc_macs"], c2["pool_adds"], c2["requant_mults"]) == (5, 4, 256, 256)
    assert (c2["adapter_requants"], c2["divisions"], c2["held_bits"], c2["consumer_mults"]) == (5, 1, 4096, 16)
    # c3: Linear(16, 4) + Linear(4, 1): 64 + 4 + 4 + 1 params, 64 + 4 MACs; tensor 16x4x4 = 256
    assert (c3["params"], c3["fc_macs"], c3["pool_adds"], c3["requant_mults"]) == (73, 68, 256, 256)
    assert (c3["adapter_requants"], c3["held_bits"], c3["consumer_mults"]) == (21, 4096, 8)


def test_hand_network_model_size_and_percentages():
    model = topology_count("hand", HAND)
    # params: 4*3*9 + 16*4*9 + 8*16 + (128*10 + 10) = 108 + 576 + 128 + 1290
    assert model.params == 2102
    # MACs: 108*64 + 576*16 + 128*16 + 1280 = 6912 + 9216 + 2048 + 1280; quantised convs 9216 + 2048
    assert (model.macs, model.quant_conv_macs) == (19456, 11264)
    row, = overhead_rows(topology_sites(HAND), model, [4])
    assert row["param_pct"] == pytest.approx(100 * 8 * 78 / (4 * 2102))
    assert row["compute_pct"] == pytest.approx(100 * 8 * 72 / (4 * 19456))
    assert row["compute_pct_paper_counting"] == pytest.approx(100 * 8 * 2 * 72 / (4 * 11264))
    wide = 512 + 512 + 26 + 24                     # pool adds, requant products, adapter requants, consumers
    assert row["compute_pct_extended"] == pytest.approx(100 * (8 * 72 + 16 * wide + 16 * 16 * 2) / (4 * 19456))


def test_fc_adapter_option_adds_one_before_the_linear_layer():
    sites = topology_sites(HAND, reduction=8, fc_adapter=True)
    assert [(s.name, s.channels, s.hidden) for s in sites] == [("c2", 4, 0), ("c3", 16, 2), ("fc", 128, 16)]


def test_export_adapters_are_counted_from_its_nodes(capsys, tmp_path):
    manifest, params = random_network(3, fmt=("uniform", "mul", None), channels=8, size=6)
    path = tmp_path / "net.npz"
    write_network(path, manifest, params)
    code, out, _ = run(capsys, "overhead", "--model", str(path), "--bits", "4", "--json")
    data = json.loads(out)
    got = [(a["name"], a["channels"], a["height"], a["width"], a["hidden"], a["consumer_mults"])
           for a in data["adapters"]]
    # a1 reads conv c1 (8x6x6) for c2 and the shortcut (8 + 8 outputs); a2 the 3x3 max pool for
    # c3 (16 outputs); a4 the global pool (16x1x1) for the 10 logits; hidden = C // 4
    assert code == 0 and got == [("a1", 8, 6, 6, 2, 16), ("a2", 8, 3, 3, 2, 16), ("a4", 16, 1, 1, 4, 10)]
    assert data["totals"]["params"] == 21 + 21 + 73 and data["totals"]["pool_adds"] == 288 + 72 + 16


def test_text_output_states_the_assumption_and_shows_the_papers_values(capsys):
    code, out, _ = run(capsys, "overhead", "--model", "resnet18")
    assert code == 0
    assert "at 8 bits / all the model's parameters" in out and "C//16 adapters at 32 bits" in out
    line8 = next(l for l in out.splitlines() if l.startswith("8 "))
    assert line8.split()[:5] == ["8", "2.67", "2.63", "-1.5%", "0.04"]


def test_csv_is_written_and_never_overwritten_without_force(capsys, tmp_path):
    path = tmp_path / "t1.csv"
    assert run(capsys, "overhead", "--model", "resnet18", "--csv", str(path))[0] == 0
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert [r["bits"] for r in rows] == ["8", "4", "3", "2"] and rows[0]["paper_param_pct"] == "2.67"
    path.write_text("mine")
    assert_one_line_error(*run(capsys, "overhead", "--model", "resnet18", "--csv", str(path))[::2], "--force")
    assert path.read_text() == "mine"
    assert run(capsys, "overhead", "--model", "resnet18", "--csv", str(path), "--force")[0] == 0
    assert path.read_text().startswith("bits,")


@pytest.mark.parametrize("argv, fragment", [
    (["--bits", "8,x"], "comma-separated integers"),
    (["--bits", "8,1"], "outside 2..32"),
    (["--bits", "4,4"], "twice"),
    (["--reduction", "0"], "1..4096"),
    (["--reduction", "four"], "must be an integer"),
    (["--model", "vgg"], "neither a built-in topology"),
])
def test_bad_options_are_one_line_errors(capsys, argv, fragment):
    args = ["overhead", "--model", "resnet18", *argv]
    assert_one_line_error(*run(capsys, *args)[::2], fragment)


def test_a_file_that_is_not_a_network_is_a_one_line_error(capsys, tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    assert_one_line_error(*run(capsys, "overhead", "--model", str(path))[::2], "junk.npz")


def test_fc_adapter_with_an_export_is_refused(capsys, tmp_path):
    manifest, params = random_network(1)
    path = tmp_path / "net.npz"
    write_network(path, manifest, params)
    assert_one_line_error(*run(capsys, "overhead", "--model", str(path), "--fc-adapter")[::2], "--fc-adapter")
