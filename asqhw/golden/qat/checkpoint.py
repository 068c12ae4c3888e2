"""QAT checkpoint files: the float and the QAT state of one network, with what made them.

A checkpoint is a ``torch.save`` dict (read back with ``weights_only=True``): ``format``
(``asqhw-qat-checkpoint``), ``version``, ``model``, ``scheme`` (a dict), ``data`` (``digits`` or
``cifar10:DIR``), ``mean``, ``std``, ``classes``, ``seed``, ``epochs`` ``[float, qat]``,
``float_state`` and ``qat_state`` (state dicts; ``qat_state`` None for a float-only
checkpoint), ``float_acc`` and ``qat_acc`` (test accuracy, %), and ``samples_x`` /
``samples_y``: the first normalised test images and labels, for golden vectors; and, when
``asqhw train`` wrote it, ``command``: the command line that reproduces it; for an imported
network (``asqhw import``), ``graph``: its graph spec (:mod:`.graphspec`).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from asqhw.core import atomic
from asqhw.core.errors import UserError

from .graph import QatNet
from .graphspec import build_from_spec
from .models import build_model
from .scheme import Scheme

__all__ = ["save_checkpoint", "load_checkpoint", "net_from_checkpoint", "FORMAT", "VERSION"]

FORMAT = "asqhw-qat-checkpoint"
VERSION = 1


def save_checkpoint(path, ckpt: dict, force: bool = False) -> None:
    """Write ``ckpt`` to ``path`` atomically; an existing file is kept unless ``force``."""
    buf = io.BytesIO()
    torch.save(dict(ckpt, format=FORMAT, version=VERSION), buf)
    atomic.write_bytes(path, buf.getvalue(), force)


def load_checkpoint(path) -> dict:
    """Read and check a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: not a readable QAT checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not an asq-hw QAT checkpoint")
    if ckpt.get("version") != VERSION:
        raise UserError(f"{path}: unknown checkpoint version {ckpt.get('version')!r} (this tool reads {VERSION})")
    for key in ("model", "scheme", "data", "float_state", "mean", "std"):
        if key not in ckpt:
            raise UserError(f"{path}: checkpoint lacks {key!r}")
    return ckpt


def net_from_checkpoint(ckpt: dict, stage: str = "qat") -> QatNet:
    """Rebuild the network of a checkpoint in ``stage`` (``float`` or ``qat``) with its weights."""
    try:
        scheme = Scheme(**ckpt["scheme"])
    except TypeError:
        raise UserError(f"checkpoint has a malformed scheme {ckpt['scheme']!r}") from None
    if ckpt.get("graph") is not None:     # an imported network (golden.qat.graphspec)
        net = build_from_spec(ckpt["graph"], scheme)
    else:
        net = build_model(ckpt["model"], scheme)
    if stage == "float":
        state = ckpt["float_state"]
    else:
        state = ckpt.get("qat_state")
        if state is None:
            raise UserError("the checkpoint holds no QAT network (float training only)")
        net.to_qat()
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"checkpoint does not match the {ckpt['model']} network: {str(e).splitlines()[0]}") from None
    net.eval()
    return net
