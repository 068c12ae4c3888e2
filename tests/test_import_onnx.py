"""asqhw import of ONNX models (golden.qat.onnx_import): the float graph is the model's function,
unsupported ops and patterns are refused by name, hostile files end in one line, and the whole
path import -> QAT -> export -> conform is bit-exact."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from asqhw.core.errors import UserError
from asqhw.golden.qat import onnx_import
from asqhw.golden.qat.graphspec import build_from_spec
from asqhw.golden.qat.onnx_import import build_net, fit_identity_batchnorms, import_onnx
from asqhw.golden.qat.scheme import Scheme
from conftest import assert_one_line_error, run

SCHEME = Scheme("asq+post", 4)


def export(model: nn.Module, path, shape=(1, 1, 8, 8), **kw):
    """``model`` (eval mode) as an ONNX file with a dynamic batch axis."""
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(shape), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, **kw)
    return path


def randomise_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


class Plain(nn.Module):
    """conv-BN-ReLU, max pool, conv-ReLU, global average pool, FC."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 12, 3, stride=1, padding=1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.b1(self.c1(x))), 2)
        x = torch.relu(self.c2(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Residual(nn.Module):
    """A basic block with an identity shortcut, then a hidden FC + ReLU and the output FC."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.c3 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc1, self.fc = nn.Linear(8 * 4 * 4, 16), nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(x + self.c3(torch.relu(self.c2(x))))
        x = torch.relu(self.fc1(torch.flatten(nn.functional.avg_pool2d(x, 2), 1)))
        return self.fc(x)


def _float_net(path):
    imp = import_onnx(path)
    return imp, build_net(imp, SCHEME)


@pytest.mark.parametrize("folded", [True, False], ids=["bn-fused-by-export", "bn-kept"])
def test_the_imported_float_graph_computes_the_torch_model(tmp_path, folded):
    torch.manual_seed(0)
    model = randomise_bn(Plain())
    path = export(model, tmp_path / "plain.onnx", do_constant_folding=folded)
    imp, net = _float_net(path)
    ops = [nd["op"] for nd in imp.spec["nodes"]]
    assert ops == ["input", "conv", "maxpool", "quant", "conv", "avgpool", "quant", "linear"]
    assert (imp.weights[imp.spec["nodes"][1]["name"]]["bn"] is None) == folded
    x = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-5, rtol=1e-5)


def test_a_residual_add_and_a_hidden_fc_are_imported(tmp_path):
    torch.manual_seed(0)
    model = randomise_bn(Residual())
    imp, net = _float_net(export(model, tmp_path / "res.onnx"))
    nodes = {nd["name"]: nd for nd in imp.spec["nodes"]}
    add = next(nd for nd in nodes.values() if nd["op"] == "add")
    assert add["attrs"]["relu"] and nodes[add["inputs"][0]]["op"] == "conv"      # the shortcut reads wide codes
    hidden = [nd for nd in nodes.values() if nd["op"] == "conv" and nd["unit"]["kernel"] == 4]
    assert len(hidden) == 1 and hidden[0]["attrs"]["relu"]                        # fc1: a conv over the 4x4 map
    quants = [nd for nd in nodes.values() if nd["op"] == "quant"]
    assert [q["unit"]["bits"] for q in quants][-1] == 8                           # the output layer reads 8-bit codes
    assert all(q["unit"]["bits"] == 4 for q in quants[:-1])
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-5, rtol=1e-5)


def test_one_quantiser_per_tensor_with_an_adapter_under_asq_and_none_under_lsq(tmp_path):
    path = export(Residual(), tmp_path / "res.onnx")
    for scheme, adapters in ((Scheme("asq", 4), 4), (Scheme("lsq", 4), 0)):
        net = build_net(import_onnx(path), scheme)
        quants = [nd for nd in net.nodes if nd.op == "quant"]
        srcs = [nd.inputs[0] for nd in quants]
        assert len(srcs) == len(set(srcs)) == 4          # c1 (read by c2 and the add), c2, the pool, fc1
        assert sum(net.units[q.name].adapter is not None for q in quants) == adapters


def test_fitting_the_identity_batchnorms_keeps_the_function(tmp_path):
    torch.manual_seed(0)
    model = Residual()
    imp, net = _float_net(export(model, tmp_path / "res.onnx"))
    x = torch.randn(64, 1, 8, 8)
    conv = next(nd.name for nd in net.nodes if nd.op == "conv" and imp.weights[nd.name]["bn"] is None)
    before = net.units[conv].bn.running_var.clone()
    fit_identity_batchnorms(net, imp, x)
    assert not torch.equal(before, net.units[conv].bn.running_var)        # the statistics moved ...
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-4, rtol=1e-4)  # ... the function did not


def test_the_spec_rebuilds_the_same_graph(tmp_path):
    imp, net = _float_net(export(Residual(), tmp_path / "res.onnx"))
    again = build_from_spec(imp.spec, SCHEME)
    assert [(n.name, n.op, n.inputs) for n in again.nodes] == [(n.name, n.op, n.inputs) for n in net.nodes]
    assert again.state_dict().keys() == net.state_dict().keys()


# --- ONNX graphs written by hand --------------------------------------------------------

def _graph(nodes, inits, out_dims=(None, 10), in_dims=(None, 1, 8, 8), opset=17):
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(d or "n" for d in in_dims))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(d or "n" for d in out_dims))
    g = helper.make_graph(nodes, "g", [inp], [out], [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _save(model, path):
    path.write_bytes(model.SerializeToString())
    return path


def _conv_head(extra_nodes, last="r", inits=None):
    rng = np.random.default_rng(0)
    ini = {"w": rng.standard_normal((4, 1, 3, 3)), "fw": rng.standard_normal((4, 10)), "fb": rng.standard_normal(10)}
    ini.update(inits or {})
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu")] + extra_nodes + [
        helper.make_node("GlobalAveragePool", [last], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fw"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "fb"], ["y"], name="fc_bias")]
    return nodes, ini


def test_matmul_plus_bias_is_the_output_layer(tmp_path):
    nodes, ini = _conv_head([])
    imp = import_onnx(_save(_graph(nodes, ini), tmp_path / "mm.onnx"))
    net = build_net(imp, SCHEME)
    x = np.random.default_rng(1).standard_normal((4, 1, 8, 8)).astype(np.float32)
    conv = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(ini["w"].astype(np.float32)),
                                                 padding=1))
    ref = conv.mean((2, 3)) @ torch.from_numpy(ini["fw"].astype(np.float32)) + torch.from_numpy(ini["fb"].astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(net(torch.from_numpy(x)), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("node, fragment", [
    (helper.make_node("Sigmoid", ["r"], ["s"], name="squash"), "node 'squash' (Sigmoid) is not supported"),
    (helper.make_node("LeakyRelu", ["r"], ["s"], name="leaky"), "node 'leaky' (LeakyRelu) is not supported"),
    (helper.make_node("MaxPool", ["r"], ["s"], name="mp", kernel_shape=[2, 2], ceil_mode=1), "node 'mp' (MaxPool): ceil_mode"),
    (helper.make_node("AveragePool", ["r"], ["s"], name="ap", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
     "node 'ap' (AveragePool): padding"),
    (helper.make_node("MaxPool", ["r"], ["s"], name="mp", kernel_shape=[2, 3]), "node 'mp' (MaxPool): kernel [2, 3]"),
])
def test_an_unsupported_op_or_attribute_is_refused_by_name(tmp_path, node, fragment):
    nodes, ini = _conv_head([node], last="s")
    path = _save(_graph(nodes, ini), tmp_path / "bad.onnx")
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        import_onnx(path)


@pytest.mark.parametrize("conv_kw, fragment", [
    ({"group": 1, "dilations": [2, 2]}, "dilation"),
    ({"strides": [1, 2]}, "strides"),
    ({"pads": [1, 1, 0, 0]}, "pads"),
    ({"auto_pad": "SAME_UPPER"}, "auto_pad"),
])
def test_conv_attributes_outside_the_graph_are_refused(tmp_path, conv_kw, fragment):
    nodes, ini = _conv_head([])
    kw = {"pads": [1, 1, 1, 1]} | conv_kw
    if "auto_pad" in kw:
        kw.pop("pads")
    nodes[0] = helper.make_node("Conv", ["x", "w"], ["c"], name="conv", **kw)
    with pytest.raises(UserError, match=f"node 'conv' \\(Conv\\).*{fragment}"):
        import_onnx(_save(_graph(nodes, ini), tmp_path / "bad.onnx"))


def test_a_grouped_conv_is_refused(tmp_path):
    nodes, ini = _conv_head([helper.make_node("Conv", ["r", "dw"], ["s"], name="depthwise", group=4,
                                              pads=[1, 1, 1, 1])], last="s",
                            inits={"dw": np.ones((4, 1, 3, 3))})
    with pytest.raises(UserError, match=r"node 'depthwise' \(Conv\): group 4"):
        import_onnx(_save(_graph(nodes, ini), tmp_path / "dw.onnx"))


def test_a_conv_reading_a_signed_tensor_is_refused(tmp_path):
    nodes, ini = _conv_head([helper.make_node("Conv", ["c"], ["s"], name="second")], last="s")
    nodes[-5] = helper.make_node("Conv", ["c", "w2"], ["s"], name="second", pads=[1, 1, 1, 1])
    nodes[1] = helper.make_node("Relu", ["s"], ["r"], name="relu")
    nodes[-4] = helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap")
    nodes = [nodes[0], nodes[-5], nodes[1]] + nodes[-4:]
    ini["w2"] = np.ones((4, 4, 3, 3))
    with pytest.raises(UserError, match="can be negative"):
        import_onnx(_save(_graph(nodes, ini), tmp_path / "signed.onnx"))


def test_a_relu_on_the_logits_is_refused(tmp_path):
    nodes, ini = _conv_head([])
    nodes[-1] = helper.make_node("Add", ["m", "fb"], ["z"], name="fc_bias")
    nodes.append(helper.make_node("Relu", ["z"], ["y"], name="out_relu"))
    with pytest.raises(UserError, match="without Relu"):
        import_onnx(_save(_graph(nodes, ini), tmp_path / "relu.onnx"))


@pytest.mark.parametrize("content, fragment", [
    (b"", "not an ONNX model"),
    (b"\xff" * 64, "not an ONNX model"),
    (b"\x08\x07\x12\x05hello\x3a\xff\xff\xff\xff\x0f", "not an ONNX model"),
])
def test_garbage_is_not_an_onnx_model(tmp_path, content, fragment):
    path = tmp_path / "junk.onnx"
    path.write_bytes(content)
    with pytest.raises(UserError, match=fragment):
        import_onnx(path)


def test_a_truncated_model_is_refused(tmp_path):
    full = export(Plain(), tmp_path / "plain.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(UserError, match="cut.onnx"):
        import_onnx(path)


def test_a_file_over_the_size_bound_is_refused_unread(tmp_path, monkeypatch):
    path = export(Plain(), tmp_path / "plain.onnx")
    monkeypatch.setattr(onnx_import, "MAX_BYTES", 100)
    with pytest.raises(UserError, match="MiB an ONNX model may have"):
        import_onnx(path)


def test_external_data_is_refused(tmp_path):
    nodes, ini = _conv_head([])
    model = _graph(nodes, ini)
    w = next(t for t in model.graph.initializer if t.name == "w")
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../../etc/passwd")
    with pytest.raises(UserError, match="external file"):
        import_onnx(_save(model, tmp_path / "ext.onnx"))


def test_a_graph_that_fails_the_onnx_checker_is_one_error(tmp_path):
    nodes, ini = _conv_head([])
    nodes[1] = helper.make_node("Relu", ["nowhere"], ["r"], name="relu")   # reads a tensor nobody makes
    with pytest.raises(UserError, match="invalid ONNX model"):
        import_onnx(_save(_graph(nodes, ini), tmp_path / "bad.onnx"))


def test_weights_that_do_not_fit_the_input_are_named(tmp_path):
    nodes, ini = _conv_head([])
    ini["w"] = np.ones((4, 3, 3, 3))                       # 3 input channels for a 1-channel input
    with pytest.raises(UserError, match=r"node 'conv' \(Conv\): weights \[4, 3, 3, 3\]"):
        import_onnx(_save(_graph(nodes, ini), tmp_path / "bad.onnx"))


# --- the command line ---------------------------------------------------------------------

def test_import_qat_export_conform_is_bit_exact_on_digits(tmp_path, capsys):
    torch.manual_seed(0)
    path = export(randomise_bn(Residual()), tmp_path / "res.onnx")
    ckpt = tmp_path / "res.pt"
    code, out, err = run(capsys, "import", str(path), "--epochs", "1,1", "--int-exact-epochs", "1", "--subset", "300",
                         "--threads", "1", "--out", str(ckpt), "-q")
    assert code == 0, err
    assert "4 conv, 1 linear, 1 add, 4 quantisers (4 with adapters)" in out
    assert "then 1 integer-exact" in out
    code, out, err = run(capsys, "golden", "export", "--model", str(ckpt), "--out", str(tmp_path / "ex"),
                         "--samples", "4", "-q")
    assert code == 0, err
    code, out, err = run(capsys, "conform", str(tmp_path / "ex" / "res_asq_post4.npz"))
    assert code == 0 and "0 mismatches" in out and "PASS" in out
    code, out, err = run(capsys, "run", "--model", str(tmp_path / "ex" / "res_asq_post4.npz"), "--threads", "1")
    assert code == 0 and "QAT top-1 agreement     100.00%" in out


def test_the_command_refuses_an_unsupported_op_in_one_line(tmp_path, capsys):
    nodes, ini = _conv_head([helper.make_node("Sigmoid", ["r"], ["s"], name="squash")], last="s")
    path = _save(_graph(nodes, ini), tmp_path / "bad.onnx")
    code, _, err = run(capsys, "import", str(path), "--out", str(tmp_path / "x.pt"))
    assert_one_line_error(code, err, "node 'squash' (Sigmoid) is not supported")
    assert not (tmp_path / "x.pt").exists()


def test_the_command_never_overwrites_without_force(tmp_path, capsys):
    path = export(Plain(), tmp_path / "plain.onnx")
    (tmp_path / "x.pt").write_bytes(b"mine")
    code, _, err = run(capsys, "import", str(path), "--out", str(tmp_path / "x.pt"))
    assert_one_line_error(code, err, "exists")
    assert (tmp_path / "x.pt").read_bytes() == b"mine"


def test_the_command_refuses_data_of_another_shape(tmp_path, capsys):
    rgb = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    path = export(rgb, tmp_path / "rgb.onnx", shape=(1, 3, 8, 8))
    code, _, err = run(capsys, "import", str(path), "--epochs", "0", "--out", str(tmp_path / "x.pt"))
    assert_one_line_error(code, err, "takes 3x8x8 inputs")


def test_weights_from_constant_nodes_and_a_reshape_flatten_are_read(tmp_path):
    nodes, ini = _conv_head([])
    fw = ini.pop("fw")
    nodes[-3] = helper.make_node("Reshape", ["p", "shape"], ["f"], name="flat")
    nodes = [helper.make_node("Constant", [], ["fw"], name="fw_const", value=numpy_helper.from_array(fw.astype(np.float32))),
             helper.make_node("Constant", [], ["shape"], name="shape_const",
                              value=numpy_helper.from_array(np.array([-1, 4], np.int64)))] + nodes
    imp = import_onnx(_save(_graph(nodes, ini), tmp_path / "const.onnx"))
    fc = imp.spec["nodes"][-1]
    assert fc["op"] == "linear" and np.array_equal(imp.weights[fc["name"]]["weight"], fw.T.astype(np.float32))


class ResNet20(nn.Module):
    """He et al.'s CIFAR ResNet-20 with projection shortcuts (option B), written as a user would."""

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = None if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        blocks, cin = [], 16
        for s, c in enumerate((16, 32, 64)):
            for b in range(3):
                blocks.append(self.Block(cin, c, 2 if s > 0 and b == 0 else 1))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1)
        return self.fc(x.flatten(1))


def test_a_torch_resnet20_imports_as_the_built_in_resnet20_graph(tmp_path):
    from asqhw.golden.qat.graphspec import spec_of
    from asqhw.golden.qat.resnet import resnet20

    torch.manual_seed(0)
    model = randomise_bn(ResNet20())
    imp, net = _float_net(export(model, tmp_path / "r20.onnx", shape=(1, 3, 32, 32)))
    ref = spec_of(resnet20(SCHEME))

    def shape(spec):      # the graph without names: ops, units and attributes, in a canonical order
        return sorted((nd["op"], sorted(nd["unit"].items()), sorted(nd["attrs"].items())) for nd in spec["nodes"])

    assert shape(imp.spec) == shape(ref)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-4, rtol=1e-4)


