"""Files of an accelerator program: ROM images (``.hex``, ``.mem``), the manifest, the register map.

``.hex``: one word per line in hexadecimal, ``ceil(width/4)`` digits (``$readmemh``); ``.mem``:
the same words in binary, ``width`` digits (``$readmemb``). Word ``i`` is line ``i``.
"""

from __future__ import annotations

import json

from asqhw import __version__
from asqhw.core.spec import SPEC_VERSION

from ..engine.adapter_unit import Q_BITS
from . import fit, regmap
from .cycles import image_cycles
from .program import DESC_FIELDS, AccelProgram, desc_bits

__all__ = ["images", "manifest", "files"]


def _fields(pairs) -> list[dict]:
    out, off = [], 0
    for name, width, doc in pairs:
        out.append({"name": name, "lsb": off, "width": width, "meaning": doc})
        off += width
    return out


def images(prog: AccelProgram) -> list[dict]:
    """Every initialised memory: name, width, words, bit fields, what it holds."""
    out = []
    for i, e in enumerate(prog.engines):
        c = e.ecfg
        if c.grouped:
            payload = [("neg", 1, "subtract A"), ("zero", 1, "shift-only entry"), ("dbl", 1, "double first")]
            if c.dp.arch == "split":
                payload.append(("k", 1, "accumulator 1 (odd exponent)"))
        else:
            payload = [("code", c.dp.storage_bits, "weight code as stored")]
        out.append({"name": f"engine{i}_terms", "width": c.term_bits, "words": e.terms, "kind": "weights",
                    "holds": f"the engine's term memory (initialised): term entries of {', '.join(e.layers)} "
                             "(docs/engine.md), layer after layer; a run starts at its t_base",
                    "fields": _fields(payload + [("offset", c.act_addr_bits, "activation offset")])})
        out.append({"name": f"engine{i}_params", "width": c.param_bits, "words": e.params, "kind": "weights",
                    "holds": "channel words, one per output channel, layer after layer",
                    "fields": _fields([("count", c.count_bits, "term entries of the channel")]
                                      + [(f"M{k}", 16, f"multiplier of accumulator {k}") for k in range(c.n_acc)]
                                      + [("B", 48, "bias, two's complement"), ("sh", 6, "right shift")])})
    out += [
        {"name": "adapter_w", "width": 8, "words": prog.ad_w, "kind": "weights",
         "holds": "adapter weights: per adapter w1 row-major then w2", "fields": _fields([("w", 8, "two's complement")])},
        {"name": "adapter_q", "width": Q_BITS, "words": prog.ad_q, "kind": "weights",
         "holds": "adapter requantiser words: per adapter the pool, the hidden rows, the output layer",
         "fields": _fields([("M", 16, "multiplier"), ("B", 48, "bias, two's complement"), ("sh", 6, "shift")])},
        {"name": "adapter_m", "width": 16, "words": prog.ad_m, "kind": "weights",
         "holds": "static multipliers M[c][k] of the beta_from layers, per adapter in node order",
         "fields": _fields([("M", 16, "multiplier")])},
        {"name": "descriptors", "width": desc_bits(), "words": prog.descriptors, "kind": "tables",
         "holds": "one descriptor per step (docs/accelerator.md)",
         "fields": [f | {"signed": s} for f, (_, _, s) in
                    zip(_fields([(n, w, "") for n, w, _ in DESC_FIELDS]), DESC_FIELDS)]},
    ]
    return out


def manifest(prog: AccelProgram, imgs: list[dict]) -> dict:
    """The JSON manifest of ``asqhw program``."""
    ic = image_cycles(prog)
    mems = [{k: v for k, v in m.items() if k != "words"} | {"depth": len(m["words"]), "hex": f"{m['name']}.hex",
                                                           "mem": f"{m['name']}.mem"} for m in imgs]
    ram = [vars(m) | {"bits": m.bits} for m in fit.memories(prog) if not m.rom]
    return {
        "format": "asqhw-accel-program", "format_version": 1, "generator": __version__,
        "spec_version": SPEC_VERSION, "network": prog.net.name, "program_sha256": prog.digest(),
        "lanes": prog.lanes, "input_codes": prog.n_in, "classes": prog.classes,
        "engines": [{"index": i, "tag": e.ecfg.tag(), "layers": e.layers, "lanes": e.ecfg.lanes,
                     "schedule": e.ecfg.schedule, "act_depth": e.ecfg.act_depth, "term_depth": e.ecfg.term_depth,
                     "out_depth": e.ecfg.out_depth, "max_channels": e.ecfg.max_channels}
                    for i, e in enumerate(prog.engines)],
        "adapter_unit": prog.ad_cfg, "adapters": prog.adapters,
        "tmem": {"depth": prog.tmem_depth, "width": 16,
                 "regions": {k: {"base": b, "words": n} for k, (b, n) in prog.regions.items()}},
        "roms": mems, "rams": ram,
        "steps": [{"step": i, "op": s.op, "node": s.node, "fields": s.fields, "cycles": c.total, "phases": c.phases}
                  for i, (s, c) in enumerate(zip(prog.steps, ic.steps))],
        "cycles_per_image": ic.total, "period_cycles": ic.period,
        "fit": {d: fit.fit(prog, d) | {"line": fit.fit_line(prog, d)} for d in fit.DEVICES},
    }


def _hex(words, width):
    digits = max(1, -(-width // 4))
    return "".join(f"{int(w):0{digits}x}\n" for w in words)


def _bin(words, width):
    return "".join(f"{int(w):0{width}b}\n" for w in words)


def files(prog: AccelProgram) -> dict[str, str]:
    """Every file of ``asqhw program`` by name (text)."""
    imgs = images(prog)
    out = {}
    for m in imgs:
        out[f"{m['name']}.hex"] = _hex(m["words"], m["width"])
        out[f"{m['name']}.mem"] = _bin(m["words"], m["width"])
    out["manifest.json"] = json.dumps(manifest(prog, imgs), indent=1, default=int) + "\n"
    out["regmap.json"] = regmap.as_json() + "\n"
    out["asqhw_regmap.h"] = regmap.c_header()
    return out
