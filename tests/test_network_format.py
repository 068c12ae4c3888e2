"""The network export format (docs/network.md): what is written is read back; defects are named."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from asqhw.core.errors import UserError
from asqhw.core.network import is_network_file, m_cap, read_network, write_network
from asqhw.core.params import Datapath
from netcases import random_network


def _write(tmp_path, manifest, params, name="net.npz"):
    path = tmp_path / name
    write_network(path, manifest, params)
    return path


def _rewrite(path, entry, data: bytes):
    """Replace one ZIP entry's bytes, keeping the others."""
    src = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info in src.infolist():
            zf.writestr(info, data if info.filename == entry else src.read(info.filename))
    path.write_bytes(out.getvalue())


def _manifest(path) -> dict:
    return json.loads(zipfile.ZipFile(path).read("manifest.json"))


def test_round_trip_keeps_every_array_and_the_node_shapes(tmp_path):
    m, p = random_network(3)
    net = read_network(_write(tmp_path, m, p))
    assert set(net.params) == set(p)
    for k in p:
        np.testing.assert_array_equal(net.params[k], p[k])
    assert net.tensors["mp"].shape == (8, 3, 3) and net.tensors["fc"].shape == (10,)
    assert net.tensors["q1"].beta == "a1" and net.tensors["q1"].kind == "codes"


def test_writing_is_deterministic(tmp_path):
    m, p = random_network(5)
    a = _write(tmp_path, m, p, "a.npz").read_bytes()
    b = _write(tmp_path, m, p, "b.npz").read_bytes()
    assert a == b


def test_is_network_file_tells_networks_from_cases(tmp_path, tiny_case):
    m, p = random_network(1)
    assert is_network_file(_write(tmp_path, m, p))
    assert not is_network_file(tiny_case)


def test_m_cap_keeps_the_per_sample_multiplier_in_16_bits():
    for bb, fb in [(10, 8), (12, 8), (8, 0), (15, 15), (14, 14), (2, 1), (2, 2)]:
        cap, bmax = m_cap(bb, fb), (1 << bb) - 1
        h = 1 << (fb - 1) if fb else 0
        assert cap <= 65535 and (cap * bmax + h) >> fb <= 65535
        # the largest such M, unless the 16-bit M of section 6 binds first (beta_frac = beta_bits)
        assert cap == 65535 or ((cap + 1) * bmax + h) >> fb > 65535
    assert m_cap(15, 15) == m_cap(2, 2) == 65535 and m_cap(10, 8) == 16399


def _beta_net(bits: int, bb: int, fb: int, g: int, channels: int = 2, hidden: int = 0) -> tuple[dict, dict]:
    """input 1 x C x 2 x 2 -> identity conv (ReLU) -> adapter (bb/fb) -> quant (bits, g) -> linear."""
    c = channels
    uni8 = {"format": "uniform", "bits": 8, "e_max": None, "arch": "mul", "frac_bits": 0, "storage_bits": 8}
    out = {"lo": 0, "hi": 2**15 - 1}
    nodes = [{"name": "c1", "op": "conv2d", "inputs": ["input"], "in_channels": c, "out_channels": c,
              "kernel": [1, 1], "stride": 1, "padding": 0, "groups": c, "activation": {"bits": 8, "signed": True},
              "weights": uni8, "accumulator": {"bits": Datapath("uniform", 8, 8, a_signed=True).natural_acc_bits(1)},
              "output": out, "beta_from": None},
             {"name": "a", "op": "adapter", "inputs": ["c1"], "channels": c, "hidden": hidden, "beta_bits": bb,
              "beta_frac": fb},
             {"name": "q", "op": "quant", "inputs": ["c1"], "bits": bits, "g": g, "adapter": "a"},
             {"name": "fc", "op": "linear", "inputs": ["q"], "in_features": 4 * c, "out_features": 2,
              "activation": {"bits": bits, "signed": False}, "weights": uni8,
              "accumulator": {"bits": Datapath("uniform", bits, 8).natural_acc_bits(4 * c)},
              "output": {"lo": -(2**15), "hi": 2**15 - 1}, "beta_from": "a"}]
    rng = np.random.default_rng(bits * 1000 + bb * 20 + fb)
    params = {"c1/w": np.ones((c, 1, 1, 1)), "c1/M": np.full((c, 1), 40), "c1/B": np.zeros(c), "c1/sh": np.zeros(c),
              "a/pool_M": [1 << 14], "a/pool_sh": [22], "a/w2": rng.integers(1, 128, size=(1, hidden or c)),
              "a/M2": [[1 << 10]], "a/B2": [1 << (fb + 10)], "a/sh2": [16],
              "fc/w": rng.integers(-128, 128, size=(2, 4 * c)), "fc/M": np.full((2, 1), min(m_cap(bb, fb), 300)),
              "fc/B": np.zeros(2), "fc/sh": np.full(2, 10)}
    if hidden:
        params |= {"a/w1": rng.integers(-128, 128, size=(hidden, c)), "a/M1": np.full((hidden, 1), 1 << 14),
                   "a/B1": np.full(hidden, 1 << 20), "a/sh1": np.full(hidden, 18)}
    manifest = {"format": "asqhw-network", "format_version": 1, "spec_version": "1.2",
                "name": "beta", "description": "one adapter", "classes": 2,
                "input": {"shape": [c, 2, 2], "bits": 8, "signed": True, "step": 0.1, "mean": [0.0] * c,
                          "std": [1.0] * c},
                "nodes": nodes, "output": "fc", "samples": 0}
    return manifest, params


