"""Golden-vector files (docs/vectors.md): deterministic writing, strict reading."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .spec import SPEC_VERSION
from .atomic import write_bytes, write_text
from .errors import UserError
from .params import Datapath, MAX_ACC_BITS, output_range
from .validate import is_int
from .safezip import SafeZip, archive_bytes, check_total, loads_json

__all__ = ["Case", "write_case", "read_case", "load_cases", "write_index", "case_shapes", "datapath_of",
           "fan_in", "validate_manifest", "check_index", "FORMAT_VERSION"]

FORMAT = "asqhw-vectors"
FORMAT_VERSION = 1
ARRAY_ORDER = ("x", "w", "M", "B", "sh", "acc", "y", "alpha", "bias", "y_float")
# Implementation limits (docs/vectors.md): a case the reader accepts can be run.
MAX_DIM = 1 << 16              # channels, features' kernel, in_size, padding
MAX_CASE_VALUES = 1 << 28      # batch x padded input of a conv2d
MAX_CASE_MACS = 1 << 36        # batch x fan-in x outputs
DTYPES = {"x": "int16", "w": "int16", "M": "int64", "B": "int64", "sh": "int64", "acc": "int64",
          "y": "int16", "alpha": "float64", "bias": "float64", "y_float": "float32"}


@dataclass
class Case:
    """One golden case: its manifest, its arrays and where it came from."""

    manifest: dict
    arrays: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def layer(self) -> dict:
        return self.manifest["layer"]

    @property
    def datapath(self) -> Datapath:
        return datapath_of(self.manifest)

    @property
    def acc_bits(self) -> int:
        return self.manifest["accumulator"]["bits"]

    @property
    def out_range(self) -> tuple[int, int]:
        o = self.manifest["output"]
        return o["lo"], o["hi"]

    @property
    def fan_in(self) -> int:
        return fan_in(self.manifest)

    @property
    def n_outputs(self) -> int:
        """Number of dot products (output values) in the case."""
        return int(np.prod(self.arrays["y"].shape))

    def __getitem__(self, key):
        return self.arrays[key]


def datapath_of(manifest: dict) -> Datapath:
    a, w = manifest["activation"], manifest["weights"]
    return Datapath(fmt=w["format"], a_bits=a["bits"], w_bits=w["bits"], arch=w["arch"],
                    a_signed=bool(a["signed"]), e_max=w.get("e_max"),
                    frac_bits=w.get("frac_bits"))


def fan_in(manifest: dict) -> int:
    layer = manifest["layer"]
    if layer["kind"] == "linear":
        return layer["in_features"]
    kh, kw = layer["kernel"]
    return layer["in_channels"] // layer["groups"] * kh * kw


def case_shapes(manifest: dict) -> dict[str, tuple]:
    """Shapes every array of a case must have, from its manifest."""
    layer, n = manifest["layer"], manifest["batch"]
    n_acc = manifest["accumulator"]["count"]
    if layer["kind"] == "linear":
        k, c = layer["in_features"], layer["out_features"]
        x, w, out = (n, k), (c, k), (n, c)
    elif layer["kind"] == "conv2d":
        ci, c, g = layer["in_channels"], layer["out_channels"], layer["groups"]
        kh, kw = layer["kernel"]
        h, wd = layer["in_size"]
        st, pad = layer["stride"], layer["padding"]
        ho, wo = (h + 2 * pad - kh) // st + 1, (wd + 2 * pad - kw) // st + 1
        x, w, out = (n, ci, h, wd), (c, ci // g, kh, kw), (n, c, ho, wo)
    else:
        raise UserError(f"unknown layer kind {layer['kind']!r}")
    c = out[1]
    return {"x": x, "w": w, "M": (c, n_acc), "B": (c,), "sh": (c,), "acc": (n_acc,) + out,
            "y": out, "alpha": (c,), "bias": (c,), "y_float": out}


def _field(obj: dict, key: str, what: str, kind, where: str):
    """``obj[key]`` checked to be of ``kind`` ('int', 'bool', 'str', 'dict', 'list', 'number')."""
    if not isinstance(obj, dict):
        raise UserError(f"{where} must be a JSON object, not {obj!r}")
    if key not in obj:
        raise UserError(f"manifest lacks {where}.{key}" if where != "manifest" else f"manifest lacks {key!r}")
    v = obj[key]
    ok = {"int": is_int(v), "bool": isinstance(v, bool), "str": isinstance(v, str),
          "dict": isinstance(v, dict), "list": isinstance(v, list),
          "number": (is_int(v) or isinstance(v, float)) and math.isfinite(v)}[kind]
    if not ok:
        label = key if where == "manifest" else f"{where}.{key}"
        raise UserError(f"manifest field {label} must be {what}, not {v!r}")
    return v


def _no_unknown(obj: dict, allowed, where: str):
    extra = sorted(set(obj) - set(allowed))
    if extra:
        raise UserError(f"manifest {where} has unknown field {extra[0]!r} (format version {FORMAT_VERSION} "
                        f"knows {', '.join(sorted(allowed))})")


_LAYER_KEYS = {"linear": ("kind", "in_features", "out_features"),
               "conv2d": ("kind", "in_channels", "out_channels", "kernel", "in_size", "stride",
                          "padding", "groups")}


def _check_layer(manifest: dict):
    layer = _field(manifest, "layer", "an object", "dict", "manifest")
    pos = lambda v: is_int(v) and v >= 1  # noqa: E731
    if not pos(manifest.get("batch")):
        raise UserError(f"batch must be a positive integer, not {manifest.get('batch')!r}")
    kind = layer.get("kind")
    if kind not in _LAYER_KEYS:
        raise UserError(f"layer kind must be linear or conv2d, not {kind!r}")
    _no_unknown(layer, _LAYER_KEYS[kind], "layer")
    if kind == "linear":
        if not (pos(layer.get("in_features")) and pos(layer.get("out_features"))):
            raise UserError("linear layer needs positive in_features and out_features")
        if max(layer["in_features"], layer["out_features"]) > MAX_DIM << 8:
            raise UserError(f"linear in_features and out_features must be at most {MAX_DIM << 8}")
        return
    for key in ("in_channels", "out_channels", "stride", "groups"):
        if not pos(layer.get(key)):
            raise UserError(f"conv2d {key} must be a positive integer, not {layer.get(key)!r}")
    pad = layer.get("padding")
    if not is_int(pad) or pad < 0:
        raise UserError(f"conv2d padding must be a non-negative integer, not {pad!r}")
    for key in ("kernel", "in_size"):
        v = layer.get(key)
        if not (isinstance(v, list) and len(v) == 2 and all(pos(i) for i in v)):
            raise UserError(f"conv2d {key} must be two positive integers, not {v!r}")
    g = layer["groups"]
    if layer["in_channels"] % g or layer["out_channels"] % g:
        raise UserError(f"conv2d channels must be divisible by groups={g}")
    if max(layer["in_channels"], layer["out_channels"], pad, *layer["kernel"], *layer["in_size"]) > MAX_DIM:
        raise UserError(f"conv2d channels, kernel, in_size and padding must be at most {MAX_DIM}")
    (h, w), (kh, kw) = layer["in_size"], layer["kernel"]
    if h + 2 * pad < kh or w + 2 * pad < kw:
        raise UserError("conv2d kernel is larger than the padded input")


def _check_runnable(manifest: dict):
    """The implementation limits: the padded input and the multiply-adds of the whole batch."""
    layer, n = manifest["layer"], manifest["batch"]
    y = case_shapes(manifest)["y"]
    macs = n * fan_in(manifest) * math.prod(y[1:])
    if macs > MAX_CASE_MACS:
        raise UserError(f"the case does {macs} multiply-adds, more than the {MAX_CASE_MACS} this implementation runs")
    if layer["kind"] == "conv2d":
        (h, w), pad = layer["in_size"], layer["padding"]
        padded = layer["in_channels"] * (h + 2 * pad) * (w + 2 * pad)
        if n * padded > MAX_CASE_VALUES:
            raise UserError(f"conv2d padded input of {n} x {padded} values is more than the "
                            f"{MAX_CASE_VALUES} this implementation runs")


def _check_datapath_fields(manifest: dict):
    a = _field(manifest, "activation", "an object", "dict", "manifest")
    _no_unknown(a, ("bits", "signed"), "activation")
    _field(a, "bits", "an integer", "int", "activation")
    _field(a, "signed", "true or false", "bool", "activation")
    w = _field(manifest, "weights", "an object", "dict", "manifest")
    _no_unknown(w, ("format", "bits", "e_max", "arch", "frac_bits", "storage_bits"), "weights")
    _field(w, "format", "a string", "str", "weights")
    _field(w, "arch", "a string", "str", "weights")
    _field(w, "bits", "an integer", "int", "weights")
    for key in ("e_max", "frac_bits", "storage_bits"):
        if w.get(key) is not None and not is_int(w[key]):
            raise UserError(f"manifest field weights.{key} must be an integer, not {w[key]!r}")


def _check_output(manifest: dict):
    out = _field(manifest, "output", "an object", "dict", "manifest")
    _no_unknown(out, ("bits", "signed", "lo", "hi"), "output")
    bits = _field(out, "bits", "an integer", "int", "output")
    signed = _field(out, "signed", "true or false", "bool", "output")
    olo = _field(out, "lo", "an integer", "int", "output")
    ohi = _field(out, "hi", "an integer", "int", "output")
    lo, hi = output_range(bits, signed)
    if (olo, ohi) != (lo, hi):
        raise UserError(f"output range [{olo}, {ohi}] does not match {bits}-bit codes")


def _check_requant_scales(manifest: dict):
    rq = _field(manifest, "requant", "an object", "dict", "manifest")
    _no_unknown(rq, ("rounding", "m_bits"), "requant")
    if rq.get("rounding") != "ties_toward_plus_inf":
        raise UserError(f"requant.rounding must be 'ties_toward_plus_inf' (docs/datapath.md section 7), "
                        f"not {rq.get('rounding')!r}")
    if not (is_int(rq.get("m_bits")) and rq["m_bits"] == 16):
        raise UserError(f"requant.m_bits must be 16, not {rq.get('m_bits')!r}")
    sc = _field(manifest, "scales", "an object", "dict", "manifest")
    _no_unknown(sc, ("s", "beta", "s_out"), "scales")
    for key in ("s", "beta", "s_out"):
        v = _field(sc, key, "a finite positive number", "number", "scales")
        if not v > 0:
            raise UserError(f"manifest field scales.{key} must be a finite positive number, not {v!r}")


def _check_array_table(manifest: dict):
    table = _field(manifest, "arrays", "an object", "dict", "manifest")
    shapes = case_shapes(manifest)
    if set(table) != set(ARRAY_ORDER):
        missing = sorted(set(ARRAY_ORDER) - set(table))
        extra = sorted(set(table) - set(ARRAY_ORDER))
        raise UserError(f"manifest arrays table {'lacks ' + repr(missing[0]) if missing else 'has unknown ' + repr(extra[0])}")
    for key in ARRAY_ORDER:
        entry = table[key]
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape"}:
            raise UserError(f"manifest arrays.{key} must be {{dtype, shape}}, not {entry!r}")
        if entry["dtype"] != DTYPES[key]:
            raise UserError(f"manifest arrays.{key}.dtype is {entry['dtype']!r}, the format requires {DTYPES[key]!r}")
        if entry["shape"] != list(shapes[key]):
            raise UserError(f"manifest arrays.{key}.shape is {entry['shape']!r}, the layer needs {list(shapes[key])}")
    total = sum(math.prod(shapes[k]) * np.dtype(DTYPES[k]).itemsize for k in ARRAY_ORDER)
    check_total(total, "the manifest")


def validate_manifest(manifest: dict) -> None:
    """Check a manifest against docs/vectors.md and docs/datapath.md section 1.

    Every field's presence, type and value is checked, unknown fields of the
    layer, datapath, requantisation and scale objects are refused, and the
    ``arrays`` table must list each array with the dtype and shape its layer requires.
    """
    if not isinstance(manifest, dict):
        raise UserError("manifest is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise UserError(f"not an asq-hw case (format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION or isinstance(manifest.get("format_version"), bool):
        raise UserError(f"unknown format_version {manifest.get('format_version')!r} (this reader knows {FORMAT_VERSION})")
    spec = manifest.get("spec_version")
    if not isinstance(spec, str) or not re.fullmatch(r"[0-9]{1,6}\.[0-9]{1,6}", spec):
        raise UserError(f"bad spec_version {spec!r} (expected MAJOR.MINOR)")
    if int(spec.split(".")[0]) > int(SPEC_VERSION.split(".")[0]):
        raise UserError(f"written for spec {spec}, newer than this tool's spec {SPEC_VERSION}; upgrade asq-hw")
    name = _field(manifest, "name", "a string", "str", "manifest")
    if not name or len(name) > 200 or not name.isprintable():
        raise UserError(f"manifest field name must be 1..200 printable characters, not {name!r}")
    if not isinstance(manifest.get("description", ""), str):
        raise UserError("manifest field description must be a string")
    tags = manifest.get("tags", [])
    if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise UserError("manifest field tags must be a list of strings")
    _check_datapath_fields(manifest)
    dp = datapath_of(manifest)
    w = manifest["weights"]
    if w.get("e_max") != (None if dp.fmt == "uniform" else dp.e_max):
        raise UserError(f"weights.e_max must be {'null' if dp.fmt == 'uniform' else dp.e_max}, not {w.get('e_max')!r}")
    if w.get("frac_bits") != dp.frac_bits:
        raise UserError(f"weights.frac_bits must be {dp.frac_bits} for {dp.arch}, not {w.get('frac_bits')!r}")
    if w.get("storage_bits") != dp.storage_bits:
        raise UserError(f"storage_bits should be {dp.storage_bits}")
    _check_layer(manifest)
    acc = _field(manifest, "accumulator", "an object", "dict", "manifest")
    _no_unknown(acc, ("bits", "natural_bits", "count"), "accumulator")
    _check_output(manifest)
    if acc.get("count") != dp.n_acc or not is_int(acc.get("count")):
        raise UserError(f"{dp.arch} needs {dp.n_acc} accumulator(s), manifest says {acc.get('count')!r}")
    natural = dp.natural_acc_bits(fan_in(manifest))
    if acc.get("natural_bits") != natural or not is_int(acc.get("natural_bits")):
        raise UserError(f"natural accumulator width is {natural} bits, manifest says {acc.get('natural_bits')!r}")
    bits = acc.get("bits")
    if not is_int(bits) or not 2 <= bits <= min(natural, MAX_ACC_BITS):
        raise UserError(f"accumulator bits must be in 2..{min(natural, MAX_ACC_BITS)}, not {bits!r}")
    _check_requant_scales(manifest)
    _check_array_table(manifest)
    _check_runnable(manifest)



def write_case(path, manifest: dict, arrays: dict) -> str:
    """Write one case deterministically; return its SHA-256.

    The format keys and the ``arrays`` table of the manifest are filled in here.
    Overwrites ``path``: callers decide whether that is allowed.
    """
    arrays = {k: np.asarray(arrays[k], dtype=DTYPES[k]) for k in ARRAY_ORDER}
    manifest = dict(manifest, format=FORMAT, format_version=FORMAT_VERSION, spec_version=SPEC_VERSION)
    manifest["arrays"] = {k: {"dtype": DTYPES[k], "shape": list(a.shape)} for k, a in arrays.items()}
    validate_manifest(manifest)
    _check_arrays(manifest, arrays, str(path))
    data = archive_bytes(manifest, arrays)
    write_bytes(path, data, force=None)
    return hashlib.sha256(data).hexdigest()


def _check_arrays(manifest: dict, arrays: dict, where: str):
    shapes = case_shapes(manifest)
    for key in ARRAY_ORDER:
        if key not in arrays:
            raise UserError(f"{where}: array {key!r} is missing")
        a = arrays[key]
        if a.dtype != np.dtype(DTYPES[key]):
            raise UserError(f"{where}: array {key!r} has dtype {a.dtype}, expected {DTYPES[key]}")
        if tuple(a.shape) != tuple(shapes[key]):
            raise UserError(f"{where}: array {key!r} has shape {tuple(a.shape)}, expected {tuple(shapes[key])}")
    dp = datapath_of(manifest)
    lo, hi = dp.a_range
    x = arrays["x"]
    if x.size and (x.min() < lo or x.max() > hi):
        bad = np.flatnonzero((x < lo) | (x > hi))[0]
        raise UserError(f"{where}: activation code {int(x.flat[bad])} at flat index {bad} is outside [{lo}, {hi}]")
    nbad = dp.check_weight_codes_valid(arrays["w"].astype(np.int64))
    if nbad:
        raise UserError(f"{where}: {nbad} weight code(s) out of range for {dp.w_bits}-bit {dp.fmt}")
    if (arrays["M"] < 0).any() or (arrays["M"] >= 2**16).any():
        raise UserError(f"{where}: requant multiplier M outside 0..65535")
    if (arrays["B"] < -(2**47)).any() or (arrays["B"] >= 2**47).any():
        raise UserError(f"{where}: requant bias B outside the 48-bit range")
    if (arrays["sh"] < 0).any() or (arrays["sh"] > 62).any():
        raise UserError(f"{where}: requant shift sh outside 0..62")
    for key in ("alpha", "bias", "y_float"):
        if not np.isfinite(arrays[key]).all():
            raise UserError(f"{where}: array {key!r} holds NaN or infinity")


def read_case(path) -> Case:
    """Read and fully validate one case file; raise UserError on any defect.

    The manifest is read and validated first; each array entry is then read only up
    to the size its manifest shape allows and checked before it is allocated
    (:class:`asqhw.core.safezip.SafeZip`).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    where = str(path)
    with SafeZip(path, max_entries=2 * len(ARRAY_ORDER)) as zf:
        if "manifest.json" not in zf.names:
            raise UserError(f"{path}: archive has no manifest.json")
        manifest = zf.read_json("manifest.json")
        if not isinstance(manifest, dict):
            raise UserError(f"{path}: manifest.json is not a JSON object")
        try:
            validate_manifest(manifest)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
        extra = sorted(set(zf.names) - {"manifest.json"} - {f"{k}.npy" for k in ARRAY_ORDER})
        if extra:
            raise UserError(f"{path}: unexpected archive entry {extra[0]!r}")
        arrays = {}
        for key in ARRAY_ORDER:
            if f"{key}.npy" not in zf.names:
                raise UserError(f"{path}: array {key!r} is missing")
            table = manifest["arrays"][key]
            arrays[key] = zf.read_npy(f"{key}.npy", table["dtype"], table["shape"], f"array {key!r}")
    _check_arrays(manifest, arrays, where)
    return Case(manifest, arrays, path)


