"""Golden-vector files (docs/vectors.md): deterministic writing, strict reading."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import SPEC_VERSION
from .errors import UserError
from .params import Datapath, MAX_ACC_BITS, output_range

__all__ = ["Case", "write_case", "read_case", "load_cases", "write_index", "case_shapes", "datapath_of",
           "fan_in", "validate_manifest", "FORMAT_VERSION"]

FORMAT = "asqhw-vectors"
FORMAT_VERSION = 1
ARRAY_ORDER = ("x", "w", "M", "B", "sh", "acc", "y", "alpha", "bias", "y_float")
DTYPES = {"x": "int16", "w": "int16", "M": "int64", "B": "int64", "sh": "int64", "acc": "int64",
          "y": "int16", "alpha": "float64", "bias": "float64", "y_float": "float32"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


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


def _check_layer(manifest: dict):
    layer = manifest["layer"]
    pos = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1  # noqa: E731
    if not pos(manifest.get("batch")):
        raise UserError(f"batch must be a positive integer, not {manifest.get('batch')!r}")
    if layer.get("kind") == "linear":
        if not (pos(layer.get("in_features")) and pos(layer.get("out_features"))):
            raise UserError("linear layer needs positive in_features and out_features")
    elif layer.get("kind") == "conv2d":
        for key in ("in_channels", "out_channels", "stride", "groups"):
            if not pos(layer.get(key)):
                raise UserError(f"conv2d {key} must be a positive integer, not {layer.get(key)!r}")
        pad = layer.get("padding")
        if not isinstance(pad, int) or pad < 0:
            raise UserError(f"conv2d padding must be a non-negative integer, not {pad!r}")
        for key in ("kernel", "in_size"):
            v = layer.get(key)
            if not (isinstance(v, list) and len(v) == 2 and all(pos(i) for i in v)):
                raise UserError(f"conv2d {key} must be two positive integers, not {v!r}")
        g = layer["groups"]
        if layer["in_channels"] % g or layer["out_channels"] % g:
            raise UserError(f"conv2d channels must be divisible by groups={g}")
        (h, w), (kh, kw) = layer["in_size"], layer["kernel"]
        if h + 2 * pad < kh or w + 2 * pad < kw:
            raise UserError("conv2d kernel is larger than the padded input")
    else:
        raise UserError(f"layer kind must be linear or conv2d, not {layer.get('kind')!r}")


def validate_manifest(manifest: dict) -> None:
    """Check a manifest against docs/vectors.md and docs/datapath.md section 1."""
    if manifest.get("format") != FORMAT:
        raise UserError(f"not an asq-hw case (format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"unknown format_version {manifest.get('format_version')!r} (this reader knows {FORMAT_VERSION})")
    spec = str(manifest.get("spec_version", ""))
    try:
        major = int(spec.split(".")[0])
    except ValueError:
        raise UserError(f"bad spec_version {spec!r}") from None
    if major > int(SPEC_VERSION.split(".")[0]):
        raise UserError(f"written for spec {spec}, newer than this tool's spec {SPEC_VERSION}; upgrade asq-hw")
    try:
        dp = datapath_of(manifest)
        _check_layer(manifest)
        acc = manifest["accumulator"]
        out = manifest["output"]
        lo, hi = output_range(out["bits"], bool(out["signed"]))
    except KeyError as e:
        raise UserError(f"manifest lacks {e.args[0]!r}") from None
    if (out["lo"], out["hi"]) != (lo, hi):
        raise UserError(f"output range [{out['lo']}, {out['hi']}] does not match {out['bits']}-bit codes")
    if acc.get("count") != dp.n_acc:
        raise UserError(f"{dp.arch} needs {dp.n_acc} accumulator(s), manifest says {acc.get('count')}")
    natural = dp.natural_acc_bits(fan_in(manifest))
    if acc.get("natural_bits") != natural:
        raise UserError(f"natural accumulator width is {natural} bits, manifest says {acc.get('natural_bits')}")
    bits = acc.get("bits")
    if not isinstance(bits, int) or not 2 <= bits <= min(natural, MAX_ACC_BITS):
        raise UserError(f"accumulator bits must be in 2..{min(natural, MAX_ACC_BITS)}, not {bits!r}")
    if dp.fmt != "uniform" and manifest["weights"].get("storage_bits") != dp.storage_bits:
        raise UserError(f"storage_bits should be {dp.storage_bits}")


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


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
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        entries = [("manifest.json", json.dumps(manifest, sort_keys=True, indent=1).encode())]
        entries += [(f"{k}.npy", _npy_bytes(a)) for k, a in arrays.items()]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    data = buf.getvalue()
    Path(path).write_bytes(data)
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


def read_case(path) -> Case:
    """Read and fully validate one case file; raise UserError on any defect."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "manifest.json" not in names:
                raise UserError(f"{path}: archive has no manifest.json")
            try:
                manifest = json.loads(zf.read("manifest.json").decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise UserError(f"{path}: manifest.json is not valid JSON ({e})") from None
            if not isinstance(manifest, dict):
                raise UserError(f"{path}: manifest.json is not a JSON object")
            arrays = {}
            for key in ARRAY_ORDER:
                if f"{key}.npy" not in names:
                    raise UserError(f"{path}: array {key!r} is missing")
                with zf.open(f"{key}.npy") as f:
                    try:
                        arrays[key] = np.lib.format.read_array(io.BytesIO(f.read()), allow_pickle=False)
                    except (ValueError, EOFError, OSError) as e:
                        raise UserError(f"{path}: array {key!r} is corrupt ({e})") from None
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as e:
        raise UserError(f"{path}: not a readable case archive (truncated or corrupt: {e})") from None
    where = str(path)
    try:
        validate_manifest(manifest)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    except (TypeError, AttributeError) as e:
        raise UserError(f"{where}: malformed manifest ({e})") from None
    _check_arrays(manifest, arrays, where)
    return Case(manifest, arrays, path)


def _case_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise UserError(f"{path}: directory holds no case files (*.npz)")
        index = path / "index.json"
        if index.is_file():
            _check_index(index)
        return files
    if path.exists():
        return [path]
    raise UserError(f"{path}: no such file or directory")


def _check_index(index: Path):
    try:
        data = json.loads(index.read_text())
        entries = data["cases"]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{index}: unreadable index ({e})") from None
    for entry in entries:
        f = index.parent / entry["file"]
        if not f.is_file():
            raise UserError(f"{index}: lists {entry['file']}, which is missing")
        if hashlib.sha256(f.read_bytes()).hexdigest() != entry["sha256"]:
            raise UserError(f"{f}: SHA-256 differs from {index.name} (file changed since export)")


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
    (Path(directory) / "index.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
