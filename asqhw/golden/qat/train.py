"""Float pre-training and quantisation-aware training of a reference network, seeded.

:func:`train` runs the paper's recipe on a :class:`~.data.Dataset`: train the float network
(with BatchNorm), LSQ-initialise every quantiser from a batch of float activations, fine-tune
the quantised network (QAT) with the BatchNorm folded as the hardware will (folded before QAT,
or simulated-folded with batch statistics until ``bn_freeze`` of the QAT epochs and frozen
running statistics after, see :mod:`.layers`), fold what is left, then record the ranges of the
wide tensors (:meth:`~.graph.QatNet.calibrate`) that the exporter turns into steps. Everything random draws
from ``torch.manual_seed(seed)`` and one seeded ``torch.Generator``; with the same seed, thread
count and machine the result is the same.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as tfn

from .data import Dataset, augment_batch
from .graph import QatNet
from .models import build_model
from .scheme import Scheme

__all__ = ["Recipe", "RECIPES", "train", "evaluate", "default_model", "recipe_for", "param_groups", "lr_factor"]


@dataclass(frozen=True)
class Recipe:
    """Optimiser settings of one data set.

    ``optimizer``: ``adam`` or ``sgd`` (momentum 0.9, no Nesterov); cosine decay to zero in both
    phases. Learning rates of the parameter groups are ``lr`` times a factor: ``step_lr`` for
    steps and scales (``.s``, ``.alpha``), ``adapter_lr`` for the adapters' FC weights and
    biases. ``weight_decay`` applies to conv/linear weights outside the adapters only.
    ``warmup``: fraction of the QAT steps over which the learning rate rises linearly from 0.
    ``bn_freeze``: None folds the BatchNorm before QAT; a number keeps it simulated-folded with
    batch statistics for that fraction of the QAT steps, then freezes the running statistics.
    ``adapter_start``: ``fit``, ``range`` or ``lsq`` (:meth:`.adapter.Adapter.init_quantisers`).
    """

    batch: int
    float_lr: float
    qat_lr: float
    optimizer: str
    weight_decay: float
    float_epochs: int
    qat_epochs: int
    step_lr: float = 1.0
    adapter_lr: float = 1.0
    warmup: float = 0.0
    bn_freeze: float | None = None
    adapter_start: str = "fit"


RECIPES = {
    # Adam moves every parameter by about lr per step whatever its size; steps and scales are
    # small numbers (1e-3 .. 1e-1), so they get a 100x smaller rate. The adapters keep the
    # authors' start here (docs/qat.md: the fitted start is measured against it)
    "digits": Recipe(batch=32, float_lr=3e-3, qat_lr=1e-3, optimizer="adam", weight_decay=0.0,
                     float_epochs=30, qat_epochs=30, step_lr=0.01, adapter_start="lsq"),
    # the paper's CIFAR recipe (APoT's): SGD momentum 0.9, lr 0.04, batch 128, wd 1e-4, cosine
    # decay, 300 QAT epochs. Steps and scales at 0.01 x lr: at the full rate (LSQ's gradient
    # scale, none on POT/POST scales) they left [1e-8, 4e5] within 40 steps (docs/qat.md)
    "cifar10": Recipe(batch=128, float_lr=0.04, qat_lr=0.04, optimizer="sgd", weight_decay=1e-4,
                      float_epochs=200, qat_epochs=300, step_lr=0.01, adapter_lr=1.0, warmup=0.0,
                      bn_freeze=0.9),
}


def default_model(data_spec: str) -> str:
    """The reference network of a data set."""
    return "digits_cnn" if data_spec == "digits" else "resnet20"


def recipe_for(data_spec: str) -> Recipe:
    return RECIPES["digits" if data_spec == "digits" else "cifar10"]


@torch.no_grad()
def evaluate(net: QatNet, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy in percent."""
    net.eval()
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return 100.0 * correct / max(len(y), 1)


