"""The numba network model (asqhw/sim/network.py) against hand-computed cases of docs/datapath.md 10-14.

Every expected number below is worked out by hand from the spec text (the arithmetic is
in the comments); the random networks of tests/netcases.py check that the layer paths agree
and that the model produces every documented vector.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from asqhw.core.errors import UserError
from asqhw.core.network import expected_arrays, read_network, write_network
from asqhw.core.params import Datapath
from netcases import FORMATS, random_input, random_network
from asqhw.sim import netops
from asqhw.sim.network import IntNetwork, predict, run_network

S16 = (-(2**15), 2**15 - 1)
U16 = (0, 2**15 - 1)


def _layer(name, src, op, w, M, B, sh, out, *, a=(8, True), beta_from=None, **geom):
    """A uniform 8-bit-weight conv2d/linear node and its arrays."""
    w = np.asarray(w)
    dp = Datapath(fmt="uniform", a_bits=a[0], w_bits=8, a_signed=a[1])
    fan = int(np.prod(w.shape[1:]))
    node = {"name": name, "op": op, "inputs": [src],
            "activation": {"bits": a[0], "signed": a[1]},
            "weights": {"format": "uniform", "bits": 8, "e_max": None, "arch": "mul", "frac_bits": 0,
                        "storage_bits": 8},
            "accumulator": {"bits": dp.natural_acc_bits(fan)}, "output": {"lo": out[0], "hi": out[1]},
            "beta_from": beta_from}
    if op == "conv2d":
        node |= {"in_channels": w.shape[1], "out_channels": w.shape[0], "kernel": list(w.shape[2:]),
                 "stride": 1, "padding": 0, "groups": 1} | geom
    else:
        node |= {"in_features": w.shape[1], "out_features": w.shape[0]}
    return node, {f"{name}/w": w, f"{name}/M": np.asarray(M), f"{name}/B": np.asarray(B),
                  f"{name}/sh": np.asarray(sh)}


def _identity_conv(name, src, c, out=U16):
    """1x1 conv with the identity weights, M = 1, sh = 0: wide codes clamp(x, out)."""
    return _layer(name, src, "conv2d", np.eye(c, dtype=np.int64)[:, :, None, None], np.ones((c, 1)),
                  np.zeros(c), np.zeros(c), out)


def _sum_linear(src, k, a=(8, True), beta_from=None, M=1, sh=0):
    """The logits node: one output, all weights 1."""
    return _layer("fc", src, "linear", np.ones((1, k)), [[M]], [0], [sh], S16, a=a, beta_from=beta_from)


def _net(tmp_path, shape, parts, classes=1):
    nodes, params = [], {}
    for node, arrs in parts:
        nodes.append(node)
        params |= arrs
    manifest = {"name": "hand", "description": "hand case", "classes": classes,
                "input": {"shape": list(shape), "bits": 8, "signed": True, "step": 0.1,
                          "mean": [0.0] * shape[0], "std": [1.0] * shape[0]},
                "nodes": nodes, "output": nodes[-1]["name"], "samples": 0, "meta": {}}
    path = tmp_path / "hand.npz"
    write_network(path, manifest, params)
    return read_network(path)


def _x(values, shape):
    return np.asarray(values, dtype=np.int16).reshape((-1,) + tuple(shape))


def _adapter(name, src, c, arrs, hidden=0, beta_bits=10, beta_frac=8):
    node = {"name": name, "op": "adapter", "inputs": [src], "channels": c, "hidden": hidden,
            "beta_bits": beta_bits, "beta_frac": beta_frac}
    return node, {f"{name}/{k}": np.asarray(v) for k, v in arrs.items()}


def _quant(name, src, bits, g, adapter=None):
    return {"name": name, "op": "quant", "inputs": [src], "bits": bits, "g": g, "adapter": adapter}, {}


# --- hand cases, one per operation ---------------------------------------------------------
def test_conv_requant_rounds_ties_toward_plus_infinity(tmp_path):
    # x = [3, -2, 5, 1]; channel 0: w = 2, M = 3, B = 1, sh = 2: t = 3*2x + 1 = [19, -11, 31, 7],
    # (t + 2) >> 2 = [5, -3, 8, 2]; channel 1: w = -3, M = 1, B = 0, sh = 1: t = [-9, 6, -15, -3],
    # (t + 1) >> 1 = [-4, 3, -7, -1] (the ties -4.5, -7.5, -1.5 go up). The add (2a + 1) >> 1 = a
    # then ReLUs it for the quant.
    conv = _layer("c", "input", "conv2d", [[[[2]]], [[[-3]]]], [[3], [1]], [1, 0], [2, 1], S16)
    add = ({"name": "r", "op": "add", "inputs": ["c", "c"], "output": {"lo": 0, "hi": U16[1]}},
           {"r/M": np.array([2, 0]), "r/B": np.array([0]), "r/sh": np.array([1])})
    net = _net(tmp_path, (1, 1, 4), [conv, add, _quant("q", "r", 8, 0), _sum_linear("q", 8, a=(8, False))])
    v = run_network(net, _x([3, -2, 5, 1], (1, 1, 4)))
    assert v["vec/c/acc"].tolist() == [[[[[6, -4, 10, 2]], [[-9, 6, -15, -3]]]]]
    assert v["vec/c"].tolist() == [[[[5, -3, 8, 2]], [[-4, 3, -7, -1]]]]
    assert v["vec/r"].tolist() == [[[[5, 0, 8, 2]], [[0, 3, 0, 0]]]]


def test_residual_add_rescales_each_branch_rounds_and_clamps_once(tmp_path):
    # a = x (w = 1), b = 2x (w = 2); z = clamp((3a + 5b - 2 + 2) >> 2, 0, 400) = clamp(13x >> 2):
    # x = 4: t = 50, 12.5 -> 13 (tie up); x = -7: -23 -> 0; x = 3: t = 37, 9.25 -> 9;
    # x = 127: 412.25 -> 412 -> 400.
    a = _layer("a", "input", "conv2d", [[[[1]]]], [[1]], [0], [0], S16)
    b = _layer("b", "input", "conv2d", [[[[2]]]], [[1]], [0], [0], S16)
    add = ({"name": "r", "op": "add", "inputs": ["a", "b"], "output": {"lo": 0, "hi": 400}},
           {"r/M": np.array([3, 5]), "r/B": np.array([-2]), "r/sh": np.array([2])})
    net = _net(tmp_path, (1, 1, 4), [a, b, add, _quant("q", "r", 8, 1), _sum_linear("q", 4, a=(8, False))])
    v = run_network(net, _x([4, -7, 3, 127], (1, 1, 4)))
    assert v["vec/r"].tolist() == [[[[13, 0, 9, 400]]]]


def test_linear_reads_a_4d_input_in_c_h_w_order(tmp_path):
    # weights [1, 2, 4, 8] over the flattened (c, h, w): sample 0 has a 1 only at (c0, h0, w1),
    # flat index 1 -> 2 (h, w, c order would put it at index 2 -> 4); sample 1 [3, -1, 2, 5] -> 49.
    fc = _layer("fc", "input", "linear", [[1, 2, 4, 8]], [[1]], [0], [0], S16)
    net = _net(tmp_path, (2, 1, 2), [fc])
    v = run_network(net, _x([[0, 1, 0, 0], [3, -1, 2, 5]], (2, 1, 2)))
    assert v["vec/fc/acc"].tolist() == [[[2], [49]]]
    assert v["vec/fc"].tolist() == [[2], [49]]


def test_maxpool_window_excludes_the_padding(tmp_path):
    # 3x3 input of negative codes, kernel 2x2, stride 2, padding 1: windows are {x00}, {x01, x02},
    # {x10, x20}, {x11, x12, x21, x22}; a zero padding value would win in every window.
    mp = ({"name": "mp", "op": "maxpool", "inputs": ["input"], "kernel": [2, 2], "stride": 2, "padding": 1}, {})
    net = _net(tmp_path, (1, 3, 3), [mp, _sum_linear("mp", 4)])
    v = run_network(net, _x([-5, -6, -7, -8, -9, -1, -2, -3, -4], (1, 3, 3)))
    assert v["vec/mp"].tolist() == [[[[-5, -6], [-2, -1]]]]


def test_avgpool_sums_the_window_then_requantises(tmp_path):
    # kernel 2x2, stride 2, M = 1, sh = 2: sums 14 and 23 -> 3.5 -> 4 and 5.75 -> 6; the negated
    # sample: -14 -> -3.5 -> -3 (tie up), -23 -> -5.75 -> -6.
    ap = ({"name": "ap", "op": "avgpool", "inputs": ["input"], "kernel": [2, 2], "stride": 2,
           "output": {"lo": -128, "hi": 127}}, {"ap/M": np.array([1]), "ap/sh": np.array([2])})
    net = _net(tmp_path, (1, 2, 4), [ap, _sum_linear("ap", 2)])
    s0 = [1, 2, 3, 4, 5, 6, 7, 9]
    v = run_network(net, _x([s0, [-t for t in s0]], (1, 2, 4)))
    assert v["vec/ap"].tolist() == [[[[4, 6]]], [[[-3, -6]]]]


def test_quant_without_adapter_is_a_rounding_shift_by_g(tmp_path):
    # g = 3, 2-bit codes: A = clamp((z + 4) >> 3, 0, 3) for z = max(x, 0).
    net = _net(tmp_path, (1, 1, 8), [_identity_conv("z", "input", 1), _quant("q", "z", 2, 3),
                                     _sum_linear("q", 8, a=(2, False))])
    v = run_network(net, _x([-5, 3, 4, 12, 20, 27, 28, 127], (1, 1, 8)))
    assert v["vec/z"].tolist() == [[[[0, 3, 4, 12, 20, 27, 28, 127]]]]
    assert v["vec/q"].tolist() == [[[[0, 0, 1, 2, 3, 3, 3, 3]]]]


def test_adapter_pool_hidden_layer_and_beta(tmp_path):
    # z = x (2 channels, 1x2). S = [10 + 21, 100 + 50] = [31, 150]; P = (S + 1) >> 1 = [16, 75]
    # (15.5 -> 16). Hidden: 2*16 - 75 = -43, t = 3*(-43) + 200 = 71, (71 + 2) >> 2 = 18.
    # Output: 5*18 = 90, t = 7*90 + 4 = 634, (634 + 1) >> 1 = 317.
    # Sample 1 (z = 0): P = [0, 0], H = (200 + 2) >> 2 = 50, beta = (7*250 + 4 + 1) >> 1 = 877.
    ad = _adapter("ad", "z", 2, {"pool_M": [1], "pool_sh": [1], "w1": [[2, -1]], "M1": [[3]], "B1": [200],
                                 "sh1": [2], "w2": [[5]], "M2": [[7]], "B2": [4], "sh2": [1]}, hidden=1)
    net = _net(tmp_path, (2, 1, 2), [_identity_conv("z", "input", 2), ad, _quant("q", "z", 4, 1, "ad"),
                                     _sum_linear("q", 4, a=(4, False), beta_from="ad")])
    v = run_network(net, _x([[10, 21, 100, 50], [0, 0, 0, 0]], (2, 1, 2)))
    assert v["vec/ad/S"].tolist() == [[31, 150], [0, 0]]
    assert v["vec/ad/P"].tolist() == [[16, 75], [0, 0]]
    assert v["vec/ad/H"].tolist() == [[18], [50]]
    assert v["vec/ad/beta"].tolist() == [317, 877]
    assert v["vec/ad/beta"].dtype == np.int64 and v["vec/ad/S"].dtype == np.int64
    assert v["vec/ad/P"].dtype == np.int16 and v["vec/ad/H"].dtype == np.int16


def test_single_layer_adapter_clamps_beta_to_1_and_its_largest_code(tmp_path):
    # hidden = 0: beta = clamp(3*P0 - 4*P1 + 100, 1, 2^4 - 1). P = S (M = 1, sh = 0).
    # Sample 0: P = [16, 75] -> -152 -> 1; sample 1: P = [0, 0] -> 100 -> 15.
    ad = _adapter("ad", "z", 2, {"pool_M": [1], "pool_sh": [0], "w2": [[3, -4]], "M2": [[1]], "B2": [100],
                                 "sh2": [0]}, beta_bits=4, beta_frac=2)
    net = _net(tmp_path, (2, 1, 1), [_identity_conv("z", "input", 2), ad, _quant("q", "z", 4, 1, "ad"),
                                     _sum_linear("q", 2, a=(4, False), beta_from="ad")])
    v = run_network(net, _x([[16, 75], [0, 0]], (2, 1, 1)))
    assert v["vec/ad/P"].tolist() == [[16, 75], [0, 0]]
    assert "vec/ad/H" not in v
    assert v["vec/ad/beta"].tolist() == [1, 15]


def _beta_chain(tmp_path):
    # z = max(x, 0) on a 1x1x2 tensor; the adapter passes the pool sum through: beta = S
    # (P = S, beta = P, clamped to [1, 1023]); quant g = 1, 8 bits, f_b = 8; then the logits
    # sum both codes with M = 1000, sh = 10 and beta_from the adapter.
    ad = _adapter("ad", "z", 1, {"pool_M": [1], "pool_sh": [0], "w2": [[1]], "M2": [[1]], "B2": [0],
                                 "sh2": [0]})
    return _net(tmp_path, (1, 1, 2), [_identity_conv("z", "input", 1), ad, _quant("q", "z", 8, 1, "ad"),
                                      _sum_linear("q", 2, a=(8, False), beta_from="ad", M=1000, sh=10)])


BETA_X = [[3, 2], [100, 27], [1, 0], [127, 127], [10, 6]]


def test_quant_with_adapter_divides_by_beta_through_the_reciprocal(tmp_path):
    # beta = 5: L = 3, R = (2^18 + 5) // 10 = 26214, sh = 3 + 14 + 1 - 8 = 10:
    #   A = (3*26214 + 512) >> 10 = 77, (2*26214 + 512) >> 10 = 51   (real 128*z/5: 76.8, 51.2)
    # beta = 127: L = 7, R = (2^22 + 127) // 254 = 16513, sh = 14: A = 101, 27
    # beta = 1: L = 1, R = (2^16 + 1) // 2 = 32768, sh = 8: A = (32768 + 128) >> 8 = 128, 0
    # beta = 254: L = 8, R = (2^23 + 254) // 508 = 16513, sh = 15: A = (127*16513 + 2^14) >> 15 = 64
    # beta = 16: L = 5, R = (2^20 + 16) // 32 = 32768, sh = 12: A = (327680 + 2048) >> 12 = 80, 48
    net = _beta_chain(tmp_path)
    v = run_network(net, _x(BETA_X, (1, 1, 2)))
    assert v["vec/ad/beta"].tolist() == [5, 127, 1, 254, 16]
    assert v["vec/q"].reshape(5, 2).tolist() == [[77, 51], [101, 27], [128, 0], [64, 64], [80, 48]]


def test_layer_after_an_adapter_uses_the_per_sample_multiplier(tmp_path):
    # M_n = (1000*beta + 128) >> 8: beta 5 -> 20, 127 -> 496, 1 -> 4, 254 -> 992, 16 -> 63
    # (16000/256 = 62.5, tie up). Every sample's acc is 128: logits (128*M_n + 512) >> 10 =
    # 3 (2.5 + 0.5), 62 (62.0 + 0.5), 1, 124, 8.
    net = _beta_chain(tmp_path)
    v = run_network(net, _x(BETA_X, (1, 1, 2)))
    assert v["vec/fc/acc"].tolist() == [[[128]] * 5]
    assert v["vec/fc"].tolist() == [[3], [62], [1], [124], [8]]


def test_reciprocal_is_the_rounded_normalised_inverse_for_every_beta():
    for beta in range(1, 2**15):
        L, r = netops.reciprocal(beta)
        assert L == beta.bit_length()
        assert r == int(Fraction(2 ** (L + 14), beta) + Fraction(1, 2))
        assert 2**14 < r <= 2**15


def test_predict_takes_the_lowest_index_of_the_largest_logit(tmp_path):
    # logits [5, 7, 7] and [-5, -7, -7]
    fc = _layer("fc", "input", "linear", [[5], [7], [7]], [[1]] * 3, [0] * 3, [0] * 3, S16)
    net = _net(tmp_path, (1, 1, 1), [fc], classes=3)
    x = _x([1, -1], (1, 1, 1))
    assert run_network(net, x)["vec/fc"].tolist() == [[5, 7, 7], [-5, -7, -7]]
    assert predict(net, x).tolist() == [1, 0]


# --- random networks -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("nets")
    nets = []
    for i, fmt in enumerate(FORMATS):
        manifest, params = random_network(i, fmt=fmt, samples=0)
        write_network(d / f"n{i}.npz", manifest, params)
        nets.append((read_network(d / f"n{i}.npz"), random_input(i, manifest, 3)))
    return nets


def test_every_documented_vector_is_made_with_its_dtype_and_shape(tmp_path):
    manifest, params = random_network(3)
    x = random_input(3, manifest, 4)
    write_network(tmp_path / "a.npz", manifest, params)
    vec = run_network(read_network(tmp_path / "a.npz"), x)
    # the same network written with the model's vectors reads back (the reader checks every one)
    extra = {"vec/labels": np.zeros(4), "vec/qat_logits": np.zeros((4, 10))}
    write_network(tmp_path / "b.npz", manifest | {"samples": 4}, params, vec | extra)
    net = read_network(tmp_path / "b.npz")
    want = {k: v for k, v in expected_arrays(net.manifest, net.tensors).items()
            if k.startswith("vec/") and k not in extra}
    assert set(vec) == set(want)
    for k, (dtype, shape) in want.items():
        assert (vec[k].dtype.name, vec[k].shape) == (dtype, shape), k


def test_layer_paths_give_identical_vectors(random_nets):
    for net, x in random_nets:
        ref = run_network(net, x, method="exact")
        for method in ("gemm", "auto", "int"):
            got = run_network(net, x, method=method)
            for k in ref:
                assert np.array_equal(ref[k], got[k]), (net.manifest["meta"], method, k)


def test_ops_cut_into_thread_ranges_give_identical_vectors(monkeypatch, random_nets):
    """Every kernel of the network run in one range per thread changes no bit."""
    import asqhw.sim.network as network
    from asqhw.sim import workshare
    refs = [run_network(net, x, method="auto") for net, x in random_nets]
    monkeypatch.setattr(workshare, "MIN_SHARE_MACS", 0)
    calls = []
    real = workshare.in_ranges
    monkeypatch.setattr(workshare, "in_ranges", lambda fn, n, work: calls.append(n) or real(fn, n, work))
    monkeypatch.setattr(network, "PAR_MIN_WORK", 0)            # no node forced onto one thread
    for (net, x), ref in zip(random_nets, refs):
        got = run_network(net, x, method="auto")
        for k in ref:
            assert np.array_equal(ref[k], got[k]), (net.manifest["meta"], k)
    assert calls


def test_keep_false_returns_only_the_same_logits(random_nets):
    for net, x in random_nets:
        model = IntNetwork(net)
        full = model.run(x)
        fast = model.run(x, keep=False)
        assert list(fast) == ["vec/fc"]
        assert np.array_equal(fast["vec/fc"], full["vec/fc"])
        assert predict(model, x).tolist() == np.argmax(full["vec/fc"], axis=1).tolist()


@pytest.mark.parametrize("method", ["auto", "int"])
@pytest.mark.parametrize("split_work", [False, True])
def test_keep_false_fuses_each_requantisation_and_every_layer_gives_the_same_codes(monkeypatch, random_nets,
                                                                                    method, split_work):
    """keep=False requantises inside the direct kernel's store: every layer's codes equal the unfused run's."""
    from asqhw.sim import direct_path, layers
    if split_work:                                     # one share per thread, cut by row blocks where it may
        monkeypatch.setattr(direct_path, "DIRECT_SHARE_MACS", 0)
        monkeypatch.setattr(direct_path, "DIRECT_ROW_SPLIT", 1 << 30)
    seen, direct = {}, []
    real_req, real_run = layers.Conv2d.requantized, direct_path.DirectPath.__call__
    monkeypatch.setattr(layers.Conv2d, "requantized", lambda self, x, *a: seen.setdefault(id(self), []).append(
        real_req(self, x, *a)) or seen[id(self)][-1])
    monkeypatch.setattr(direct_path.DirectPath, "__call__", lambda self, *a: direct.append(a[-1] is not None) or
                        real_run(self, *a))
    for net, x in random_nets:
        model = IntNetwork(net, method=method)
        full = model.run(x)
        seen.clear()
        fast = model.run(x, keep=False)
        assert np.array_equal(fast["vec/fc"], full["vec/fc"])
        for name, layer in model.layers.items():
            (codes,) = seen[id(layer)]
            assert np.array_equal(codes.reshape(full[f"vec/{name}"].shape), full[f"vec/{name}"]), name
    assert any(direct) if method == "int" else True


