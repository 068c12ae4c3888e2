"""The committed golden corpus (asqhw/golden/vectors) and its exporter.

Cases come in *families*: one hardware configuration (datapath, accumulator width, output
range) shared by several layer shapes, so that RTL co-simulation builds few models. Fan-ins
are chosen so that every case of a family has the same natural accumulator width: most
layers have ``K = 72`` (3x3 kernels over 8 channels per group, 1x1 over 72, linear 72) and
the 7x7 layers ``K = 98``; the narrow families (``..._acc12`` / ``..._acc14``) hold the
depthwise layers (``K = 9``, at their natural width) and the wrapping cases (``K = 72``,
below natural).
"""

from __future__ import annotations

import hashlib
import tempfile
import zlib
from pathlib import Path

from asqhw.core.atomic import ensure_dir, write_bytes
from asqhw.core.errors import UserError
from asqhw.core.safezip import loads_json
from asqhw.core.validate import check_int
from asqhw.core.vectors import fan_in, read_case, write_index

from .export import CaseSpec, conv2d, export_case, linear

__all__ = ["corpus_specs", "export_corpus", "large_case_spec", "config_key", "FAMILIES"]

# family prefix -> datapath and output parameters shared by its cases
FAMILIES = {
    "uni2": dict(fmt="uniform", a_bits=2, w_bits=2, out_bits=4),
    "uni3": dict(fmt="uniform", a_bits=3, w_bits=3, out_bits=4),
    "uni4": dict(fmt="uniform", a_bits=4, w_bits=4, out_bits=8),
    "uni4_acc12": dict(fmt="uniform", a_bits=4, w_bits=4, out_bits=8, acc_bits=12),
    "uni4_so8": dict(fmt="uniform", a_bits=4, w_bits=4, out_bits=8, out_signed=True),
    "uni8": dict(fmt="uniform", a_bits=8, w_bits=8, out_bits=8),
    "uni8_as8": dict(fmt="uniform", a_bits=8, w_bits=8, a_signed=True, out_bits=8),
    "pot3": dict(fmt="pot", a_bits=4, w_bits=3, out_bits=4),
    "pot3_e3": dict(fmt="pot", a_bits=4, w_bits=3, e_max=3, out_bits=4),
    "pot4": dict(fmt="pot", a_bits=4, w_bits=4, out_bits=8),
    "pot4_e7": dict(fmt="pot", a_bits=4, w_bits=4, e_max=7, out_bits=8),
    "post3_split": dict(fmt="post", a_bits=4, w_bits=3, arch="split", out_bits=4),
    "post3_lut": dict(fmt="post", a_bits=4, w_bits=3, arch="lut", out_bits=4),
    "post3_e3_split": dict(fmt="post", a_bits=4, w_bits=3, e_max=3, arch="split", out_bits=4),
    "post3_e3_lut": dict(fmt="post", a_bits=4, w_bits=3, e_max=3, arch="lut", out_bits=4),
    "post4_split": dict(fmt="post", a_bits=4, w_bits=4, arch="split", out_bits=8),
    "post4_split_acc12": dict(fmt="post", a_bits=4, w_bits=4, arch="split", out_bits=8, acc_bits=12),
    "post4_lut": dict(fmt="post", a_bits=4, w_bits=4, arch="lut", out_bits=8),
    "post4_lut_acc14": dict(fmt="post", a_bits=4, w_bits=4, arch="lut", out_bits=8, acc_bits=14),
    "post4_e7_split": dict(fmt="post", a_bits=4, w_bits=4, e_max=7, arch="split", out_bits=8),
    "post4_e7_lut": dict(fmt="post", a_bits=4, w_bits=4, e_max=7, arch="lut", out_bits=8),
    "post4_lutF10": dict(fmt="post", a_bits=4, w_bits=4, arch="lut", frac_bits=10, out_bits=8),
    "post4_lut_as8": dict(fmt="post", a_bits=8, w_bits=4, arch="lut", a_signed=True, out_bits=8,
                          out_signed=True),
    "post4_split_as8": dict(fmt="post", a_bits=8, w_bits=4, arch="split", a_signed=True, out_bits=8,
                            out_signed=True),
}

