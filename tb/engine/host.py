"""Host side of the engine testbench, written from docs/engine.md and the sidecar alone.

Reads a golden case file (docs/vectors.md: a ZIP of ``manifest.json`` and ``.npy`` arrays) with
NumPy only, and builds what the engine's streams load: activation codes, term entries, channel
words, and the ``layer`` port value. Nothing here imports asq-hw.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

__all__ = ["read_case", "check_match", "build_images", "expected_codes"]


def read_case(path) -> tuple[dict, dict]:
    """``(manifest, arrays)`` of a case file."""
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        arrays = {n[:-4]: np.load(io.BytesIO(z.read(n)), allow_pickle=False)
                  for n in z.namelist() if n.endswith(".npy")}
    return manifest, arrays


def check_match(side: dict, manifest: dict) -> None:
    """Raise ValueError unless the engine build (sidecar parameters) fits the case."""
    p = side["parameters"]
    want = {"fmt": manifest["weights"]["format"], "arch": manifest["weights"]["arch"],
            "a_bits": manifest["activation"]["bits"], "a_signed": manifest["activation"]["signed"],
            "w_bits": manifest["weights"]["bits"], "storage_bits": manifest["weights"]["storage_bits"],
            "acc_bits": manifest["accumulator"]["bits"], "n_acc": manifest["accumulator"]["count"],
            "out_bits": manifest["output"]["bits"], "out_signed": manifest["output"]["signed"]}
    bad = [f"{k}: engine {p[k]!r}, case {v!r}" for k, v in want.items() if p[k] != v]
    if bad:
        raise ValueError("the engine build does not fit the case: " + "; ".join(bad))


def _geometry(manifest: dict) -> dict:
    layer, n = manifest["layer"], manifest["batch"]
    if layer["kind"] == "linear":
        k, c_out = layer["in_features"], layer["out_features"]
        return dict(linear=True, n_img=1, c_in=k, c_out=c_out, groups=1, kh=1, kw=1, st=1, pad=0,
                    hp=1, wp=n, wq=n, wr=n, h_out=1, w_out=n, n=n)
    kh, kw = layer["kernel"]
    h, w = layer["in_size"]
    st, pad = layer["stride"], layer["padding"]
    hp, wp = h + 2 * pad, w + 2 * pad
    wq = -(-wp // st)
    return dict(linear=False, n_img=n, c_in=layer["in_channels"], c_out=layer["out_channels"],
                groups=layer["groups"], kh=kh, kw=kw, st=st, pad=pad, hp=hp, wp=wp, wq=wq, wr=st * wq,
                h_out=(hp - kh) // st + 1, w_out=(wp - kw) // st + 1, n=n)


def _activations(g: dict, x: np.ndarray, a_bits: int, fill_gap) -> list[int]:
    """The activation buffer: address ((n*C_in + ci)*Hp + y)*Wr + (x mod st)*Wq + x div st."""
    mask = (1 << a_bits) - 1
    if g["linear"]:
        img = x.T.reshape(1, g["c_in"], 1, g["n"])           # the 1 x N image of K channels
    else:
        p = g["pad"]
        img = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    act = np.zeros((g["n_img"], g["c_in"], g["hp"], g["wr"]), dtype=np.int64)
    if fill_gap is not None:            # the Wr - Wp columns after Wp: no valid lane reads them
        act[...] = fill_gap
    for xx in range(g["wp"]):
        act[:, :, :, (xx % g["st"]) * g["wq"] + xx // g["st"]] = img[:, :, :, xx]
    return (act.ravel() & mask).tolist()


def _entries(side: dict, g: dict, codes: np.ndarray, offsets: np.ndarray) -> list[int]:
    """One channel's term list (sidecar memories.term.list)."""
    p = side["parameters"]
    pb = side["memories"]["term"]["fields"]["payload"][1]
    grouped = p["schedule"] == "grouped"
    sb = p["storage_bits"]
    if not grouped:
        words = [(int(o) << pb) | (int(c) & ((1 << sb) - 1)) for c, o in zip(codes, offsets)
                 if (int(c) != 0 if p["fmt"] == "uniform" else int(c) & ((1 << (sb - 1)) - 1))]
        return words or [0]
    terms = []                                  # (level s, index, neg, k)
    for i, c in enumerate(int(v) for v in codes):
        if p["fmt"] == "uniform":
            for b in range(abs(c).bit_length()):
                if abs(c) >> b & 1:
                    terms.append((b, i, int(c < 0), 0))
            continue
        m, neg = c & ((1 << (sb - 1)) - 1), (c >> (sb - 1)) & 1
        if m == 0:
            continue
        w = m - 1
        if p["arch"] == "shift":
            terms.append((p["e_max"] - w, i, neg, 0))
        else:
            terms.append((p["frac_bits"] - w // 2, i, neg, w % 2))
    if not terms:
        return [0b0010]                          # zero = 1
    terms.sort(key=lambda t: (-t[0], t[1]))
    shift_only = 0b0110                          # zero = 1, dbl = 1
    words, prev = [], None
    for s, i, neg, k in terms:
        dbl = 0
        if prev is not None and s < prev:
            words += [shift_only] * (prev - s - 1)
            dbl = 1
        words.append((int(offsets[i]) << pb) | neg | (dbl << 2) | (k << 3))
        prev = s
    return words + [shift_only] * prev


def _field(side_fields, name):
    return next(f for f in side_fields if f["name"] == name)


def build_images(side: dict, manifest: dict, arrays: dict, *, fill_gap=None) -> dict:
    """``{"act", "terms", "params", "layer", "n_out"}``: the stream words and the layer port value.

    ``fill_gap``: a code for the columns between ``Wp`` and ``Wr`` (default 0), to show
    that the engine never reads them for a valid output.
    """
    check_match(side, manifest)
    p = side["parameters"]
    if p["schedule"] not in ("any", "grouped"):
        raise ValueError(f"this testbench builds term lists for the schedules any and grouped, "
                         f"not {p['schedule']!r}")
    g = _geometry(manifest)
    act = _activations(g, np.asarray(arrays["x"], dtype=np.int64), p["a_bits"], fill_gap)
    w = np.asarray(arrays["w"], dtype=np.int64).reshape(g["c_out"], -1)
    cg, og = g["c_in"] // g["groups"], g["c_out"] // g["groups"]
    j, ky, kx = np.meshgrid(np.arange(cg), np.arange(g["kh"]), np.arange(g["kw"]), indexing="ij")
    local = ((j * g["hp"] + ky) * g["wr"] + (kx % g["st"]) * g["wq"] + kx // g["st"]).ravel()
    terms, counts = [], []
    for c in range(g["c_out"]):
        e = _entries(side, g, w[c], (c // og) * cg * g["hp"] * g["wr"] + local)
        terms += e
        counts.append(len(e))
    fields = side["memories"]["channel"]["fields"]
    M = np.asarray(arrays["M"], dtype=np.int64).reshape(g["c_out"], -1)
    params = []
    for c in range(g["c_out"]):
        word = counts[c] << _field(fields, "count")["offset"]
        for part, mk in zip(_field(fields, "m")["parts"], M[c]):
            word |= int(mk) << part["offset"]
        b = _field(fields, "b")
        word |= (int(arrays["B"][c]) & ((1 << b["width"]) - 1)) << b["offset"]
        word |= int(arrays["sh"][c]) << _field(fields, "sh")["offset"]
        params.append(word)
    lanes = p["lanes"]
    tiles_x = -(-g["w_out"] // lanes)
    values = {"n_chan": g["c_out"], "n_img": g["n_img"], "h_out": g["h_out"], "tiles_x": tiles_x,
              "last_lanes": g["w_out"] - (tiles_x - 1) * lanes, "row_step": g["st"] * g["wr"],
              "img_step": g["c_in"] * g["hp"] * g["wr"]}
    layer = 0
    for f in side["layer_fields"]:
        v = values[f["name"]]
        if not 0 <= v < 1 << f["width"]:
            raise ValueError(f"layer field {f['name']} = {v} does not fit {f['width']} bits")
        layer |= v << f["offset"]
    mem = side["memories"]
    for name, data in (("activation", act), ("term", terms), ("channel", params)):
        if len(data) > mem[name]["depth"]:
            raise ValueError(f"{len(data)} {name} words > depth {mem[name]['depth']}")
    return {"act": act, "terms": terms, "params": params, "layer": layer, "counts": counts,
            "n_out": int(np.asarray(arrays["y"]).size)}


def expected_codes(manifest: dict, arrays: dict) -> list[int]:
    """The case's ``y`` in the output buffer's order ``[c][n][oy][ox]``."""
    y = np.asarray(arrays["y"], dtype=np.int64)
    y = y.T if y.ndim == 2 else y.transpose(1, 0, 2, 3)
    return y.ravel().tolist()