def _legal_g(bits: int, bb: int, fb: int) -> list[int]:
    """Section 14 by exact fractions: every G in 0..30 with Q_p * beta_max * 2^G <= 2^15 - 1
    and 15 + G - f_b >= 1."""
    from fractions import Fraction
    beta_max = Fraction((1 << bb) - 1, 1 << fb)
    return [g for g in range(31) if ((1 << bits) - 1) * beta_max * 2**g <= 2**15 - 1 and 15 + g - fb >= 1]


def test_every_beta_format_and_code_width_is_legal_exactly_when_section_14_has_a_g():
    """All 931 (b_beta, f_b, bits) of the parameter ranges: 812 have a G and are accepted with
    the largest one and refused with one more; the 119 without one are refused whatever g."""
    from asqhw.core.network import g_max, validate
    legal = illegal = 0
    for bb in range(2, 16):
        for fb in range(bb + 1):
            for bits in range(2, 9):
                gs = _legal_g(bits, bb, fb)
                assert g_max(bits, bb, fb) == (max(gs) if gs else None)
                m, _ = _beta_net(bits, bb, fb, max(gs) if gs else 0)
                if gs:
                    legal += 1
                    validate(m)
                    assert m_cap(bb, fb) >= 2 * ((1 << bits) - 1)   # spec section 11 (informative bound)
                    if max(gs) < 30:
                        m["nodes"][2]["g"] = max(gs) + 1
                        with pytest.raises(UserError, match="lets wide codes saturate"):
                            validate(m)
                else:
                    illegal += 1
                    with pytest.raises(UserError, match="cannot be made with adapter|15 \\+ g - beta_frac"):
                        validate(m)
                    m["nodes"][2]["g"] = 1
                    with pytest.raises(UserError, match="cannot be made with adapter"):
                        validate(m)
    assert (legal, illegal) == (812, 119)
    assert all(not _legal_g(bits, 15, 0) for bits in range(2, 9))   # the M_cap = 2 format has no G


def test_a_quant_without_adapter_keeps_the_g_rule(tmp_path):
    from asqhw.core.network import g_max
    assert [g_max(b) for b in range(2, 9)] == [13, 12, 11, 10, 9, 8, 7]
    m, p = random_network(4, asq=False)
    q = next(nd for nd in m["nodes"] if nd["op"] == "quant" and nd["bits"] == 8)
    assert q["g"] == 7
    _write(tmp_path, m, p)
    q["g"] = 8
    with pytest.raises(UserError, match="g 8 lets wide codes saturate.*g <= 7"):
        write_network(tmp_path / "n.npz", m, p)


def test_a_rejected_beta_format_is_refused_when_read_too(tmp_path):
    m, p = _beta_net(4, 10, 8, 9)
    path = _write(tmp_path, m, p)
    man = _manifest(path)
    man["nodes"][1].update(beta_bits=15, beta_frac=0)
    man["nodes"][2]["g"] = 0
    _rewrite(path, "manifest.json", json.dumps(man).encode())
    with pytest.raises(UserError, match="4-bit codes cannot be made with adapter 'a'.s beta format 15/0"):
        read_network(path)


