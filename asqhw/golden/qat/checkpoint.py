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
import math
from pathlib import Path

import torch

from asqhw.core import atomic
from asqhw.core.errors import UserError

from .graph import QatNet
from .graphspec import build_from_spec
from .models import MODELS, build_model
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
    try:
        _validate(ckpt)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return ckpt


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _short(v) -> str:
    """A short description of ``v`` that never walks a container (a deeply shared list would
    take forever to print) nor prints a huge integer."""
    if torch.is_tensor(v):
        return f"a tensor {list(v.shape)}"
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        return "an integer of more than 64 bits"
    if v is None or isinstance(v, (bool, int, float, str, bytes)):
        text = repr(v)
        return text if len(text) <= 60 else text[:57] + "..."
    return f"a {type(v).__name__}" + (f" of {len(v)} items" if isinstance(v, (list, tuple, dict)) else "")


_SCHEME_TYPES = {"name": str, "bits": int, "e_max": str, "reduction": int, "beta_bits": int, "beta_frac": int}


def _validate(ckpt: dict) -> None:
    """Every field a reader uses, by type and value (one UserError naming the first bad one)."""
    def need(ok, key, what):
        if not ok:
            raise UserError(f"checkpoint field {key} must be {what}, not {_short(ckpt.get(key))}")

    need(isinstance(ckpt["model"], str) and (ckpt["model"] in MODELS or ckpt.get("graph") is not None), "model",
         f"one of {', '.join(MODELS)} (or the name of an imported graph)")
    sch = ckpt["scheme"]
    need(isinstance(sch, dict) and set(sch) <= set(_SCHEME_TYPES) and {"name", "bits"} <= set(sch) and all(
        isinstance(v, t) and not isinstance(v, bool) for k, v in sch.items() for t in [_SCHEME_TYPES[k]]),
        "scheme", "an object {name, bits, e_max, reduction, beta_bits, beta_frac} of strings and integers")
    Scheme(**sch)                                          # the scheme's own value checks
    data = ckpt["data"]
    need(isinstance(data, str) and data.isprintable() and (data == "digits" or data.startswith(("cifar10:", "imagefolder:"))),
         "data", "'digits', 'cifar10:DIR' or 'imagefolder:[CxHxW:]DIR'")
    for key in ("mean", "std"):
        v = ckpt[key]
        need(isinstance(v, (list, tuple)) and 1 <= len(v) <= 16 and all(_is_number(t) for t in v)
             and (key == "mean" or all(t > 0 for t in v)), key,
             "a list of finite numbers" + (" above 0" if key == "std" else ""))
    need(len(ckpt["mean"]) == len(ckpt["std"]), "std", f"{len(ckpt['mean'])} numbers like mean")
    if "classes" in ckpt:
        need(_is_int(ckpt["classes"]) and 2 <= ckpt["classes"] <= 1000, "classes", "an integer in 2..1000")
    for key in ("seed", "int_exact_epochs"):
        if key in ckpt:
            need(_is_int(ckpt[key]) and 0 <= ckpt[key] < 1 << 64, key, "a non-negative integer")
    if ckpt.get("subset") is not None:
        need(_is_int(ckpt["subset"]) and ckpt["subset"] >= 1, "subset", "a positive integer or null")
    if "epochs" in ckpt:
        v = ckpt["epochs"]
        need(isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(t) and t >= 0 for t in v),
             "epochs", "two non-negative integers")
    for key in ("float_acc", "qat_acc", "fake_quant_acc"):
        if ckpt.get(key) is not None:
            need(_is_number(ckpt[key]) and 0 <= ckpt[key] <= 100, key, "a percentage, a finite number in 0..100")
    if "command" in ckpt:
        need(isinstance(ckpt["command"], str), "command", "a string")
    _check_state(ckpt, "float_state", ckpt["float_state"])
    if ckpt.get("qat_state") is not None:
        _check_state(ckpt, "qat_state", ckpt["qat_state"])
    if "samples_x" in ckpt or "samples_y" in ckpt:
        x, y = ckpt.get("samples_x"), ckpt.get("samples_y")
        need(torch.is_tensor(x) and x.dtype == torch.float32 and x.dim() == 4 and x.shape[1] == len(ckpt["mean"])
             and bool(torch.isfinite(x).all()), "samples_x",
             f"a finite float32 tensor N x {len(ckpt['mean'])} x H x W")
        classes = ckpt.get("classes", 10)
        need(torch.is_tensor(y) and y.dtype == torch.int64 and y.shape == (x.shape[0],)
             and (y.numel() == 0 or (int(y.min()) >= 0 and int(y.max()) < classes)), "samples_y",
             f"an int64 tensor of {x.shape[0]} labels in 0..{classes - 1}")


def _check_state(ckpt: dict, key: str, state) -> None:
    """A state dict: names to tensors, floating ones finite, no layer with only zero weights."""
    if not (isinstance(state, dict) and state and all(isinstance(k, str) for k in state)):
        raise UserError(f"checkpoint field {key} must be a state dict (names to tensors), not {_short(state)}")
    for name, t in state.items():
        if not torch.is_tensor(t):
            raise UserError(f"checkpoint {key} entry {name!r} must be a tensor, not {_short(t)}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(f"checkpoint {key} entry {name!r} holds NaN or infinity")
        if name.endswith("weight") and t.dim() >= 2 and t.numel() and not bool(t.any()):
            raise UserError(f"checkpoint {key} entry {name!r}: every weight is zero (nothing to quantise)")


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