def _case_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise UserError(f"{path}: directory holds no case files (*.npz)")
        index = path / "index.json"
        if index.is_file():
            check_index(index)
        return files
    if path.exists():
        return [path]
    raise UserError(f"{path}: no such file or directory")


def check_index(index: Path) -> None:
    """Refuse a corpus ``index.json`` that is malformed or whose files are missing or differ from it."""
    try:
        if index.stat().st_size > 1 << 24:
            raise UserError(f"{index}: {index.stat().st_size} bytes is too large for a corpus index")
        raw = index.read_bytes()
    except OSError as e:
        raise UserError(f"{index}: unreadable index ({e.strerror})") from None
    data = loads_json(raw, str(index))
    if not (isinstance(data, dict) and data.get("format") == "asqhw-vectors-index"):
        raise UserError(f"{index}: not an asq-hw corpus index")
    entries = data.get("cases")
    if not isinstance(entries, list):
        raise UserError(f"{index}: 'cases' must be a list")
    for entry in entries:
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str)
                and isinstance(entry.get("sha256"), str)):
            raise UserError(f"{index}: malformed entry {entry!r} (needs file and sha256 strings)")
        name = entry["file"]
        if Path(name).name != name or name in (".", ".."):
            raise UserError(f"{index}: entry file {name!r} is not a plain file name")
        f = index.parent / name
        if not f.is_file():
            raise UserError(f"{index}: lists {name}, which is missing")
        if _sha256_file(f) != entry["sha256"]:
            raise UserError(f"{f}: SHA-256 differs from {index.name} (file changed since export)")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_cases(paths) -> list[Case]:
    """Read every case under the given files/directories, in order."""
    files = []
    for p in paths:
        files.extend(_case_files(Path(p)))
    return [read_case(f) for f in files]


def write_index(directory, seed: int, entries: list[dict]) -> None:
    """Write index.json for a corpus; entries are {name, file, sha256}."""
    data = {"format": "asqhw-vectors-index", "format_version": FORMAT_VERSION,
            "spec_version": SPEC_VERSION, "seed": seed, "cases": entries}
    write_text(Path(directory) / "index.json", json.dumps(data, indent=1, sort_keys=True) + "\n", force=None)