@pytest.mark.parametrize("channels", [8, 16])
def test_a_single_layer_adapter_on_8_or_more_channels_is_allowed_and_runs_alike(tmp_path, channels):
    """hidden = 0 means the single-layer adapter whatever C (spec 1.2 section 13)."""
    from asqhw.golden.netref import run_network as golden_run
    from asqhw.sim.network import run_network as sim_run
    m, p = _beta_net(4, 10, 8, 9, channels=channels, hidden=0)
    net = read_network(_write(tmp_path, m, p))
    assert net.node("a")["hidden"] == 0 and net.params["a/w2"].shape == (1, channels)
    x = np.random.default_rng(channels).integers(-128, 128, size=(5, channels, 2, 2)).astype(np.int16)
    g, s = golden_run(net, x), sim_run(net, x)
    assert set(g) == set(s)
    for k in g:
        np.testing.assert_array_equal(np.asarray(g[k]), np.asarray(s[k]), err_msg=k)
    assert len(set(g["vec/a/beta"].tolist())) > 1   # the adapter does something per sample


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format_version=2), "unknown network format_version"),
    (lambda m: m.update(spec_version="1.9"), "newer than this tool's spec"),
    (lambda m: m["nodes"][2].update(inputs=["nope"]), "not an earlier node"),
    (lambda m: m["nodes"][2].update(op="softmax"), "op must be one of"),
    (lambda m: m["nodes"][3].update(beta_from=None), "beta_from is None"),
    (lambda m: m["nodes"][2].update(g=40), "g must be in 0..30"),
    (lambda m: m.update(classes=7), "classes 7 != logits 10"),
    (lambda m: m["input"].update(step=float("nan")), "NaN is not allowed"),
    (lambda m: m["input"].update(step=-1.0), "step must be a positive finite number"),
    (lambda m: m["nodes"][1].update(name="c1"), "name is used twice"),
])
def test_manifest_defects_are_named(tmp_path, edit, message):
    m, p = random_network(2)
    path = _write(tmp_path, m, p)
    man = _manifest(path)
    edit(man)
    _rewrite(path, "manifest.json", json.dumps(man).encode())
    with pytest.raises(UserError, match=message):
        read_network(path)


def test_a_multiplier_above_m_cap_is_refused(tmp_path):
    m, p = random_network(4)
    p["c2/M"] = p["c2/M"].copy()
    p["c2/M"][0, 0] = m_cap(10, 8) + 1
    with pytest.raises(UserError, match="c2/M.*outside the multiplier range"):
        write_network(tmp_path / "n.npz", m, p)


def test_an_out_of_range_weight_code_is_refused(tmp_path):
    m, p = random_network(0, fmt=("uniform", "mul", None))
    p["c1/w"] = p["c1/w"].copy()
    p["c1/w"].flat[0] = 8
    with pytest.raises(UserError, match="c1/w has 1 weight code"):
        write_network(tmp_path / "n.npz", m, p)


def test_an_array_whose_header_lies_about_its_shape_is_refused(tmp_path):
    m, p = random_network(6)
    path = _write(tmp_path, m, p)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros((3,), np.int64))
    _rewrite(path, "c1/sh.npy", buf.getvalue())
    with pytest.raises(UserError, match="c1/sh"):
        read_network(path)


def test_a_truncated_file_is_one_error(tmp_path):
    m, p = random_network(7)
    path = _write(tmp_path, m, p)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(UserError, match="not a readable network archive|corrupt"):
        read_network(path)


def test_an_array_table_that_disagrees_with_the_nodes_is_refused(tmp_path):
    m, p = random_network(8)
    path = _write(tmp_path, m, p)
    man = _manifest(path)
    man["arrays"]["c1/w"]["shape"] = [10**6, 10**6]
    _rewrite(path, "manifest.json", json.dumps(man).encode())
    with pytest.raises(UserError, match="arrays table entry 'c1/w'"):
        read_network(path)


def test_the_writer_refuses_what_the_runner_cannot_run(tmp_path):
    m, p = random_network(1)
    conv = next(n for n in m["nodes"] if n["op"] == "conv2d")
    conv.update(padding=3000)                        # a padded input of 8 x 6006 x 6006 values per sample
    with pytest.raises(UserError, match="padded input of .* values per sample"):
        write_network(tmp_path / "n.npz", m, p)
    assert not (tmp_path / "n.npz").exists()


def test_the_writer_refuses_more_bytes_than_the_limit(tmp_path, monkeypatch):
    m, p = random_network(2)
    monkeypatch.setenv("ASQHW_MAX_FILE_BYTES", "1K")
    with pytest.raises(UserError, match="more than the limit of 1024"):
        write_network(tmp_path / "n.npz", m, p)