def test_a_bound_model_gives_the_same_result_per_batch_as_for_all(random_nets):
    net, _ = random_nets[2]
    x = random_input(11, net.manifest, 7)
    model = IntNetwork(net)
    whole = model.run(x)
    parts = [model.run(x[i:i + 3]) for i in range(0, 7, 3)]
    for k in whole:
        axis = 1 if k.endswith("/acc") else 0
        assert np.array_equal(whole[k], np.concatenate([p[k] for p in parts], axis=axis)), k


# --- bad input -----------------------------------------------------------------------------
def test_input_of_the_wrong_shape_is_a_user_error(random_nets):
    net, x = random_nets[0]
    with pytest.raises(UserError, match="expects N x"):
        run_network(net, x[:, :2])


def test_input_codes_outside_8_bits_are_a_user_error(random_nets):
    net, x = random_nets[0]
    bad = x.copy()
    bad[0, 0, 0, 0] = 128
    with pytest.raises(UserError, match="signed 8-bit"):
        run_network(net, bad)


def test_float_input_is_a_user_error(random_nets):
    net, x = random_nets[0]
    with pytest.raises(UserError, match="integer array"):
        run_network(net, x.astype(np.float32))


def test_an_empty_batch_is_a_user_error(random_nets):
    net, x = random_nets[0]
    with pytest.raises(UserError, match="no samples"):
        run_network(net, x[:0])
