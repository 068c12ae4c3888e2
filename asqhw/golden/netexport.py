"""Export a QAT checkpoint as an integer network (docs/network.md) with golden vectors.

The QAT graph (:mod:`golden.qat.graph`) maps node for node onto the integer nodes of
docs/datapath.md sections 10-14; this module turns its learned scales into integers:

- **steps.** Codes made by a ``quant`` node have step ``s`` (times ``beta`` per sample with an
  adapter), the input codes the input quantiser's step. A wide tensor read by a ``quant``
  node has step ``s * 2^-G`` (section 14; through a max pool, which keeps steps); any other
  wide tensor (a residual branch, a tensor before an average pool) gets
  ``HEADROOM * max|x| / (2^15 - 1)`` from the ranges recorded after QAT; so do the logits.
- **multipliers.** ``M``, ``B``, ``sh`` by section 7 (float64, ties-even), with the cap
  ``M_cap`` of section 11 in nodes whose input codes carry ``beta`` and ``sh >= 1`` in ``add``
  nodes; the adapter's constants by section 13 (mean step ``s_p``, hidden step ``s_h``, output
  step ``2^-f_b``).
- **vectors.** The first samples of the checkpoint's test images, turned into input codes in
  float64 (round half to even, clamp), run through :func:`golden.netref.run_network`; the QAT
  network's float64 logits ride along for fidelity checks.
"""

from __future__ import annotations

import numpy as np
import torch

from asqhw.core.errors import UserError
from asqhw.core.network import write_network

from . import netref
from .netgraph import HEADROOM, Exporter, input_codes, integer_graph, requant_constants_capped
from .qat.checkpoint import net_from_checkpoint

__all__ = ["export_network", "build_network", "qat_test_top1", "integer_graph", "requant_constants_capped",
           "input_codes", "HEADROOM"]


def qat_test_top1(net, data_spec: str, exact_input: dict | None = None, arch: str = "split") -> list[int] | None:
    """The QAT network's top-1 class (float64, eval mode) for every image of the test split.

    Stored in the export's ``meta.qat_top1`` so that ``asqhw run`` measures integer-vs-QAT
    agreement over the whole split; None when the data set cannot be loaded here. With
    ``exact_input`` (the manifest's ``input``: a checkpoint whose last epochs were integer-exact)
    the network runs in integer-exact mode (:mod:`golden.qat.intexact`) on the input codes that
    ``asqhw run`` makes.
    """
    from asqhw.golden.qat.data import load_data

    try:
        if exact_input is not None:
            from asqhw.core.datasets import input_codes as run_codes
            from asqhw.core.datasets import load_test_set
            from asqhw.golden.qat.intexact import predict_codes

            images, _, _ = load_test_set(data_spec)
            return [int(v) for v in predict_codes(net, run_codes(images, exact_input), arch=arch)]
        data = load_data(data_spec)
    except UserError:
        return None
    net.eval()
    with torch.no_grad():
        out = [net(data.x_test[i:i + 500].double()).argmax(1) for i in range(0, len(data.y_test), 500)]
    return [int(v) for v in torch.cat(out)]


def build_network(ckpt: dict, *, samples: int = 8, arch: str = "split", name: str | None = None,
                  description: str | None = None, meta: dict | None = None) -> tuple[dict, dict, dict]:
    """Manifest, parameter arrays and golden vectors of a QAT checkpoint (nothing written).

    Parameters
    ----------
    ckpt : dict
        A checkpoint from :func:`golden.qat.checkpoint.load_checkpoint`.
    samples : int
        Golden samples (the first test images stored in the checkpoint); 0 for none.
    arch : {"split", "lut"}
        Architecture of POST layers.
    meta : dict, optional
        Extra ``meta`` entries (e.g. ``export_command``); the checkpoint's ``command`` is
        recorded as ``train_command``.
    """
    if arch not in ("split", "lut"):
        raise UserError(f"POST architecture must be 'split' or 'lut', not {arch!r}")
    kept = len(ckpt.get("samples_y", []))
    if isinstance(samples, bool) or not isinstance(samples, int) or not 0 <= samples <= kept:
        raise UserError(f"samples must be in 0..{kept} (the test images the checkpoint keeps), not {samples!r}")
    net = net_from_checkpoint(ckpt, "qat").double()
    ex = Exporter(net, arch)
    nodes = ex.run()
    sch = ckpt["scheme"]
    tag = f"{sch['name'].replace('+', '_')}{sch['bits']}"
    name = name or f"{ckpt['model']}_{tag}"
    inp = net.units[net.nodes[0].name]
    manifest = {
        "name": name,
        "description": description or f"{ckpt['model']} trained on {ckpt['data']}, scheme {sch['name']} "
                                      f"{sch['bits']}-bit, exported by asqhw golden export --model",
        "classes": net.classes,
        "input": {"shape": list(net.input_shape), "bits": 8, "signed": True, "step": inp.step,
                  "mean": [float(v) for v in ckpt["mean"]], "std": [float(v) for v in ckpt["std"]]},
        "nodes": nodes,
        "output": net.nodes[-1].name,
        "samples": samples,
        "meta": {"scheme": sch["name"], "bits": sch["bits"], "e_max": sch["e_max"], "post_arch": arch,
                 "model": ckpt["model"], "data": ckpt["data"], "seed": ckpt.get("seed"),
                 "float_acc": ckpt.get("float_acc"), "qat_acc": ckpt.get("qat_acc"),
                 "train_command": ckpt.get("command"),
                 "headroom": HEADROOM,
                 "steps": {k: v for k, v in ex.steps.items()},
                 "code_steps": {ex.src(k): v for k, v in ex.code_step.items()}} | (meta or {}),
    }
    top1 = qat_test_top1(net, ckpt["data"], manifest["input"] if ckpt.get("int_exact_epochs") else None, arch)
    if top1 is not None:
        manifest["meta"]["qat_top1"] = top1
    vectors = {}
    if samples:
        x = ckpt["samples_x"][:samples]
        codes = input_codes(x, inp.step)
        vectors = netref.run_network((dict(manifest, samples=0), ex.params), codes)
        vectors["vec/input"] = codes
        vectors["vec/labels"] = ckpt["samples_y"][:samples].numpy().astype(np.int64)
        with torch.no_grad():
            if ckpt.get("int_exact_epochs"):  # the integer-exact QAT network: its logits are the integer ones
                from asqhw.golden.qat.intexact import IntExact

                with IntExact(net, arch):
                    vectors["vec/qat_logits"] = net(x.double()).float().numpy()
            else:
                vectors["vec/qat_logits"] = net(x.double()).float().numpy()
    return manifest, ex.params, vectors


def export_network(ckpt: dict, path, *, samples: int = 8, arch: str = "split", force: bool = False,
                   name: str | None = None, meta: dict | None = None) -> tuple[str, dict]:
    """Write the network export of a checkpoint to ``path``; return its SHA-256 and manifest."""
    from asqhw.core import atomic

    atomic.check_target(path, force)
    manifest, params, vectors = build_network(ckpt, samples=samples, arch=arch, name=name, meta=meta)
    return write_network(path, manifest, params, vectors, force=force), manifest
