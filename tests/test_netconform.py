"""`asqhw conform` on network exports (asqhw/netconform.py): every vector, first mismatch named.

The golden vectors here are made by the numba model itself (the cross-model check against the
PyTorch reference lives elsewhere); what is tested is that conformance compares every vector
and that one changed value anywhere fails, naming network, node, array, sample and index.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from asqhw.cli.main import main
from asqhw.core.network import read_network, write_network
from netcases import random_input, random_network
from asqhw.sim.network import run_network

N = 3


def _export(path, seed=0, mutate=None):
    """A random network with N golden samples; ``mutate(vectors)`` edits them before writing."""
    manifest, params = random_network(seed, samples=N)
    write_network(path, manifest | {"samples": 0}, params)
    vec = run_network(read_network(path), random_input(seed, manifest, N))
    logits = vec["vec/fc"].astype(np.float32)
    vec |= {"vec/labels": np.arange(N), "vec/qat_logits": logits}
    if mutate:
        mutate(vec)
    write_network(path, manifest | {"samples": N}, params, vec)
    return path


def _bump(key, idx):
    def f(vec):
        a = vec[key].copy()
        a[idx] += 1
        vec[key] = a
    return f


def test_an_unchanged_export_passes_with_every_vector_counted(tmp_path, capsys):
    path = _export(tmp_path / "net.npz")
    assert main(["conform", "--json", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    rec = out["networks"][0]
    net = read_network(path)
    want = sum(v.size for k, v in net.vectors.items() if k not in ("vec/input", "vec/labels", "vec/qat_logits"))
    assert (rec["nodes"], rec["samples"], rec["vectors"], rec["mismatches"]) == (len(net.nodes), N, want, 0)
    assert out["summary"]["ok"] and out["summary"]["network_vectors"] == want and out["summary"]["cases"] == 0
    assert rec["qat_agreement"] == 1.0


@pytest.mark.parametrize("key,idx,node,sample,index", [
    ("vec/c2", (1, 3, 2, 4), "c2", 1, "3,2,4"),
    ("vec/c2/acc", (0, 2, 1, 0, 5), "c2", 2, "0,1,0,5"),
    ("vec/a2/beta", (2,), "a2", 2, ""),
    ("vec/a1/P", (0, 5), "a1", 0, "5"),
    ("vec/fc", (1, 7), "fc", 1, "7"),
])
def test_one_changed_value_fails_naming_node_sample_and_index(tmp_path, capsys, key, idx, node, sample, index):
    good = read_network(_export(tmp_path / "good.npz")).vectors[key][idx]
    path = _export(tmp_path / "bad.npz", mutate=_bump(key, idx))
    assert main(["conform", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"MISMATCH random_0: node {node} {key} sample {sample} [{index}] expected {good + 1} got {good}" in out
    assert "1 mismatches" in out and "FAIL" in out


def test_the_first_listed_mismatch_is_the_earliest_node(tmp_path, capsys):
    def both(vec):
        _bump("vec/fc", (0, 0))(vec)
        _bump("vec/q1", (2, 0, 1, 1))(vec)
    path = _export(tmp_path / "bad.npz", mutate=both)
    assert main(["conform", "--json", str(path)]) == 1
    rec = json.loads(capsys.readouterr().out)["networks"][0]
    assert rec["mismatches"] == 2
    assert [(m["node"], m["sample"], m["index"]) for m in rec["mismatch_list"]] == [("q1", 2, [0, 1, 1]),
                                                                                   ("fc", 0, [0])]


def test_a_directory_with_cases_and_a_network_checks_both(tmp_path, capsys):
    from conftest import tiny_arrays, tiny_manifest
    from asqhw.core.vectors import write_case

    write_case(tmp_path / "tiny.npz", tiny_manifest(), tiny_arrays())
    _export(tmp_path / "net.npz")
    assert main(["conform", "--json", str(tmp_path)]) == 0
    s = json.loads(capsys.readouterr().out)["summary"]
    assert (s["cases"], s["networks"], s["network_mismatches"]) == (1, 1, 0)


def test_an_export_without_golden_vectors_is_a_user_error(tmp_path, capsys):
    manifest, params = random_network(0)
    write_network(tmp_path / "n.npz", manifest, params)
    assert main(["conform", str(tmp_path / "n.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asqhw: error:") and "no golden vectors" in err[0]