def _is_scale(name: str) -> bool:
    """A quantiser's learned step or scale (``s`` of ASQ/LSQ, ``alpha`` of a weight quantiser)."""
    return name.endswith(".s") or name.endswith(".alpha")


def param_groups(net: QatNet, recipe: Recipe, lr: float) -> list[dict]:
    """Parameter groups ``weights``, ``plain`` (biases, BatchNorm), ``steps``, ``adapter``.

    Weight decay on conv/linear weights of the network only, never on steps, scales, biases,
    BatchNorm or adapters (decay would pull the adapter towards a constant ``beta``).
    """
    groups = {"weights": [], "plain": [], "steps": [], "adapter": []}
    for name, p in net.named_parameters():
        if _is_scale(name):
            groups["steps"].append(p)
        elif ".adapter." in name:
            groups["adapter"].append(p)
        else:
            groups["weights" if name.endswith("weight") and p.dim() > 1 else "plain"].append(p)
    rates = {"weights": lr, "plain": lr, "steps": lr * recipe.step_lr, "adapter": lr * recipe.adapter_lr}
    return [{"name": k, "params": v, "lr": rates[k], "weight_decay": recipe.weight_decay if k == "weights" else 0.0}
            for k, v in groups.items() if v]


def _optimizer(net: QatNet, recipe: Recipe, lr: float):
    groups = param_groups(net, recipe, lr)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


