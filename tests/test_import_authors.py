"""ResNet-18 state dicts in the layout of the authors' code (golden.qat.authors): both layouts load
into the project's ResNet-18 QAT graph and compute torchvision's ResNet-18; bad keys are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from asqhw.core.errors import UserError
from asqhw.golden.qat.authors import authors_resnet18, load_state
from asqhw.golden.qat.scheme import Scheme
from conftest import assert_one_line_error, run

SCHEME = Scheme("asq+post", 4)
WIDTHS = (64, 128, 256, 512)


def torchvision_state(classes: int = 10, seed: int = 0) -> dict:
    """A torchvision ResNet-18 state dict (the keys and shapes the authors' script loads), random values."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def conv(name, cout, cin, k):
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5

    def bn(name, c):
        sd[f"{name}.weight"] = torch.rand(c, generator=g) + 0.5
        sd[f"{name}.bias"] = torch.rand(c, generator=g) - 0.5
        sd[f"{name}.running_mean"] = torch.rand(c, generator=g) - 0.5
        sd[f"{name}.running_var"] = torch.rand(c, generator=g) + 0.5
        sd[f"{name}.num_batches_tracked"] = torch.tensor(7)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for layer, c in enumerate(WIDTHS, 1):
        for b in range(2):
            p = f"layer{layer}.{b}"
            conv(f"{p}.conv1", c, cin if b == 0 else c, 3)
            bn(f"{p}.bn1", c)
            conv(f"{p}.conv2", c, c, 3)
            bn(f"{p}.bn2", c)
            if layer > 1 and b == 0:
                conv(f"{p}.downsample.0", c, cin, 1)
                bn(f"{p}.downsample.1", c)
        cin = c
    sd["fc.weight"] = torch.randn(classes, 512, generator=g) * 0.05
    sd["fc.bias"] = torch.randn(classes, generator=g) * 0.05
    return sd


def quantised_state(classes: int = 10) -> dict:
    """The same weights under the key names of the authors' Q_ResNet18 modules, with adapters and steps."""
    g = torch.Generator().manual_seed(5)
    sd = {}
    for k, v in torchvision_state(classes).items():
        parts = k.split(".")
        if parts[0] in ("conv1", "bn1"):
            k = "quant_init_block_convbn." + ("conv" if parts[0] == "conv1" else "bn") + "." + parts[1]
        elif parts[0] == "fc":
            k = "quant_output.linear." + parts[1]
        else:
            layer, b, mod = parts[0], int(parts[1]), parts[2]
            unit = f"{layer}.unit{b + 1}"
            if mod == "downsample":
                k = f"{unit}.quant_identity_convbn.{'conv' if parts[3] == '0' else 'bn'}.{parts[4]}"
            else:
                k = f"{unit}.quant_convbn{mod[-1]}.{'conv' if mod.startswith('conv') else 'bn'}.{parts[3]}"
        sd[k] = v
    cin = 64
    for layer, c in enumerate(WIDTHS, 1):
        for b in range(2):
            unit = f"layer{layer}.unit{b + 1}"
            ins = {1: cin if b == 0 else c, 2: c}
            convs = ("quant_convbn1", "quant_convbn2") + (("quant_identity_convbn",) if layer > 1 and b == 0 else ())
            for conv in convs:
                n = ins.get(int(conv[-1]) if conv[-1].isdigit() else 1)
                sd[f"{unit}.{conv}.adapter.net.0.weight"] = torch.randn(n // 4, n, generator=g) * 0.01
                sd[f"{unit}.{conv}.adapter.net.0.bias"] = torch.randn(n // 4, generator=g) * 0.01
                sd[f"{unit}.{conv}.adapter.net.2.weight"] = torch.randn(1, n // 4, generator=g) * 0.01
                sd[f"{unit}.{conv}.adapter.net.2.bias"] = torch.ones(1)
                sd[f"{unit}.{conv}.quan_a_fn.s"] = torch.ones(1)
                sd[f"{unit}.{conv}.quan_w_fn.s"] = torch.ones(c, 1, 1, 1)
                sd[f"{unit}.{conv}.init_state"] = torch.zeros(1)
        cin = c
    return sd


def torchvision_forward(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet-18 (eval mode) written out with the functional API."""
    def bn(name, y):
        return F.batch_norm(y, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                            sd[f"{name}.bias"], False, 0.0, 1e-5)

    y = F.relu(bn("bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)))
    y = F.max_pool2d(y, 3, 2, 1)
    for layer in range(1, 5):
        for b in range(2):
            p = f"layer{layer}.{b}"
            stride = 2 if layer > 1 and b == 0 else 1
            out = F.relu(bn(f"{p}.bn1", F.conv2d(y, sd[f"{p}.conv1.weight"], stride=stride, padding=1)))
            out = bn(f"{p}.bn2", F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1))
            short = y if f"{p}.downsample.0.weight" not in sd else bn(
                f"{p}.downsample.1", F.conv2d(y, sd[f"{p}.downsample.0.weight"], stride=stride))
            y = F.relu(out + short)
    y = F.adaptive_avg_pool2d(y, 1).flatten(1)
    return F.linear(y, sd["fc.weight"], sd["fc.bias"])


def test_the_torchvision_layout_computes_torchvisions_resnet18():
    sd = torchvision_state(classes=7)
    net, layout = authors_resnet18(sd, SCHEME)
    assert layout == "float" and net.classes == 7
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(net(x), torchvision_forward(sd, x), atol=1e-4, rtol=1e-4)


def test_the_quantised_layout_gives_the_same_network_and_its_adapters():
    sd = quantised_state()
    net, layout = authors_resnet18(sd, SCHEME)
    ref, _ = authors_resnet18(torchvision_state(), SCHEME)
    assert layout == "quantised"
    ours, theirs = net.state_dict(), ref.state_dict()
    conv_keys = [k for k in ours if ".adapter." not in k and not k.startswith("amax_") and not k.endswith(".s")]
    assert all(torch.equal(ours[k], theirs[k]) for k in conv_keys)
    assert torch.equal(ours["units.s2b1_qa.adapter.fc1.weight"], sd["layer2.unit1.quant_convbn1.adapter.net.0.weight"])
    assert torch.equal(ours["units.s4b2_qb.adapter.fc2.weight"], sd["layer4.unit2.quant_convbn2.adapter.net.2.weight"])


def test_a_dataparallel_checkpoint_file_is_unwrapped(tmp_path):
    sd = quantised_state()
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "arch": "resnet18_4", "state_dict": {f"module.{k}": v for k, v in sd.items()},
                "best_acc1": torch.tensor(70.1)}, path)
    loaded = load_state(path)
    assert loaded.keys() == sd.keys()


def test_an_lsq_scheme_leaves_the_adapters_out():
    net, _ = authors_resnet18(quantised_state(), Scheme("lsq", 4))
    assert not any(".adapter." in k for k in net.state_dict())


@pytest.mark.parametrize("mutate, fragment", [
    (lambda sd: sd.pop("layer3.0.downsample.0.weight"), "missing key 'layer3.0.downsample.0.weight'"),
    (lambda sd: sd.pop("layer1.1.bn2.running_var"), "missing key 'layer1.1.bn2.running_var'"),
    (lambda sd: sd.__setitem__("layer2.1.conv1.weight", torch.zeros(128, 64, 3, 3)),
     "'layer2.1.conv1.weight' has shape [128, 64, 3, 3], ResNet-18 needs [128, 128, 3, 3]"),
    (lambda sd: sd.__setitem__("layer1.2.conv1.weight", torch.zeros(64, 64, 3, 3)), "unexpected key 'layer1.2.conv1.weight'"),
    (lambda sd: sd.__setitem__("fc.weight", torch.zeros(10, 2048)), "'fc.weight' must be a classes x 512 matrix"),
    (lambda sd: sd.__setitem__("bn1.bias", torch.full((64,), float("nan"))), "'bn1.bias' must hold finite"),
    (lambda sd: sd.pop("conv1.weight"), "neither the authors' quantised ResNet-18 layout"),
])
def test_a_bad_key_is_named(mutate, fragment):
    sd = torchvision_state()
    mutate(sd)
    with pytest.raises(UserError) as e:
        authors_resnet18(sd, SCHEME)
    assert fragment in str(e.value)


@pytest.mark.parametrize("content, fragment", [
    (b"not a torch file", "not a readable PyTorch state dict"),
    (None, "expected a state dict"),
])
def test_an_unreadable_or_wrong_file_is_one_error(tmp_path, content, fragment):
    path = tmp_path / "x.pt"
    if content is None:
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=fragment):
        load_state(path)


def test_the_command_imports_the_layout_and_runs_qat_on_an_image_folder(tmp_path, capsys):
    from asqhw.golden.qat.checkpoint import load_checkpoint, net_from_checkpoint

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "img" / c / f"{i}.jpg")
    sd_path = tmp_path / "resnet18.pt"
    torch.save({"state_dict": torchvision_state(classes=2)}, sd_path)
    ckpt = tmp_path / "r18.pt"
    code, out, err = run(capsys, "import", str(sd_path), "--data", f"imagefolder:{tmp_path / 'img'}", "--epochs", "0",
                         "--int-exact-epochs", "0", "--threads", "1", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225",
                         "--out", str(ckpt), "-q")
    assert code == 0, err
    assert "20 conv, 1 linear, 8 add, 17 quantisers (17 with adapters), input 3x224x224, 2 classes" in out
    c = load_checkpoint(ckpt)
    assert c["data"] == f"imagefolder:3x224x224:{tmp_path / 'img'}" and c["mean"] == [0.485, 0.456, 0.406]
    net = net_from_checkpoint(c, "float")
    assert torch.equal(net.state_dict()["units.s3b1_proj.weight"], torchvision_state(2)["layer3.0.downsample.0.weight"])


def test_the_command_names_a_missing_key_in_one_line(tmp_path, capsys):
    sd = torchvision_state()
    del sd["layer4.1.conv2.weight"]
    path = tmp_path / "r18.pt"
    torch.save(sd, path)
    code, _, err = run(capsys, "import", str(path), "--out", str(tmp_path / "x.pt"))
    assert_one_line_error(code, err, "missing key 'layer4.1.conv2.weight'")
