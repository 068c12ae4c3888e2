"""golden.netexport: a QAT checkpoint as a network export that read_network accepts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asqhw.cli.main import main
from asqhw.core.errors import UserError
from asqhw.core.network import m_cap, read_network
from asqhw.golden import netref
from asqhw.golden.netexport import build_network, requant_constants_capped
from asqhw.golden.qat.checkpoint import load_checkpoint
from asqhw.golden.qat.data import load_data
from asqhw.golden.qat.scheme import Scheme
from asqhw.golden.qat.train import train
from test_qat_data import write_tiny_cifar


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("exp") / "d.pt"
    assert main(["train", "--scheme", "asq+post", "--bits", "4", "--epochs", "2,2", "--subset", "400",
                 "--int-exact-epochs", "0", "--threads", "1", "-q", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def digits_export(digits_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert main(["golden", "export", "--model", str(digits_ckpt), "--out", str(out), "--samples", "8", "-q"]) == 0
    return out / "digits_cnn_asq_post4.npz"


def test_export_of_a_trained_digits_model_is_a_valid_network_with_vectors(digits_export):
    net = read_network(digits_export)
    assert net.samples == 8 and net.output == "fc"
    ops = [nd["op"] for nd in net.nodes]
    assert ops.count("adapter") == 3 and ops.count("quant") == 3 and ops.count("conv2d") == 3
    assert net.vectors["vec/input"].shape == (8, 1, 8, 8)


def test_golden_vectors_are_the_integer_reference_of_the_exported_network(digits_export):
    net = read_network(digits_export)
    again = netref.run_network(net, net.vectors["vec/input"])
    for key, v in again.items():
        assert np.array_equal(v, net.vectors[key]), key


def test_a_changed_weight_code_changes_the_golden_vectors(digits_export):
    net = read_network(digits_export)
    w = net.params["conv3/w"]
    w[...] = np.where(w == 0, 1, 0)  # every code of conv3 changed
    again = netref.run_network(net, net.vectors["vec/input"])
    assert not np.array_equal(again["vec/conv3"], net.vectors["vec/conv3"])


def test_layers_reading_asq_codes_name_their_adapter_and_respect_m_cap(digits_export):
    net = read_network(digits_export)
    conv2 = net.node("conv2")
    assert conv2["beta_from"] == "q1_adapter" and net.node("conv1")["beta_from"] is None
    assert int(net.param("conv2", "M").max()) <= m_cap(10, 8)
    assert conv2["weights"]["format"] == "post" and conv2["weights"]["arch"] == "split"


def test_wide_codes_read_by_a_quantiser_have_step_s_times_two_to_minus_g(digits_ckpt, digits_export):
    net = read_network(digits_export)
    ck = load_checkpoint(digits_ckpt)
    s = float(ck["qat_state"]["units.q2.act.s"])
    q2 = net.node("q2")
    assert q2["g"] == 9 and q2["inputs"] == ["pool"]
    # the max pool keeps the step, so conv2's wide codes already have q2's step
    assert net.manifest["meta"]["steps"]["conv2"] == pytest.approx(s * 2.0**-9)


def test_integer_network_agrees_with_the_qat_network_on_the_test_set(digits_ckpt, digits_export):
    """A fidelity figure, not exactness: the fake-quantised QAT network of a 2+2-epoch run (no
    integer-exact epochs) against its integer export. The export's constants make each layer
    agree to within rounding, but a barely trained net sits near its decision boundaries (98 %
    measured since beta's Eq. 9 gradient got LSQ's scale). Exact agreement is what integer-exact
    QAT gives; tests/test_qat_intexact.py asserts it."""
    from asqhw.golden.netexport import input_codes
    from asqhw.golden.qat.checkpoint import net_from_checkpoint

    ck = load_checkpoint(digits_ckpt)
    net = read_network(digits_export)
    data = load_data("digits")
    _, top = netref.predict(net, input_codes(data.x_test, net.manifest["input"]["step"]))
    with torch.no_grad():
        qat = net_from_checkpoint(ck).double()(data.x_test.double()).argmax(1).numpy()
    assert np.mean(top == qat) >= 0.97


def test_export_refuses_to_overwrite_without_force(digits_ckpt, digits_export, capsys):
    before = digits_export.read_bytes()
    assert main(["golden", "export", "--model", str(digits_ckpt), "--out", str(digits_export.parent)]) == 2
    assert "--force" in capsys.readouterr().err and digits_export.read_bytes() == before


def test_export_with_more_samples_than_kept_is_a_user_error(digits_ckpt):
    with pytest.raises(UserError, match="samples"):
        build_network(load_checkpoint(digits_ckpt), samples=65)


def test_resnet20_export_has_projection_and_identity_adds(tmp_path):
    write_tiny_cifar(tmp_path / "c")
    torch.manual_seed(0)
    ck = train(load_data(f"cifar10:{tmp_path / 'c'}"), Scheme("asq", 2), float_epochs=0, qat_epochs=0,
               subset=8, progress=False, samples=2)
    manifest, params, vectors = build_network(ck, samples=1)
    nodes = {nd["name"]: nd for nd in manifest["nodes"]}
    assert nodes["s2b1_proj"]["inputs"] == ["s2b1_qa"] and nodes["s2b1_proj"]["beta_from"] == "s2b1_qa_adapter"
    assert nodes["s1b2_add"]["inputs"] == ["s1b2_conv2", "s1b1_add"]
    assert params["s1b2_add/sh"][0] >= 1 and vectors["vec/fc"].shape == (1, 10)


def test_capped_constants_pick_the_largest_shift_under_the_cap():
    M, B, sh = requant_constants_capped([0.3, 0.2], 0.5, cap=16399)
    assert max(M) <= 16399 and round(0.3 * 2 ** (sh + 1)) > 16399
    assert M == [round(0.3 * 2**sh), round(0.2 * 2**sh)] and B == round(0.5 * 2**sh)


def test_capped_constants_fail_when_no_shift_fits():
    with pytest.raises(UserError, match="above 16399"):
        requant_constants_capped([20000.0], 0.0, cap=16399)
    with pytest.raises(UserError, match="sh = 1"):
        requant_constants_capped([40000.0], 0.0, min_sh=1)