def test_the_reader_refuses_a_file_over_the_limit_before_reading_its_arrays(tmp_path, monkeypatch):
    m, p = random_network(2)
    path = _write(tmp_path, m, p)
    monkeypatch.setenv("ASQHW_MAX_FILE_BYTES", "1K")
    with pytest.raises(UserError, match="--max-file-bytes"):
        read_network(path)


def test_an_m_of_65536_is_refused_where_the_m_cap_formula_exceeds_16_bits(tmp_path):
    assert m_cap(15, 15) == 65535   # the unclamped formula gives 65537 (spec 1.1)
    m, p = random_network(4)
    for nd in m["nodes"]:
        if nd["op"] == "adapter":
            nd.update(beta_bits=15, beta_frac=15)
    layer = next(nd for nd in m["nodes"] if nd.get("beta_from"))
    key = f"{layer['name']}/M"
    p[key] = p[key].copy()
    p[key].flat[0] = 65536
    with pytest.raises(UserError, match=f"{key}.*outside the multiplier range \\[0, 65535\\]"):
        write_network(tmp_path / "n.npz", m, p)


def test_an_unknown_archive_entry_is_refused(tmp_path):
    m, p = random_network(2)
    path = _write(tmp_path, m, p)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("notes.txt", b"hello")
    with pytest.raises(UserError, match="unexpected archive entry 'notes.txt'"):
        read_network(path)


@pytest.mark.parametrize("name", ["a\nb", "\x1b[31mred", "a\x9bb", "x" * 201, ""])
def test_a_name_that_is_not_printable_text_is_refused(tmp_path, name):
    m, p = random_network(2)
    with pytest.raises(UserError, match="name must be 1..200 printable characters"):
        write_network(tmp_path / "n.npz", dict(m, name=name), p)


def _doc(name: str) -> str:
    from pathlib import Path
    return (Path(__file__).resolve().parents[1] / "docs" / name).read_text()


def test_the_documented_digits_test_split_is_the_one_the_tools_use():
    """docs/network.md lists the 360 test indices; digits_split must give exactly those images."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from asqhw.core.datasets import digits_split
    section = _doc("network.md").split("## The digits test split", 1)[1]
    listed = [int(v) for v in section.split("```")[3].split()]
    assert len(listed) == len(set(listed)) == 360 and all(0 <= i < 1797 for i in listed)
    d = load_digits()
    xtr, ytr, xte, yte = digits_split()
    np.testing.assert_array_equal(xte, d.images[listed][:, None] / 16.0)
    np.testing.assert_array_equal(yte, d.target[listed])
    train = [i for i in range(1797) if i not in set(listed)]
    assert len(xtr) == 1437 and sorted(map(tuple, xtr.reshape(1437, -1))) == sorted(
        map(tuple, d.images[train].reshape(1437, -1) / 16.0))
    assert np.bincount(yte).tolist() == [37, 34, 40, 39, 37, 38, 40, 31, 36, 28]


def test_archive_entries_are_in_the_documented_order(tmp_path):
    """docs/network.md: manifest.json, vec/input, node by node (parameters, then vectors), labels, logits."""
    from asqhw.core.network import expected_arrays, validate
    bundled = __import__("pathlib").Path(__file__).resolve().parents[1] / "asqhw/golden/networks/digits_cnn_asq_post4.npz"
    m, p = random_network(2)
    for path in (bundled, _write(tmp_path, m, p)):
        names = zipfile.ZipFile(path).namelist()
        man = _manifest(path)
        exp = list(expected_arrays(man, validate(man)))
        assert names == ["manifest.json"] + [f"{k}.npy" for k in exp]
        assert list(man["arrays"]) == sorted(man["arrays"])      # the table is sorted, not the entries
        order = [k for k in exp if not k.startswith("vec/")]
        for nd in man["nodes"]:
            mine = [k.split("/", 1)[1] for k in order if k.split("/", 1)[0] == nd["name"]]
            want = {"conv2d": ["w", "M", "B", "sh"], "linear": ["w", "M", "B", "sh"], "add": ["M", "B", "sh"],
                    "avgpool": ["M", "sh"], "adapter": ["pool_M", "pool_sh", "w1", "M1", "B1", "sh1", "w2", "M2",
                                                        "B2", "sh2"]}.get(nd["op"], [])
            assert mine == [k for k in want if f"{nd['name']}/{k}" in exp]
        if man["samples"]:
            assert exp[0] == "vec/input" and exp[-2:] == ["vec/labels", "vec/qat_logits"]
