"""The network export format (docs/network.md): what is written is read back; defects are named."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from asqhw.core.errors import UserError
from asqhw.core.network import is_network_file, m_cap, read_network, write_network
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
    for bb, fb in [(10, 8), (12, 8), (8, 0), (15, 15), (2, 1)]:
        cap, bmax = m_cap(bb, fb), (1 << bb) - 1
        h = 1 << (fb - 1) if fb else 0
        assert (cap * bmax + h) >> fb <= 65535 < ((cap + 1) * bmax + h) >> fb


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


def test_an_m_of_65536_is_refused_even_where_m_cap_exceeds_16_bits(tmp_path):
    assert m_cap(15, 15) > 65535
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
