"""The two independent network implementations agree bit for bit (golden.netref vs sim.network).

Random networks (tests/netcases.py) use every node op, every weight format and both adapter
settings; every vector of docs/network.md is compared, on every layer path of the numba model.
"""

from __future__ import annotations

import numpy as np
import pytest

import asqhw.golden.netref as ref
import asqhw.sim.network as model
from asqhw.core.network import read_network, write_network
from netcases import FORMATS, random_input, random_network


def _net(tmp_path, seed, **kw):
    m, p = random_network(seed, **kw)
    write_network(tmp_path / "n.npz", m, p)
    return read_network(tmp_path / "n.npz")


def _first_difference(exp: dict, got: dict) -> str | None:
    assert set(exp) == set(got), set(exp) ^ set(got)
    for key in exp:
        e, g = exp[key], got[key]
        assert e.dtype == g.dtype and e.shape == g.shape, key
        if not np.array_equal(e, g):
            i = np.argwhere(e != g)[0]
            return f"{key}{[int(v) for v in i]}: reference {e[tuple(i)]}, model {g[tuple(i)]}"
    return None


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: "-".join(str(v) for v in f))
@pytest.mark.parametrize("asq", [True, False], ids=["asq", "lsq"])
def test_every_vector_agrees_for_each_weight_format(tmp_path, fmt, asq):
    for seed in range(2):
        net = _net(tmp_path, seed, fmt=fmt, asq=asq, a_bits=2 + seed * 2, w_bits=3 + seed,
                   channels=4 + 4 * seed)
        x = random_input(seed, net.manifest, 5)
        assert _first_difference(ref.run_network(net, x), model.run_network(net, x)) is None


@pytest.mark.parametrize("method", ["exact", "auto"])
def test_agreement_holds_on_each_layer_path(tmp_path, method):
    net = _net(tmp_path, 11, fmt=("post", "split", None), channels=16, size=8)
    x = random_input(11, net.manifest, 9)
    assert _first_difference(ref.run_network(net, x), model.run_network(net, x, method=method)) is None


def test_the_comparison_sees_a_one_code_difference(tmp_path):
    net = _net(tmp_path, 3)
    x = random_input(3, net.manifest, 4)
    exp, got = ref.run_network(net, x), model.run_network(net, x)
    got["vec/a2/beta"] = got["vec/a2/beta"].copy()
    got["vec/a2/beta"][2] += 1
    assert _first_difference(exp, got).startswith("vec/a2/beta[2]")


def test_predictions_agree_on_many_samples(tmp_path):
    net = _net(tmp_path, 5, channels=8)
    x = random_input(5, net.manifest, 64)
    np.testing.assert_array_equal(ref.predict(net, x)[1], model.predict(net, x))