# shape name -> (layer, batch, tags); K = 72 unless noted
SHAPES = {
    "lin72": (linear(72, 32), 4, ("layer:linear",)),
    "conv1x1": (conv2d(72, 16, 1, 5), 2, ("layer:conv2d", "kernel:1")),
    "conv3x3_s1_p0": (conv2d(8, 8, 3, 8), 2, ("layer:conv2d", "kernel:3")),
    "conv3x3_s1_p1": (conv2d(8, 8, 3, 8, padding=1), 2, ("layer:conv2d", "kernel:3", "padding")),
    "conv3x3_s2_p1": (conv2d(8, 16, 3, 9, stride=2, padding=1), 2,
                      ("layer:conv2d", "kernel:3", "stride:2", "padding")),
    "conv3x3_g2": (conv2d(16, 16, 3, 6, padding=1, groups=2), 2,
                   ("layer:conv2d", "kernel:3", "groups", "padding")),
    "conv3x3_b4": (conv2d(8, 8, 3, 6, padding=1), 4, ("layer:conv2d", "kernel:3", "batch")),
    "conv7x7_p3": (conv2d(2, 8, 7, 8, padding=3), 2, ("layer:conv2d", "kernel:7", "padding")),  # K=98
    "conv7x7_s2_p3_g2": (conv2d(4, 8, 7, 11, stride=2, padding=3, groups=2), 2,
                         ("layer:conv2d", "kernel:7", "stride:2", "padding", "groups")),  # K=98
    "dw3x3_p1": (conv2d(8, 8, 3, 8, padding=1, groups=8), 2,
                 ("layer:conv2d", "kernel:3", "depthwise", "padding")),  # K=9
    "dw3x3_s2_p1": (conv2d(16, 16, 3, 9, stride=2, padding=1, groups=16), 2,
                    ("layer:conv2d", "kernel:3", "depthwise", "stride:2", "padding")),  # K=9
    "edge_lin": (linear(72, 8), 2, ("layer:linear",)),
    "edge_conv": (conv2d(8, 4, 3, 5), 1, ("layer:conv2d", "kernel:3")),
    "wrap_conv": (conv2d(8, 8, 3, 6, padding=0), 2, ("layer:conv2d", "kernel:3")),
}

EDGES = {
    "actmax": dict(x_fill="max", tags=("edge:act-max",),
                   description="every activation at its largest magnitude, random weights"),
    "wmaxpos": dict(x_fill="max", w_fill="max_pos", tags=("edge:act-max", "edge:w-max"),
                    description="every activation at its largest magnitude and every weight at the "
                                "largest positive magnitude"),
    "wmaxneg": dict(x_fill="max", w_fill="max_neg", tags=("edge:act-max", "edge:w-max"),
                    description="every activation at its largest magnitude and every weight at the "
                                "largest negative magnitude"),
    "zeros": dict(w_fill="zeros", tags=("edge:zero-weights",),
                  description="about half of the weights are +0 or -0 code words"),
    "wrap": dict(x_fill="max", w_fill="large_pos", tags=("edge:acc-wrap",),
                 description="accumulator below its natural width; large positive sums wrap"),
    "sat": dict(s_out_scale=0.2, tags=("edge:saturate",),
                description="small output step: outputs saturate at both lo and hi"),
    "ties": dict(scales="dyadic", tags=("edge:ties",),
                 description="power-of-two scales so that requantisation hits exact .5 ties"),
}

# the fixed ASQ factor of a case is picked from these by its seed (dyadic cases use 1)
BETAS = (0.75, 1.0, 1.25, 1.5)

