"""The bundled trained digits network (asqhw/golden/networks): bit-exact, and as accurate as its QAT network."""

from __future__ import annotations

import json

from asqhw.cli.common import default_networks
from asqhw.cli.main import main
from asqhw.core.network import read_network

BUNDLED = "digits_cnn_asq_post4.npz"


def test_the_bundled_network_is_a_small_asq_post_export_with_golden_vectors():
    path = default_networks() / BUNDLED
    assert path.stat().st_size < 1_000_000
    net = read_network(path)
    assert net.samples > 0
    assert net.manifest["meta"]["scheme"] == "asq+post"
    assert sum(nd["op"] == "adapter" for nd in net.nodes) == 3


def test_the_bundled_network_records_the_commands_that_made_it():
    meta = read_network(default_networks() / BUNDLED).manifest["meta"]
    assert meta["train_command"].startswith("asqhw train --data digits ")
    assert "--scheme asq+post --bits 4" in meta["train_command"]
    assert meta["export_command"].startswith("asqhw golden export --model ")


def test_conform_without_paths_checks_the_corpus_and_the_bundled_network(capsys):
    assert main(["conform", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["cases"] > 0 and summary["networks"] >= 1
    assert summary["network_vectors"] > 100_000
    assert summary["mismatches"] == 0 and summary["network_mismatches"] == 0 and summary["ok"]


def test_the_bundled_network_reaches_its_recorded_qat_accuracy_over_the_digits_test_split(capsys):
    path = default_networks() / BUNDLED
    qat_acc = read_network(path).manifest["meta"]["qat_acc"]
    assert main(["run", "--json", "--model", str(path), "--data", "digits"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["images"] == 360
    assert 100 * rec["correct"] / rec["images"] >= qat_acc - 1e-9
    assert rec["qat_agreement"] == 1.0


def test_agreement_with_the_qat_network_is_measured_over_the_whole_test_split(capsys):
    path = default_networks() / BUNDLED
    assert len(read_network(path).manifest["meta"]["qat_top1"]) == 360
    assert main(["run", "--json", "--model", str(path)]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert (rec["qat_agreement_samples"], rec["qat_agreement"]) == (360, 1.0)
    assert rec["qat_agreement_over"].startswith("test images")