def lr_factor(step: int, steps: int, warmup_steps: int) -> float:
    """Linear warm-up over ``warmup_steps`` then cosine decay to 0 at ``steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


@torch.no_grad()
def _keep_scales_positive(net: QatNet) -> None:
    """Project every step and scale onto ``>= 1e-8``: the integer export needs them positive."""
    for name, p in net.named_parameters():
        if _is_scale(name):
            p.clamp_(min=1e-8)


def _run(net: QatNet, data: Dataset, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
         recipe: Recipe, gen: torch.Generator, desc: str, progress: bool, qat: bool = False) -> float:
    """Train for ``epochs`` (warm-up and cosine decay); return the last test accuracy.

    In QAT the simulated BatchNorm freezes after ``recipe.bn_freeze`` of the steps.
    """
    from tqdm import tqdm

    acc = evaluate(net, data.x_test, data.y_test)
    if epochs <= 0:
        return acc
    opt = _optimizer(net, recipe, lr)
    steps = epochs * math.ceil(len(y) / recipe.batch)
    warm = int(round(recipe.warmup * steps)) if qat else 0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k, steps, warm))
    freeze_at = round(recipe.bn_freeze * steps) if qat and recipe.bn_freeze is not None else None
    step = 0
    if freeze_at == 0:
        net.freeze_bn()
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=True, dynamic_ncols=True)
    for _ in bar:
        net.train()
        perm = torch.randperm(len(y), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(y), recipe.batch):
            idx = perm[i:i + recipe.batch]
            xb = x[idx]
            if data.augment:
                xb = augment_batch(xb, gen)
            loss = tfn.cross_entropy(net(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == freeze_at:
                net.freeze_bn()
            _keep_scales_positive(net)
            if qat:
                net.floor_weight_steps()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        acc = evaluate(net, data.x_test, data.y_test)
        bar.set_postfix(loss=f"{total / n:.3f}", test_acc=f"{acc:.2f}%")
    return acc


def load_float_state(net: QatNet, state: dict) -> None:
    """Load the float network of another scheme's checkpoint (same model; adapters may differ).

    The float networks of all schemes are the same function; only the (unused) adapters'
    parameters differ, and those keep their initial values.
    """
    from asqhw.core.errors import UserError

    res = net.load_state_dict(state, strict=False)
    bad = [k for k in res.missing_keys + res.unexpected_keys if ".adapter." not in k]
    if bad:
        raise UserError(f"the float network does not match {net.name}: parameter {bad[0]!r}")


def train(data: Dataset, scheme: Scheme, *, model: str | None = None, float_epochs: int | None = None,
          qat_epochs: int | None = None, seed: int = 0, subset: int | None = None,
          float_state: dict | None = None, progress: bool = True, samples: int = 64,
          int_exact_epochs: int = 0, recipe: Recipe | None = None) -> dict:
    """Float pre-training then QAT; return a checkpoint dict (see :mod:`.checkpoint`).

    Parameters
    ----------
    data : Dataset
    scheme : Scheme
    model : str, optional
        Network name (default: the data set's reference network).
    float_epochs, qat_epochs : int, optional
        Epochs of each phase (default: the data set's :data:`RECIPES`).
    seed : int
    subset : int, optional
        Train on the first ``subset`` training samples only (quick runs, tests).
    float_state : dict, optional
        Start QAT from this float state dict instead of training the float network.
    progress : bool
        Show progress bars (tqdm, on stderr).
    samples : int
        Test images kept in the checkpoint for golden vectors.
    int_exact_epochs : int
        Final epochs in integer-exact mode (:mod:`.intexact`), after the calibration; the QAT
        accuracy is then the integer network's.
    recipe : Recipe, optional
        Optimiser settings (default: the data set's :data:`RECIPES` entry).
    """
    recipe = recipe or recipe_for(data.spec)
    model = model or default_model(data.spec)
    fe = recipe.float_epochs if float_epochs is None else float_epochs
    qe = recipe.qat_epochs if qat_epochs is None else qat_epochs
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = data.x_train, data.y_train
    if subset is not None:
        x, y = x[:subset], y[:subset]

    net = build_model(model, scheme)
    if tuple(data.x_train.shape[1:]) != net.input_shape:
        from asqhw.core.errors import UserError

        raise UserError(f"{model} takes {list(net.input_shape)} images, {data.spec} has "
                        f"{list(data.x_train.shape[1:])}")
    if float_state is not None:
        load_float_state(net, float_state)
        float_acc = evaluate(net, data.x_test, data.y_test)
        fe = 0
    else:
        float_acc = _run(net, data, x, y, fe, recipe.float_lr, recipe, gen, "float", progress)
    float_sd = copy.deepcopy(net.state_dict())

    net.eval()
    net.to_qat(keep_bn=recipe.bn_freeze is not None)
    init = x[torch.randperm(len(y), generator=gen)[:256]]
    net.init_quantisers(init, recipe.adapter_start)
    qat_acc = _run(net, data, x, y, qe, recipe.qat_lr, recipe, gen, f"qat {scheme.name} {scheme.bits}b", progress,
                   qat=True)
    net.fold_bn()
    net.calibrate(x[i:i + 500] for i in range(0, min(len(y), 4000), 500))
    fake_acc, int_start = qat_acc, None
    if int_exact_epochs:  # the final epochs: the forward pass is the integer network (docs/qat.md)
        from .intexact import LR_SCALE, IntExact

        with IntExact(net):
            int_start = evaluate(net, data.x_test, data.y_test)
            qat_acc = _run(net, data, x, y, int_exact_epochs, recipe.qat_lr * LR_SCALE, recipe, gen,
                           f"int-exact {scheme.name} {scheme.bits}b", progress)
    return {
        "model": model, "scheme": scheme.as_dict(), "data": data.spec, "mean": list(data.mean),
        "std": list(data.std), "classes": data.classes, "seed": seed, "epochs": [fe, qe],
        "subset": subset, "float_state": float_sd, "qat_state": net.state_dict(),
        "float_acc": float_acc, "qat_acc": qat_acc, "recipe": dataclasses.asdict(recipe), "fake_quant_acc": fake_acc, "int_exact_epochs": int_exact_epochs,
        "int_exact_start_acc": int_start,
        "samples_x": data.x_test[:samples].clone(), "samples_y": data.y_test[:samples].clone(),
    }