# (family, shape, edge or None)
_PLAN = [
    # uniform b_w = 2, 3: a few shapes each
    ("uni2", "lin72", None), ("uni2", "conv3x3_s1_p1", None), ("uni2", "edge_lin", "wmaxneg"),
    ("uni3", "lin72", None), ("uni3", "conv3x3_s2_p1", None), ("uni3", "edge_conv", "actmax"),
    # uniform 4: the shape family
    ("uni4", "lin72", None), ("uni4", "conv1x1", None), ("uni4", "conv3x3_s1_p0", None),
    ("uni4", "conv3x3_s1_p1", None), ("uni4", "conv3x3_s2_p1", None), ("uni4", "conv3x3_g2", None),
    ("uni4", "conv3x3_b4", None), ("uni4", "conv7x7_p3", None), ("uni4", "conv7x7_s2_p3_g2", None),
    ("uni4", "edge_lin", "wmaxneg"), ("uni4", "edge_conv", "wmaxpos"),
    ("uni4_acc12", "dw3x3_p1", None), ("uni4_acc12", "dw3x3_s2_p1", None),
    ("uni4_acc12", "edge_lin", "wrap"), ("uni4_acc12", "wrap_conv", "wrap"),
    ("uni4_so8", "conv3x3_s1_p1", "sat"), ("uni4_so8", "lin72", "ties"), ("uni4_so8", "conv3x3_s1_p0", "ties"),
    # 8-bit uniform, unsigned and signed (first-layer) inputs
    ("uni8", "lin72", None), ("uni8", "conv3x3_s1_p1", None), ("uni8", "edge_lin", "wmaxneg"),
    ("uni8_as8", "conv3x3_s1_p1", None), ("uni8_as8", "lin72", None), ("uni8_as8", "edge_lin", "wmaxneg"),
    # pot, both E_max choices
    ("pot3", "lin72", None), ("pot3", "conv3x3_s2_p1", None), ("pot3", "edge_lin", "wmaxpos"),
    ("pot3", "edge_conv", "zeros"),
    ("pot3_e3", "lin72", None), ("pot3_e3", "conv3x3_s1_p1", None), ("pot3_e3", "edge_lin", "zeros"),
    ("pot4", "lin72", None), ("pot4", "conv3x3_s1_p1", None), ("pot4", "conv3x3_s2_p1", None),
    ("pot4", "edge_lin", "wmaxpos"), ("pot4", "edge_conv", "wmaxneg"), ("pot4", "lin72", "ties"),
    ("pot4_e7", "lin72", None), ("pot4_e7", "edge_lin", "wmaxpos"),
    # post, b_w = 3, both E_max choices, both archs
    ("post3_split", "lin72", None), ("post3_split", "conv3x3_s1_p1", None),
    ("post3_split", "edge_lin", "wmaxpos"),
    ("post3_lut", "lin72", None), ("post3_lut", "conv3x3_s2_p1", None), ("post3_lut", "edge_lin", "wmaxneg"),
    ("post3_e3_split", "lin72", None), ("post3_e3_split", "conv3x3_s2_p1", None),
    ("post3_e3_split", "edge_lin", "zeros"),
    ("post3_e3_lut", "lin72", None), ("post3_e3_lut", "conv3x3_s1_p1", None),
    # post, b_w = 4: the shape families
    ("post4_split", "lin72", None), ("post4_split", "conv3x3_s1_p1", None),
    ("post4_split", "conv3x3_s2_p1", None), ("post4_split", "conv3x3_g2", None),
    ("post4_split", "conv7x7_p3", None), ("post4_split", "conv7x7_s2_p3_g2", None),
    ("post4_split", "edge_lin", "wmaxpos"), ("post4_split", "edge_conv", "wmaxneg"),
    ("post4_split", "conv3x3_s1_p1", "zeros"),
    ("post4_split_acc12", "dw3x3_p1", None), ("post4_split_acc12", "wrap_conv", "wrap"),
    ("post4_lut", "lin72", None), ("post4_lut", "conv3x3_s1_p1", None), ("post4_lut", "conv7x7_p3", None),
    ("post4_lut", "edge_lin", "wmaxpos"), ("post4_lut", "edge_conv", "wmaxneg"),
    ("post4_lut_acc14", "dw3x3_p1", None), ("post4_lut_acc14", "edge_lin", "wrap"),
    ("post4_e7_split", "lin72", None), ("post4_e7_split", "conv3x3_s1_p1", None),
    ("post4_e7_split", "edge_lin", "wmaxpos"),
    ("post4_e7_lut", "lin72", None), ("post4_e7_lut", "conv3x3_s2_p1", None),
    ("post4_e7_lut", "edge_lin", "wmaxneg"),
    ("post4_lutF10", "lin72", None), ("post4_lutF10", "conv3x3_s1_p1", None),
    # post with signed 8-bit inputs and signed outputs (lut sign symmetry, split)
    ("post4_lut_as8", "lin72", None), ("post4_lut_as8", "conv3x3_s1_p1", "sat"),
    ("post4_split_as8", "lin72", None), ("post4_split_as8", "conv3x3_s2_p1", None),
]


