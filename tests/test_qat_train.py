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
    assert "beta p5-p95 over 360 test images: q1 " in out and "q3 " in out


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


def test_learning_rate_warms_up_linearly_then_decays_as_a_cosine_to_zero():
    from asqhw.golden.qat.train import lr_factor

    assert [lr_factor(k, 10, 4) for k in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 10, 4) == 1.0 and lr_factor(7, 10, 4) == pytest.approx(0.5)
    assert lr_factor(10, 10, 4) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, 10, 0) == 1.0


def test_steps_and_adapters_have_their_own_groups_and_no_weight_decay():
    from asqhw.golden.qat.models import build_model
    from asqhw.golden.qat.scheme import Scheme
    from asqhw.golden.qat.train import RECIPES, param_groups

    net = build_model("resnet20", Scheme("asq", 4))
    net.to_qat(keep_bn=True)
    recipe = RECIPES["cifar10"]
    groups = {g["name"]: g for g in param_groups(net, recipe, 0.04)}
    assert set(groups) == {"weights", "plain", "steps", "adapter"}
    assert groups["weights"]["weight_decay"] == 1e-4
    assert all(groups[k]["weight_decay"] == 0.0 for k in ("plain", "steps", "adapter"))
    adapter_ids = {id(p) for n, p in net.named_parameters() if ".adapter." in n and not n.endswith((".s", ".alpha"))}
    assert {id(p) for p in groups["adapter"]["params"]} == adapter_ids
    n_params = sum(len(g["params"]) for g in groups.values())
    assert n_params == len(list(net.parameters()))


def test_cifar_default_is_the_papers_recipe():
    from asqhw.golden.qat.train import RECIPES

    r = RECIPES["cifar10"]
    assert (r.optimizer, r.qat_lr, r.batch, r.weight_decay, r.qat_epochs) == ("sgd", 0.04, 128, 1e-4, 300)
    assert r.bn_freeze == 0.9 and r.adapter_start == "fit" and r.step_lr == 0.01
    assert RECIPES["digits"].bn_freeze is None and RECIPES["digits"].adapter_start == "lsq"


@pytest.mark.parametrize("flag, value", [("--lr", "0"), ("--lr", "nan"), ("--warmup", "1.5"), ("--bn-freeze", "-1"),
                                         ("--batch", "0"), ("--adapter-lr", "-2")])
def test_a_bad_recipe_option_is_a_one_line_error(tmp_path, capsys, flag, value):
    from conftest import assert_one_line_error, run

    code, _, err = run(capsys, *ARGS, flag, value, "--out", str(tmp_path / "x.pt"))
    assert_one_line_error(code, err, flag.lstrip("-").split("-")[0])
    assert not (tmp_path / "x.pt").exists()


def test_recipe_options_reach_the_checkpoint_and_its_command(tmp_path):
    path = tmp_path / "r.pt"
    assert main(ARGS + ["--epochs", "0,1", "--lr", "0.002", "--warmup", "0.5", "--adapter-start", "range",
                        "--out", str(path)]) == 0
    ck = load_checkpoint(path)
    assert ck["recipe"]["qat_lr"] == 0.002 and ck["recipe"]["warmup"] == 0.5
    assert ck["recipe"]["adapter_start"] == "range"
    assert "--lr 0.002" in ck["command"] and "--adapter-start range" in ck["command"]
