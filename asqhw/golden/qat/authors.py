"""ResNet-18 weights in the layout of the authors' public code (SENGEL13/ASQ-POST), as the ResNet-18 QAT graph.

The authors' training script loads a torchvision ResNet-18 and wraps it in their quantised
modules; their checkpoints hold ``state_dict`` (maybe behind a DataParallel ``module.``
prefix). Both layouts are read (:func:`load_state`, then :func:`authors_resnet18`):

- **float** (torchvision, what their script starts from): ``conv1``, ``bn1``,
  ``layerL.B.conv1|conv2``, ``layerL.B.bn1|bn2``, ``layerL.0.downsample.0|1`` (L = 2..4),
  ``fc``;
- **quantised** (their ``Q_ResNet18_*`` modules, what their training saves):
  ``quant_init_block_convbn.conv|bn``, ``layerL.unitB.quant_convbn1|2.conv|bn``,
  ``layerL.unit1.quant_identity_convbn.conv|bn``, ``quant_output.linear``, and every
  quantised conv's ``adapter.net.0|2``. (Their ``FirstConv2dUnfold`` and ``LastLinear`` are not
  defined in the published code; the names assume ``.conv``/``.bn`` and ``.linear`` as in their
  ``LsqBnFirstConv2dUnfold`` and ``LsqFixedLinear``.)

They map onto :func:`.resnet.resnet18` (block ``layerL.B`` / ``layerL.unit{B+1}`` is
``sL b(B+1)``): convs and BatchNorms (weight, bias, running mean and variance) to ``conv1``,
``sLbB_conv1|conv2|proj``, the FC to ``fc`` (its row count sets the classes), and the
adapters of ``quant_convbn1`` and ``quant_convbn2`` to the quantisers ``sLbB_qa`` and
``sLbB_qb`` that read the same tensors. Not taken: the identity conv's adapter (the project's
projection shares ``sLbB_qa``), the activation steps and the weight scales (their POST level set
is another, base 2 with ``2^b + 1`` levels; QAT initialises every step from data, as their
code does on its first batch), ``init_state`` and ``num_batches_tracked``. A missing,
mis-shaped or unknown key is a one-line UserError naming it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from asqhw.core.errors import UserError

from .graph import QatNet
from .resnet import resnet18
from .scheme import Scheme

__all__ = ["load_state", "authors_resnet18", "MAX_BYTES"]

MAX_BYTES = 1 << 30
_BN = ("weight", "bias", "running_mean", "running_var")
_IGNORED = ("num_batches_tracked", "init_state", ".quan_a_fn.s", ".quan_w_fn.s")


def load_state(path) -> dict:
    """The flat tensor dict of a ``torch.save`` file (``state_dict`` unwrapped, ``module.`` dropped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.stat().st_size > MAX_BYTES:
        raise UserError(f"{path}: {path.stat().st_size} bytes is more than {MAX_BYTES >> 20} MiB")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling or zip problem
        raise UserError(f"{path}: not a readable PyTorch state dict ({type(e).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items()):
        raise UserError(f"{path}: expected a state dict (names to tensors), or a dict with one under 'state_dict'")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _key_map(quantised: bool) -> dict[str, str]:
    """Authors' key -> project key for every tensor taken (the module docstring's mapping)."""
    m: dict[str, str] = {}

    def conv_bn(conv: str, bn: str, ours: str) -> None:
        m[f"{conv}.weight"] = f"units.{ours}.weight"
        for p in _BN:
            m[f"{bn}.{p}"] = f"units.{ours}.bn.{p}"

    if quantised:
        conv_bn("quant_init_block_convbn.conv", "quant_init_block_convbn.bn", "conv1")
        m["quant_output.linear.weight"], m["quant_output.linear.bias"] = "units.fc.weight", "units.fc.bias"
    else:
        conv_bn("conv1", "bn1", "conv1")
        m["fc.weight"], m["fc.bias"] = "units.fc.weight", "units.fc.bias"
    for s in range(1, 5):
        for b in range(2):
            ours = f"s{s}b{b + 1}"
            if quantised:
                unit = f"layer{s}.unit{b + 1}"
                for i, q in ((1, "qa"), (2, "qb")):
                    conv_bn(f"{unit}.quant_convbn{i}.conv", f"{unit}.quant_convbn{i}.bn", f"{ours}_conv{i}")
                    for j, fc in ((0, "fc1"), (2, "fc2")):
                        for p in ("weight", "bias"):
                            m[f"{unit}.quant_convbn{i}.adapter.net.{j}.{p}"] = f"units.{ours}_{q}.adapter.{fc}.{p}"
                if s > 1 and b == 0:
                    conv_bn(f"{unit}.quant_identity_convbn.conv", f"{unit}.quant_identity_convbn.bn", f"{ours}_proj")
            else:
                unit = f"layer{s}.{b}"
                for i in (1, 2):
                    conv_bn(f"{unit}.conv{i}", f"{unit}.bn{i}", f"{ours}_conv{i}")
                if s > 1 and b == 0:
                    conv_bn(f"{unit}.downsample.0", f"{unit}.downsample.1", f"{ours}_proj")
    return m


def _ignored(key: str) -> bool:
    return key.endswith(_IGNORED) or (".quant_identity_convbn.adapter." in key)


def authors_resnet18(state: dict, scheme: Scheme, where: str = "state dict") -> tuple[QatNet, str]:
    """The float-stage ResNet-18 QAT graph with the weights of an authors' state dict, and the layout.

    ``layout`` is ``float`` or ``quantised``; the FC's rows set the classes. Raises UserError
    naming a missing, unknown or mis-shaped key (shapes against :func:`.resnet.resnet18`).
    """
    quantised = "quant_init_block_convbn.conv.weight" in state
    if not quantised and "conv1.weight" not in state:
        raise UserError(f"{where}: neither the authors' quantised ResNet-18 layout (quant_init_block_convbn.*) "
                        f"nor the torchvision one (conv1.weight, layer1.0.*) it starts from")
    kmap = _key_map(quantised)
    fc = "quant_output.linear.weight" if quantised else "fc.weight"
    if fc not in state or state[fc].dim() != 2 or state[fc].shape[1] != 512 or state[fc].shape[0] < 1:
        raise UserError(f"{where}: {fc!r} must be a classes x 512 matrix, not "
                        f"{list(state[fc].shape) if fc in state else 'missing'}")
    unknown = [k for k in state if k not in kmap and not _ignored(k)]
    if unknown:
        raise UserError(f"{where}: unexpected key {unknown[0]!r} (not the authors' ResNet-18 layout)")
    net = resnet18(scheme, classes=int(state[fc].shape[0]))
    ref = net.state_dict()
    entries = {}
    for theirs, ours in kmap.items():
        if ".adapter." in theirs and (theirs not in state or ours not in ref):
            continue                 # adapters are optional (an LSQ checkpoint or scheme has none)
        if theirs not in state:
            raise UserError(f"{where}: missing key {theirs!r}")
        t = state[theirs]
        if tuple(t.shape) != tuple(ref[ours].shape):
            raise UserError(f"{where}: {theirs!r} has shape {list(t.shape)}, ResNet-18 needs {list(ref[ours].shape)}")
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise UserError(f"{where}: {theirs!r} must hold finite floating-point values")
        entries[ours] = t.detach().to(ref[ours].dtype)
    net.load_state_dict(entries, strict=False)
    net.eval()
    return net, "quantised" if quantised else "float"