def _case_name(family: str, shape: str, edge: str | None) -> str:
    return f"{family}_{shape}" + (f"_{edge}" if edge else "")


def _describe(family: str, shape: str) -> str:
    f = FAMILIES[family]
    w = f"{f['w_bits']}-bit {f['fmt']}" + (f" ({f['arch']})" if "arch" in f else "")
    a = f"{f['a_bits']}-bit {'signed' if f.get('a_signed') else 'unsigned'} activations"
    o = f"{f['out_bits']}-bit {'signed' if f.get('out_signed') else 'unsigned'} outputs"
    return f"{w} weights, {a}, {o}, {shape}"


def corpus_specs(seed: int = 0) -> list[CaseSpec]:
    """The committed corpus as a list of case specs (seeds derived from ``seed`` and the name)."""
    specs = []
    for family, shape, edge in _PLAN:
        layer, batch, shape_tags = SHAPES[shape]
        params = dict(FAMILIES[family])
        tags = (f"fmt:{params['fmt']}",) + shape_tags
        desc = _describe(family, shape)
        extra = {}
        if edge:
            e = dict(EDGES[edge])
            tags = tags + e.pop("tags")
            if e.get("w_fill") == "max_neg" or (e.get("w_fill") == "max_pos" and params["fmt"] != "uniform"):
                tags = tags + ("edge:acc-worst-case",)  # |acc| reaches K * P_max
            desc = f"{desc}: {e.pop('description')}"
            extra = e
        if params.get("acc_bits") is not None:
            tags = tags + ("narrow-acc",)
        name = _case_name(family, shape, edge)
        case_seed = _case_seed(seed, name)
        beta = BETAS[case_seed % len(BETAS)]
        specs.append(CaseSpec(name=name, description=desc, layer=layer, batch=batch, tags=tags,
                              seed=case_seed, beta=beta, **params, **extra))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("duplicate case names in the corpus plan")
    return specs


def _case_seed(seed: int, name: str) -> int:
    check_int("seed", seed, 0, 2**31 - 1)
    return zlib.crc32(f"{seed}/{name}".encode())  # torch's CPU generator keeps 32 seed bits


def config_key(spec_or_manifest) -> tuple:
    """Hardware configuration of a case: (fmt, arch, a_bits, a_signed, w_bits, e_max, F,
    acc_bits, out_bits, out_signed). Accepts a CaseSpec or a case manifest."""
    if isinstance(spec_or_manifest, CaseSpec):
        s = spec_or_manifest
        dp = s.datapath
        k = fan_in({"layer": s.layer})
        acc = s.acc_bits if s.acc_bits is not None else dp.natural_acc_bits(k)
        return (dp.fmt, dp.arch, dp.a_bits, dp.a_signed, dp.w_bits, dp.e_max, dp.frac_bits,
                acc, s.out_bits, s.out_signed)
    m = spec_or_manifest
    a, w, o = m["activation"], m["weights"], m["output"]
    return (w["format"], w["arch"], a["bits"], bool(a["signed"]), w["bits"], w["e_max"],
            w["frac_bits"], m["accumulator"]["bits"], o["bits"], bool(o["signed"]))