def test_a_relu_after_a_max_pool_moves_before_it(tmp_path):
    """The authors' ResNet stem pools before its ReLU; relu(maxpool(x)) = maxpool(relu(x)) exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.MaxPool2d(3, 2, 1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10))
    imp, net = _float_net(export(randomise_bn(model), tmp_path / "stem.onnx"))
    first = imp.spec["nodes"][1]
    assert first["op"] == "conv" and first["attrs"]["relu"] and imp.spec["nodes"][2]["op"] == "maxpool"
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-5, rtol=1e-5)


def test_a_relu_after_a_pool_whose_input_is_read_elsewhere_is_refused(tmp_path):
    nodes, ini = _conv_head([])
    head = [nodes[0],                                                            # conv -> c
            helper.make_node("MaxPool", ["c"], ["mp"], name="mp", kernel_shape=[1, 1]),
            helper.make_node("Relu", ["mp"], ["r"], name="late_relu"),         # c is also read by relu2
            helper.make_node("Relu", ["c"], ["c2"], name="relu2"),
            helper.make_node("Add", ["r", "c2"], ["a"], name="join")]
    tail = nodes[2:]
    tail[0] = helper.make_node("GlobalAveragePool", ["a"], ["p"], name="gap")
    with pytest.raises(UserError, match=r"node 'late_relu' \(Relu\).*also read elsewhere"):
        import_onnx(_save(_graph(head + tail, ini), tmp_path / "late.onnx"))


def test_mean_and_std_renormalise_the_pixels():
    from asqhw.golden.qat.data import load_digits
    from asqhw.golden.qat.imported import renormalised

    d = load_digits()
    r = renormalised(d, [0.5], [0.25])
    raw = d.x_test * d.std[0] + d.mean[0]
    torch.testing.assert_close(r.x_test, (raw - 0.5) / 0.25, atol=1e-5, rtol=1e-5)
    assert r.mean == (0.5,) and r.std == (0.25,) and r.y_test is d.y_test
    with pytest.raises(UserError, match="1 or 1 values"):
        renormalised(d, [0.5, 0.5], [0.25])


def test_subgraphs_nested_thousands_deep_are_refused_not_a_crash(tmp_path):
    def varint(n):
        out = b""
        while True:
            low, n = n & 0x7F, n >> 7
            if not n:
                return out + bytes([low])
            out += bytes([low | 0x80])

    def field(num, payload):                      # a length-delimited protobuf field
        return varint((num << 3) | 2) + varint(len(payload)) + payload

    graph = b""
    for _ in range(5000):                         # GraphProto.node -> NodeProto.attribute -> AttributeProto.g
        graph = field(1, field(4, b"If") + field(5, field(1, b"then_branch") + field(6, graph)))
    path = tmp_path / "deep.onnx"
    path.write_bytes(varint(1 << 3) + varint(8) + field(7, graph))
    with pytest.raises(UserError, match="not an ONNX model"):
        import_onnx(path)
