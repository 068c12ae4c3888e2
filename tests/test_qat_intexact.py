"""golden.qat.intexact: the integer-exact QAT forward pass is the exported integer network, layer by layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asqhw.golden import netref
from asqhw.golden.netexport import build_network, input_codes
from asqhw.golden.qat import intexact
from asqhw.golden.qat.checkpoint import net_from_checkpoint
from asqhw.golden.qat.data import load_data
from asqhw.golden.qat.models import build_model
from asqhw.golden.qat.scheme import Scheme
from asqhw.golden.qat.train import train


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _ckpt(data, name, bits, **kw):
    torch.manual_seed(0)
    return train(data, Scheme(name, bits), float_epochs=2, qat_epochs=1, subset=300, progress=False, **kw)


@pytest.fixture(scope="module")
def asq_post4(digits):
    return _ckpt(digits, "asq+post", 4)


@pytest.fixture(scope="module")
def lsq2(digits):
    return _ckpt(digits, "lsq", 2)


def mismatches(ints: dict, vectors: dict) -> list[str]:
    """Golden vectors (``vec/NODE[/ARRAY]``) that the integer-exact run does not reproduce."""
    bad = []
    for key, v in vectors.items():
        if key in ("vec/labels", "vec/qat_logits"):
            continue
        mine = ints[key[len("vec/"):]]
        if not np.array_equal(mine.numpy(), v.astype(np.int64)):
            bad.append(key)
    return bad


def reference_vectors(ckpt, arch="split", samples=16):
    """The exporter's network and the PyTorch integer reference's vectors on the kept test images."""
    manifest, params, _ = build_network(ckpt, samples=0, arch=arch)
    step = manifest["input"]["step"]
    codes = input_codes(ckpt["samples_x"][:samples], step)
    return codes, netref.run_network((manifest, params), codes)


@pytest.mark.parametrize("fixture, arch", [("asq_post4", "split"), ("asq_post4", "lut"), ("lsq2", "split")])
def test_every_tensor_equals_the_integer_reference_of_the_export(fixture, arch, request):
    ckpt = request.getfixturevalue(fixture)
    codes, ref = reference_vectors(ckpt, arch)
    g = intexact.build_graph(net_from_checkpoint(ckpt), arch)
    ints = intexact.run_integer(g, codes, keep_acc=True)
    layers = [k for k in ref if k.endswith("/acc")]
    assert len(layers) == 4 and len(ref) > 10
    assert mismatches(ints, ref) == []


def test_split_and_uniform_layers_take_the_float64_accumulators_lut_the_int64_reference(asq_post4):
    net = net_from_checkpoint(asq_post4)
    assert set(intexact.build_graph(net, "split").kernels) == {"conv1", "conv2", "conv3", "fc"}
    assert set(intexact.build_graph(net, "lut").kernels) == {"conv1", "fc"}


def test_a_perturbed_constant_makes_the_comparison_fail(asq_post4):
    codes, ref = reference_vectors(asq_post4)
    g = intexact.build_graph(net_from_checkpoint(asq_post4))
    p = g.params["conv2"]
    c = int(torch.as_tensor(ref["vec/conv2"]).gt(0).sum(dim=(0, 2, 3)).argmax())  # the busiest channel
    p["B"] = p["B"].clone()
    p["B"][c] += 1 << int(p["sh"][c])  # one output code more in channel c
    bad = mismatches(intexact.run_integer(g, codes, keep_acc=True), ref)
    assert "vec/conv2" in bad and "vec/conv1" not in bad and "vec/conv2/acc" not in bad


def test_the_constants_follow_the_current_parameters(asq_post4):
    codes, ref = reference_vectors(asq_post4)
    net = net_from_checkpoint(asq_post4)
    with torch.no_grad():
        net.units["conv3"].bias += 0.5
    bad = mismatches(intexact.run_integer(intexact.build_graph(net), codes, keep_acc=True), ref)
    assert "vec/conv3" in bad and "vec/conv2" not in bad


def test_forward_values_are_the_integer_tensors_times_their_steps(asq_post4):
    net = net_from_checkpoint(asq_post4).double()
    x = asq_post4["samples_x"][:16].double()
    with intexact.IntExact(net) as ie:
        out = net(x, keep=True)
    g, ints = ie.graph, ie.ints
    beta = ints["q2_adapter"].double() / 2**8
    assert torch.equal(out["q2"], ints["q2"].double() * g.code_steps["q2"] * beta.reshape(-1, 1, 1, 1))
    assert torch.equal(out["input_q"], ints["input"].double() * g.input_step)
    for name in ("conv1", "conv2", "pool", "conv3", "gap", "fc"):
        assert torch.equal(out[name], ints[name].double() * g.steps[name]), name
    assert torch.equal(out["fc"].argmax(1), ints["fc"].argmax(1))
    assert net.node_hook is None


def test_gradients_reach_weights_steps_and_adapters(asq_post4, digits):
    net = net_from_checkpoint(asq_post4)
    net.train()
    with intexact.IntExact(net):
        loss = torch.nn.functional.cross_entropy(net(digits.x_train[:64]), digits.y_train[:64])
    loss.backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    dead = [n for n, gr in grads.items() if gr is None or float(gr.abs().sum()) == 0.0]
    assert dead == []
    assert any(".adapter." in n for n in grads) and any(n.endswith(".act.s") for n in grads)


def test_int_exact_epochs_make_qat_accuracy_the_integer_accuracy(digits):
    from asqhw.core.datasets import input_codes as run_codes
    from asqhw.core.datasets import load_test_set

    ckpt = _ckpt(digits, "asq+post", 3, int_exact_epochs=1)
    assert ckpt["int_exact_epochs"] == 1 and 0 < ckpt["fake_quant_acc"] <= 100
    net = net_from_checkpoint(ckpt)
    assert intexact.evaluate_int(net, digits.x_test, digits.y_test) == pytest.approx(ckpt["qat_acc"])
    manifest, params, vectors = build_network(ckpt, samples=8)
    qat_top1 = vectors["vec/qat_logits"].argmax(1)
    assert np.array_equal(qat_top1, vectors["vec/fc"].argmax(1))   # the golden samples' QAT logits are integer-exact
    images, _, _ = load_test_set("digits")
    _, int_top1 = netref.predict((manifest, params), run_codes(images, manifest["input"]))
    assert manifest["meta"]["qat_top1"] == int_top1.tolist()     # what asqhw run compares: 100 % agreement


def test_a_resnet20_is_integer_exact_through_adds_projections_and_pools():
    torch.manual_seed(0)
    net = build_model("resnet20", Scheme("asq+post", 3))
    x = torch.randn(8, 3, 32, 32)
    net.eval()
    net.to_qat()
    net.init_quantisers(x)
    net.calibrate([x])
    ckpt = {"model": "resnet20", "scheme": net.scheme.as_dict(), "data": "none", "mean": [0.0] * 3,
            "std": [1.0] * 3, "classes": 10, "qat_state": net.state_dict(), "samples_x": x[:2], "samples_y": torch.zeros(2)}
    codes, ref = reference_vectors(ckpt, samples=2)
    ints = intexact.run_integer(intexact.build_graph(net_from_checkpoint(ckpt)), codes, keep_acc=True)
    assert sum(k.endswith("/acc") for k in ref) == 22 and sum(k.endswith("_add") for k in ref) == 9
    assert mismatches(ints, ref) == []


def test_results_with_int_exact_epochs_agree_on_every_image(tmp_path, capsys):
    import json

    from asqhw.cli.main import main

    torch.set_num_threads(1)
    argv = ["results", "--schemes", "lsq", "--bits", "2", "--epochs", "1,1", "--subset", "64", "--limit", "48",
            "--samples", "2", "--int-exact-epochs", "1", "-q", "--json", "--out", str(tmp_path / "r.md")]
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["agreement"] == 100.0 and row["qat_acc"] == row["int_acc"] and row["int_exact_epochs"] == 1
    md = (tmp_path / "r.md").read_text()
    assert "--int-exact-epochs 1" in md and "integer-exact mode" in md and "| fake-quant % before |" in md


def test_train_records_int_exact_epochs_and_rejects_a_negative_count(tmp_path, capsys):
    from asqhw.cli.main import main

    from conftest import assert_one_line_error

    out = tmp_path / "d.pt"
    assert main(["train", "--epochs", "1,1", "--subset", "64", "--int-exact-epochs", "1", "--threads", "1", "-q",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "then 1 integer-exact" in text
    ckpt = torch.load(out, weights_only=True)
    assert "--int-exact-epochs 1" in ckpt["command"] and ckpt["int_exact_epochs"] == 1
    code = main(["train", "--int-exact-epochs", "-1", "--out", str(tmp_path / "e.pt")])
    assert_one_line_error(code, capsys.readouterr().err, "--int-exact-epochs must be at least 0")
    assert not (tmp_path / "e.pt").exists()


def test_evaluate_reports_the_integer_networks_accuracy(asq_post4, tmp_path, capsys):
    import json

    from asqhw.cli.main import main
    from asqhw.core.datasets import input_codes as run_codes
    from asqhw.core.datasets import load_test_set
    from asqhw.golden.qat.checkpoint import save_checkpoint

    from conftest import assert_one_line_error

    path = tmp_path / "c.pt"
    save_checkpoint(path, asq_post4)
    assert main(["evaluate", "--model", str(path), "--limit", "60", "--json", "-q"]) == 0
    rec = json.loads(capsys.readouterr().out)
    manifest, params, _ = build_network(asq_post4, samples=0)
    images, labels, _ = load_test_set("digits")
    _, top1 = netref.predict((manifest, params), run_codes(images[:60], manifest["input"]))
    assert rec["images"] == 60 and rec["int_exact_acc"] == pytest.approx(100.0 * np.mean(top1 == labels[:60]))
    assert 0 <= rec["fake_vs_int_differ"] <= 60
    code = main(["evaluate", "--model", str(tmp_path / "none.pt")])
    assert_one_line_error(code, capsys.readouterr().err, "does not exist")
