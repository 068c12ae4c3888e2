"""asqhw train: float pre-training then QAT, seeded, with a checkpoint that is never overwritten."""

from __future__ import annotations

import pytest
import torch

from asqhw.cli.main import main
from asqhw.golden.qat.checkpoint import load_checkpoint, net_from_checkpoint

ARGS = ["train", "--scheme", "asq+post", "--bits", "3", "--epochs", "1,1", "--subset", "200", "--threads", "1", "-q"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "d.pt"
    assert main(ARGS + ["--out", str(path)]) == 0
    return path


def test_one_epoch_digits_run_writes_a_checkpoint_with_float_and_qat_networks(trained):
    ck = load_checkpoint(trained)
    assert ck["model"] == "digits_cnn" and ck["epochs"] == [1, 1] and ck["subset"] == 200
    assert 0 <= ck["float_acc"] <= 100 and 0 <= ck["qat_acc"] <= 100
    net = net_from_checkpoint(ck, "qat")
    assert net.stage == "qat" and net.units["q1"].adapter.quantised
    assert len(ck["samples_y"]) == 64


def test_summary_reports_float_and_qat_accuracy(tmp_path, capsys):
    assert main(ARGS + ["--epochs", "0,0", "--out", str(tmp_path / "s.pt")]) == 0
    out = capsys.readouterr().out
    assert "float accuracy" in out and "QAT accuracy" in out


def test_same_seed_gives_the_same_qat_network(trained, tmp_path):
    again = tmp_path / "again.pt"
    assert main(ARGS + ["--out", str(again)]) == 0
    a, b = load_checkpoint(trained)["qat_state"], load_checkpoint(again)["qat_state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_existing_checkpoint_is_not_overwritten_without_force(trained, capsys):
    before = trained.read_bytes()
    assert main(ARGS + ["--epochs", "0,0", "--out", str(trained)]) == 2
    assert "--force" in capsys.readouterr().err
    assert trained.read_bytes() == before


def test_qat_can_start_from_another_schemes_float_network(trained, tmp_path):
    out = tmp_path / "lsq.pt"
    assert main(["train", "--scheme", "lsq", "--bits", "2", "--epochs", "0,0", "--subset", "50", "-q",
                 "--init", str(trained), "--out", str(out)]) == 0
    a, b = load_checkpoint(trained), load_checkpoint(out)
    assert b["float_acc"] == a["float_acc"] and b["epochs"][0] == 0


def test_checkpoint_that_is_not_one_is_a_user_error(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    assert main(["golden", "export", "--model", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("asqhw: error:")