def large_case_spec(name: str, *, layer: dict, fmt: str, a_bits: int, w_bits: int, batch: int = 1,
                    arch: str | None = None, a_signed: bool = False, e_max: int | None = None,
                    frac_bits: int | None = None, acc_bits: int | None = None, out_bits: int = 8,
                    out_signed: bool = False, seed: int = 0, beta: float = 1.25,
                    description: str = "") -> CaseSpec:
    """A spec for an on-demand case of any size (e.g. a real network layer).

    ``layer`` comes from :func:`golden.export.linear` or :func:`golden.export.conv2d`. Export it
    with :func:`golden.export.export_case`.
    """
    return CaseSpec(name=name, description=description or f"user case {name}", layer=layer,
                    fmt=fmt, a_bits=a_bits, w_bits=w_bits, arch=arch, a_signed=a_signed, e_max=e_max,
                    frac_bits=frac_bits, batch=batch, acc_bits=acc_bits, out_bits=out_bits,
                    out_signed=out_signed, tags=("user",), seed=_case_seed(seed, name), beta=beta)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _existing_index(out: Path, seed: int) -> list[dict]:
    """Entries of ``out/index.json`` to keep when only some cases are exported."""
    index = out / "index.json"
    if not index.exists():
        return []
    try:
        data = loads_json(index.read_bytes(), str(index))
    except OSError as e:
        raise UserError(f"{index}: unreadable ({e.strerror})") from None
    entries = data.get("cases") if isinstance(data, dict) else None
    if not (isinstance(entries, list) and all(
            isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("name", "file", "sha256"))
            for e in entries)):
        raise UserError(f"{index}: malformed index; export every case (no --case) to rewrite it")
    if data.get("seed") != seed:
        raise UserError(f"{index} was written for seed {data.get('seed')!r}, not {seed}; "
                        f"export every case to change the seed")
    return entries


def export_corpus(outdir, *, seed: int = 0, force: bool = False, progress=None,
                  names=None) -> list[dict]:
    """Write every corpus case (or those in ``names``) and ``index.json`` into ``outdir``.

    Files are first built in a temporary directory; an existing file in ``outdir`` with
    different content is only replaced when ``force`` is true (else UserError naming it, and
    nothing is written). With ``names``, ``index.json`` keeps the entries of the other cases
    (it must exist for the same seed, or not at all). Every file is written atomically.
    Returns one dict per exported case: name, file, sha256, outputs, bytes.
    ``progress`` is called as ``progress(i, n, name)`` before case ``i`` (0-based) of ``n``.
    """
    specs = corpus_specs(seed)
    if names is not None:
        wanted = list(names)
        known = {s.name for s in specs}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise UserError(f"unknown corpus case(s): {', '.join(unknown)}")
        specs = [s for s in specs if s.name in set(wanted)]
    out = ensure_dir(outdir)
    kept = _existing_index(out, seed) if names is not None else []
    results, entries = [], []
    with tempfile.TemporaryDirectory(prefix="asqhw-golden-") as tmp:
        tmp = Path(tmp)
        for i, spec in enumerate(specs):
            if progress is not None:
                progress(i, len(specs), spec.name)
            fname = f"{spec.name}.npz"
            sha = export_case(spec, tmp / fname)
            case = read_case(tmp / fname)
            entries.append({"name": spec.name, "file": fname, "sha256": sha})
            results.append({"name": spec.name, "file": fname, "sha256": sha,
                            "outputs": case.n_outputs, "bytes": (tmp / fname).stat().st_size})
        new = {e["name"] for e in entries}
        order = {s.name: i for i, s in enumerate(corpus_specs(seed))}
        merged = [e for e in kept if e["name"] not in new] + entries
        merged.sort(key=lambda e: (order.get(e["name"], len(order)), e["name"]))
        write_index(tmp, seed, merged)
        files = [e["file"] for e in entries] + ["index.json"]
        if not force:
            for f in files:
                dst = out / f
                if dst.exists() and not _same(dst, tmp / f):
                    raise UserError(f"{dst}: exists with different content; pass force to overwrite")
        for f in files:
            dst = out / f
            if not (dst.exists() and _same(dst, tmp / f)):
                write_bytes(dst, (tmp / f).read_bytes(), force=True if force else False)
    return results


def _same(a: Path, b: Path) -> bool:
    try:
        return a.is_file() and a.read_bytes() == b.read_bytes()
    except OSError as e:
        raise UserError(f"{a}: unreadable ({e.strerror})") from None
