"""Train an imported network (an ONNX model, the authors' ResNet-18) with the project's recipe.

:func:`train_imported` runs :func:`.train.train` on a network that no builder in
:mod:`.models` makes: for the length of the run the network's factory is registered in
:data:`.models.MODELS` under a key no built-in name can take, and the checkpoint gets the graph
spec (:mod:`.graphspec`, key ``graph``) so that :func:`.checkpoint.net_from_checkpoint`
rebuilds it later. The float network is the imported one; ``float_epochs`` > 0 fine-tunes it on
the data before QAT.
"""

from __future__ import annotations

from contextlib import contextmanager

from . import models
from .data import Dataset
from .graph import QatNet
from .scheme import Scheme

__all__ = ["train_imported", "renormalised"]


@contextmanager
def _registered(key: str, factory):
    models.MODELS[key] = factory
    try:
        yield key
    finally:
        models.MODELS.pop(key, None)


def train_imported(data: Dataset, scheme: Scheme, spec: dict, factory, *, float_epochs: int = 0,
                   qat_epochs: int | None = None, seed: int = 0, subset: int | None = None,
                   progress: bool = True, int_exact_epochs: int = 0) -> dict:
    """Float fine-tuning (``float_epochs``, default none) then QAT of ``factory(scheme)``.

    Parameters
    ----------
    data : Dataset
    scheme : Scheme
    spec : dict
        The graph spec of the network ``factory`` builds (stored in the checkpoint).
    factory : callable
        ``factory(scheme) -> QatNet``: the float-stage network with the imported weights.
    float_epochs, qat_epochs, seed, subset, progress, int_exact_epochs
        As in :func:`.train.train`.

    Returns
    -------
    dict
        The checkpoint, with ``model`` the spec's name and ``graph`` the spec.
    """
    from .train import train

    def build(s: Scheme, *_, **__) -> QatNet:     # the imported network has its own classes and shapes
        return factory(s)

    with _registered(f"imported:{spec['name']}", build) as key:
        ckpt = train(data, scheme, model=key, float_epochs=float_epochs, qat_epochs=qat_epochs, seed=seed,
                     subset=subset, progress=progress, int_exact_epochs=int_exact_epochs)
    ckpt["model"] = spec["name"]
    ckpt["graph"] = spec
    return ckpt


def renormalised(data: Dataset, mean, std) -> Dataset:
    """``data`` normalised by ``mean`` and ``std`` per channel (pixels in ``[0, 1]``) instead of its own."""
    import dataclasses

    import torch

    from asqhw.core.errors import UserError

    c = data.x_train.shape[1]
    mean = tuple(float(v) for v in mean) * (c if len(mean) == 1 else 1)
    std = tuple(float(v) for v in std) * (c if len(std) == 1 else 1)
    if len(mean) != c or len(std) != c or min(std) <= 0:
        raise UserError(f"--mean and --std need 1 or {c} values (std > 0), not {len(mean)} and {len(std)}")

    def conv(x):
        old_m = torch.tensor(data.mean, dtype=x.dtype).reshape(1, -1, 1, 1)
        old_s = torch.tensor(data.std, dtype=x.dtype).reshape(1, -1, 1, 1)
        raw = x * old_s + old_m
        return (raw - torch.tensor(mean, dtype=x.dtype).reshape(1, -1, 1, 1)) / torch.tensor(std, dtype=x.dtype).reshape(1, -1, 1, 1)

    return dataclasses.replace(data, x_train=conv(data.x_train), x_test=conv(data.x_test), mean=mean, std=std)
