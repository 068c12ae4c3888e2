"""The reference networks by name."""

from __future__ import annotations

from asqhw.core.errors import UserError

from .digits_cnn import digits_cnn
from .graph import QatNet
from .resnet import resnet18, resnet20
from .scheme import Scheme

__all__ = ["MODELS", "build_model"]

MODELS = {"digits_cnn": digits_cnn, "resnet20": resnet20, "resnet18": resnet18}


def build_model(name: str, scheme: Scheme) -> QatNet:
    """The float-stage network ``name`` for ``scheme``."""
    if name not in MODELS:
        raise UserError(f"model must be one of {', '.join(MODELS)}, not {name!r}")
    return MODELS[name](scheme)
