"""golden.netref: whole integer networks against hand examples, Python-int loops and the format."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from asqhw.core.errors import UserError
from asqhw.core.network import expected_arrays, read_network, validate, write_network, FORMAT, FORMAT_VERSION
from asqhw.core.params import Datapath
from asqhw.golden import netref
from netcases import FORMATS, random_input, random_network
from test_golden_intref import loop_conv

U, S16 = (0, 2**15 - 1), (-(2**15), 2**15 - 1)
UNI8 = {"format": "uniform", "bits": 8, "e_max": None, "arch": "mul", "frac_bits": 0, "storage_bits": 8}


# --- hand-built networks ----------------------------------------------------------------
def _layer(name, src, op, *, w, M, B, sh, act=(8, True), out=U, beta_from=None, **fields):
    """A conv2d/linear node with 8-bit uniform weights and its params."""
    w = np.asarray(w)
    fan = int(np.prod(w.shape[1:]))
    dp = Datapath("uniform", act[0], 8, a_signed=act[1])
    node = {"name": name, "op": op, "inputs": [src], **fields,
            "activation": {"bits": act[0], "signed": act[1]}, "weights": UNI8,
            "accumulator": {"bits": dp.natural_acc_bits(fan)}, "output": {"lo": out[0], "hi": out[1]},
            "beta_from": beta_from}
    return node, {f"{name}/w": w, f"{name}/M": np.asarray(M), f"{name}/B": np.asarray(B),
                  f"{name}/sh": np.asarray(sh)}


def _conv(name, src, c, *, M, k=1, out=U):
    """Depthwise 1x1 conv with weight 1: ``z = clamp(M * x)`` per channel."""
    return _layer(name, src, "conv2d", w=np.ones((c, 1, k, k), dtype=np.int64), M=[[m] for m in M],
                  B=[0] * c, sh=[0] * c, out=out, in_channels=c, out_channels=c, kernel=[k, k], stride=1,
                  padding=0, groups=c)


def _fc(src, features, *, act, classes=2, w=None, M=None, B=None, sh=None, beta_from=None):
    w = np.zeros((classes, features), dtype=np.int64) if w is None else w
    return _layer("fc", src, "linear", w=w, M=M or [[1]] * classes, B=B or [0] * classes,
                  sh=sh or [0] * classes, act=act, out=S16, beta_from=beta_from,
                  in_features=features, out_features=classes)


def _quant(name, src, bits, g, adapter=None):
    return {"name": name, "op": "quant", "inputs": [src], "bits": bits, "g": g, "adapter": adapter}


def _adapter(name, src, channels, *, hidden=0, beta_bits=10, beta_frac=8, **arrays):
    node = {"name": name, "op": "adapter", "inputs": [src], "channels": channels, "hidden": hidden,
            "beta_bits": beta_bits, "beta_frac": beta_frac}
    return node, {f"{name}/{k}": np.asarray(v) for k, v in arrays.items()}


def _net(shape, *parts):
    """(manifest, params) from nodes and (node, params) pairs, the last node the logits."""
    nodes, params = [], {}
    for part in parts:
        node, p = part if isinstance(part, tuple) else (part, {})
        nodes.append(node)
        params |= p
    manifest = {"name": "hand", "description": "hand case", "classes": nodes[-1]["out_features"],
                "input": {"shape": list(shape), "bits": 8, "signed": True, "step": 1.0,
                          "mean": [0.0] * shape[0], "std": [1.0] * shape[0]},
                "nodes": nodes, "output": nodes[-1]["name"], "samples": 0}
    return manifest, params


def _x(a):
    return np.asarray(a, dtype=np.int16)


# --- layers -------------------------------------------------------------------------------
def test_conv_clamps_at_zero_and_linear_reads_codes_flattened_in_c_h_w_order():
    net = _net([2, 1, 2], _conv("c1", "input", 2, M=[1, 1]), _quant("q", "c1", 8, 0),
               _fc("q", 4, act=(8, False), w=[[1, 2, 4, 8], [0, 0, 0, 1]], M=[[2], [1]], B=[1, 0], sh=[1, 0]))
    x = _x([[[[1, 2]], [[3, 4]]], [[[-5, 6]], [[7, -8]]]])
    v = netref.run_network(net, x)
    assert v["vec/c1/acc"].tolist() == [x.tolist()]
    assert v["vec/c1"].tolist() == [[[[1, 2]], [[3, 4]]], [[[0, 6]], [[7, 0]]]]
    # acc = 1*x00 + 2*x01 + 4*x10 + 8*x11: [49, 4] and [40, 0]; y0 = (2*acc + 1 + 1) >> 1
    assert v["vec/fc/acc"].tolist() == [[[49, 4], [40, 0]]]
    assert v["vec/fc"].tolist() == [[50, 4], [41, 0]]


def test_golden_vectors_have_the_documented_dtypes():
    net = _net([2, 1, 2], _conv("c1", "input", 2, M=[1, 1]), _quant("q", "c1", 8, 0), _fc("q", 4, act=(8, False)))
    v = netref.run_network(net, _x(np.zeros((1, 2, 1, 2))))
    assert {k: a.dtype.name for k, a in v.items()} == {
        "vec/input": "int16", "vec/c1/acc": "int64", "vec/c1": "int16", "vec/q": "int16",
        "vec/fc/acc": "int64", "vec/fc": "int16"}


# --- adapter, per-sample quant and multipliers ------------------------------------------------
def _beta_net():
    """input 1x1x2 -> c1 (z = relu x) -> adapter a (beta_q = 3 * min(z0 + z1, 255))
    -> quant q (8 bits, g = 0, ASQ) -> fc with beta_from a."""
    return _net([1, 1, 2], _conv("c1", "input", 1, M=[1]),
                _adapter("a", "c1", 1, pool_M=[1], pool_sh=[0], w2=[[1]], M2=[[3]], B2=[0], sh2=[0]),
                _quant("q", "c1", 8, 0, "a"),
                _fc("q", 2, act=(8, False), w=[[1, 0], [1, 1]], M=[[1000], [1]], B=[0, 0], sh=[4, 0],
                    beta_from="a"))


def test_adapter_beta_is_clamped_below_at_one():
    v = netref.run_network(_beta_net(), _x([[[[100, 28]]], [[[-3, -4]]], [[[127, 127]]]]))
    assert v["vec/a/S"].tolist() == [[128], [0], [254]]
    assert v["vec/a/P"].tolist() == [[128], [0], [254]]
    assert v["vec/a/beta"].tolist() == [384, 1, 762]


def test_quant_divides_by_beta_through_the_rounded_reciprocal():
    v = netref.run_network(_beta_net(), _x([[[[100, 28]]], [[[-3, -4]]], [[[127, 127]]]]))
    # beta_q 384: L = 9, R = (2^24 + 384) // 768 = 21845, sh = 9 + 14 - 8 = 15
    #   100 -> (100*21845 + 2^14) >> 15 = 67;  28 -> (28*21845 + 2^14) >> 15 = 19
    # beta_q 762: L = 10, R = (2^25 + 762) // 1524 = 22017, sh = 16: 127 -> 43
    assert v["vec/q"].tolist() == [[[[67, 19]]], [[[0, 0]]], [[[43, 43]]]]


def test_layer_with_beta_from_uses_the_per_sample_multiplier():
    v = netref.run_network(_beta_net(), _x([[[[100, 28]]], [[[-3, -4]]], [[[127, 127]]]]))
    # M_n = (M * beta_q + 128) >> 8: beta 384 -> [1500, 2] (1.5 rounds up), 1 -> [4, 0], 762 -> [2977, 3]
    assert v["vec/fc/acc"].tolist() == [[[67, 86], [0, 0], [43, 86]]]
    # y0 = (M_n0 * acc0 + 8) >> 4, y1 = M_n1 * acc1
    assert v["vec/fc"].tolist() == [[(1500 * 67 + 8) >> 4, 172], [0, 0], [(2977 * 43 + 8) >> 4, 258]]


def test_beta_multipliers_round_ties_up():
    assert netref.beta_multipliers([[1], [3]], [384, 128], 8).tolist() == [[[2], [5]], [[1], [2]]]
    assert netref.beta_multipliers([[7]], [3], 0).tolist() == [[[21]]]


def test_two_channel_single_layer_adapter_by_hand():
    net = _net([2, 2, 2], _conv("c1", "input", 2, M=[1, 1]),
               _adapter("a", "c1", 2, pool_M=[3], pool_sh=[2], w2=[[2, -3]], M2=[[5]], B2=[40], sh2=[1]),
               _quant("q", "c1", 4, 0, "a"), _fc("q", 8, act=(4, False), beta_from="a"))
    x = _x([[[[10, 20], [30, 40]], [[1, 2], [3, -4]]],
            [[[127] * 2] * 2, [[0, 0], [0, 100]]],
            [[[0, 0], [0, 0]], [[50] * 2] * 2],
            [[[127] * 2] * 2, [[0, 0], [0, 0]]]])
    v = netref.run_network(net, x)
    assert v["vec/a/S"].tolist() == [[100, 6], [508, 100], [0, 200], [508, 0]]
    # P = (3 S + 2) >> 2 clamped to 255
    assert v["vec/a/P"].tolist() == [[75, 5], [255, 75], [0, 150], [255, 0]]
    # beta = (5 (2 P0 - 3 P1) + 40 + 1) >> 1 in [1, 1023]: 358, 733, -1105 -> 1, 1295 -> 1023
    assert v["vec/a/beta"].tolist() == [358, 733, 1, 1023]
    assert "vec/a/H" not in v


def test_adapter_with_a_hidden_layer_by_hand():
    w1 = [[1, -1, 2, 0, 0, 0, 0, 3], [-2, 0, 0, 1, 1, 1, 1, 0]]
    net = _net([8, 1, 1], _conv("c1", "input", 8, M=[1] * 8),
               _adapter("a", "c1", 8, hidden=2, pool_M=[1], pool_sh=[0], w1=w1, M1=[[3], [1]], B1=[4, -20],
                        sh1=[2, 0], w2=[[10, 1]], M2=[[1]], B2=[256], sh2=[0]),
               _quant("q", "c1", 4, 0, "a"), _fc("q", 8, act=(4, False), beta_from="a"))
    x = _x([[[[v]] for v in (10, 4, 7, 50, 1, 2, 3, 20)]])
    v = netref.run_network(net, x)
    assert v["vec/a/P"].tolist() == [[10, 4, 7, 50, 1, 2, 3, 20]]
    # h0 = (3 * (10 - 4 + 14 + 60) + 4 + 2) >> 2 = 246 >> 2 = 61; h1 = clamp(-20 + 56 - 20, 0, 255) = 16
    assert v["vec/a/H"].tolist() == [[61, 16]]
    assert v["vec/a/beta"].tolist() == [256 + 610 + 16]


def test_lsq_quant_is_a_rounding_shift_with_ties_up_and_a_clamp():
    net = _net([1, 1, 5], _conv("c1", "input", 1, M=[1]), _quant("q", "c1", 2, 2), _fc("q", 5, act=(2, False)))
    v = netref.run_network(net, _x([[[[6, 10, 2, 14, 1]]]]))
    assert v["vec/q"].tolist() == [[[[2, 3, 1, 3, 0]]]]  # 1.5 -> 2, 2.5 -> 3, 0.5 -> 1, 3.5 -> 4 -> 3


# --- add and pools ----------------------------------------------------------------------
def test_add_rescales_each_branch_by_its_own_multiplier_and_rounds_once():
    net = _net([2, 1, 2],
               _layer("ca", "input", "conv2d", w=[[[[1]], [[0]]]], M=[[100]], B=[0], sh=[0], out=S16,
                      in_channels=2, out_channels=1, kernel=[1, 1], stride=1, padding=0, groups=1),
               _layer("cb", "input", "conv2d", w=[[[[0]], [[1]]]], M=[[1]], B=[0], sh=[0], out=S16,
                      in_channels=2, out_channels=1, kernel=[1, 1], stride=1, padding=0, groups=1),
               ({"name": "add", "op": "add", "inputs": ["ca", "cb"], "output": {"lo": 0, "hi": 2**15 - 1}},
                {"add/M": np.array([3, 5]), "add/B": np.array([-7]), "add/sh": np.array([2])}),
               _quant("q", "add", 8, 0), _fc("q", 2, act=(8, False)))
    v = netref.run_network(net, _x([[[[1, -1]], [[1, 10]]], [[[-2, 0]], [[-3, 7]]]]))
    assert v["vec/ca"].tolist() == [[[[100, -100]]], [[[-200, 0]]]]
    # (3a + 5b - 7 + 2) >> 2: 298/4 = 74.5 -> 75; -257 -> 0; -622 -> 0; 28/4 = 7
    assert v["vec/add"].tolist() == [[[[75, 0]]], [[[0, 7]]]]


def test_add_rounds_a_negative_tie_toward_plus_infinity():
    y = netref.add(torch.tensor([-1, 1]), torch.tensor([0, 0]), [5, 0], [-5], [2], *S16)
    assert y.tolist() == [-2, 0]  # -10/4 = -2.5 -> -2; 0/4 = 0


def test_maxpool_padding_is_not_part_of_the_window():
    net = _net([1, 3, 3], {"name": "mp", "op": "maxpool", "inputs": ["input"], "kernel": [2, 2], "stride": 2,
                           "padding": 1},
               _fc("mp", 4, act=(8, True)))
    x = _x([[[[-5, -6, -7], [-8, -9, -10], [-11, -12, -13]]], [[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]])
    v = netref.run_network(net, x)
    assert v["vec/mp"].tolist() == [[[[-5, -6], [-8, -9]]], [[[1, 3], [7, 9]]]]


def test_global_avgpool_requantises_the_exact_window_sum():
    net = _net([2, 2, 2], _conv("c1", "input", 2, M=[1, 1]),
               ({"name": "gap", "op": "avgpool", "inputs": ["c1"], "kernel": [2, 2], "stride": 1,
                 "output": {"lo": 0, "hi": 2**15 - 1}}, {"gap/M": np.array([16384]), "gap/sh": np.array([16])}),
               _quant("q", "gap", 8, 0), _fc("q", 2, act=(8, False)))
    v = netref.run_network(net, _x([[[[1, 2], [3, 5]], [[1, 1], [1, 7]]]]))
    assert v["vec/gap"].tolist() == [[[[3]], [[3]]]]  # 11/4 = 2.75 -> 3; 10/4 = 2.5 -> 3 (tie up)


def test_avgpool_of_codes_keeps_the_code_range():
    net = _net([1, 2, 4], ({"name": "ap", "op": "avgpool", "inputs": ["input"], "kernel": [2, 2], "stride": 2,
                            "output": {"lo": -128, "hi": 127}}, {"ap/M": np.array([3]), "ap/sh": np.array([2])}),
               _fc("ap", 2, act=(8, True)))
    v = netref.run_network(net, _x([[[[-1, -2, 100, 100], [-3, -4, 100, 100]]]]))
    assert v["vec/ap"].tolist() == [[[[-7, 127]]]]  # (3*-10 + 2) >> 2 = -7; 3*400/4 = 300 -> 127


# --- the reciprocal and the per-sample requantisation ---------------------------------------
def test_reciprocal_is_the_correctly_rounded_normalised_inverse_for_every_beta_q():
    b = torch.arange(1, 2**15, dtype=torch.int64)
    R, L = netref.reciprocal(b)
    assert L.tolist() == [v.bit_length() for v in range(1, 2**15)]
    assert int(R.min()) > 2**14 and int(R.max()) <= 2**15
    want = [math.floor(Fraction(2 ** (v.bit_length() + 14), v) + Fraction(1, 2)) for v in range(1, 2**15)]
    assert R.tolist() == want


def _rounding_violations(a: np.ndarray, z: np.ndarray, b: np.ndarray, g: int, f_b: int, qp: int) -> np.ndarray:
    """Where ``a`` differs from ``clamp(floor(v + 1/2))``, ``v = z 2^(f_b - g) / b``, while ``v`` is
    not within ``2^-15 v`` of the rounding boundary (all exact integer arithmetic)."""
    num, den = z << f_b, b << g  # v = num / den
    exact = np.clip((2 * num + den) // (2 * den), 0, qp)
    k = num // den
    near = np.abs(2 * num - (2 * k + 1) * den) << 15 < 2 * num  # |v - (k + 1/2)| < 2^-15 v
    return (a != exact) & ~near


@pytest.mark.parametrize("g,bits", [(0, 8), (4, 4), (9, 2)])
def test_per_sample_quant_is_exact_rounding_of_z_over_beta_within_2_to_minus_15(g, bits):
    f_b, qp = 8, (1 << bits) - 1
    b = np.arange(1, 1024, dtype=np.int64)[:, None]
    z = np.arange(0, 2**15, 5, dtype=np.int64)[None, :].repeat(len(b), 0)
    a = netref.quant(torch.from_numpy(z), bits, g, torch.from_numpy(b[:, 0]), f_b).numpy()
    bad = _rounding_violations(a, z, b, g, f_b, qp)
    assert not bad.any(), f"{int(bad.sum())} codes off, first at beta_q={b[np.nonzero(bad)[0][0], 0]}"


def test_a_reciprocal_one_step_too_small_breaks_the_rounding_bound():
    f_b, g, qp = 8, 0, 255
    b = np.arange(1, 1024, dtype=np.int64)[:, None]
    z = np.arange(0, 2**15, 5, dtype=np.int64)[None, :].repeat(len(b), 0)
    R, L = netref.reciprocal(torch.from_numpy(b[:, 0]))
    a = netref.requant(torch.from_numpy(z), (R - 1)[:, None], 0, (L + 14 + g - f_b)[:, None], 0, qp).numpy()
    assert _rounding_violations(a, z, b, g, f_b, qp).any()


def test_requant_takes_the_extreme_48_bit_bias_and_62_bit_shift():
    assert netref.requant(torch.tensor([0, 0]), 1, -(2**47), torch.tensor([47, 62]), -10, 10).tolist() == [-1, 0]


def test_requant_refuses_a_multiplier_beyond_16_bits():
    with pytest.raises(ValueError, match="multiplier"):
        netref.requant(torch.tensor([1]), 1 << 16, 0, 0, 0, 10)


# --- whole random networks ----------------------------------------------------------------
def _py_requant(t: int, M: int, B: int, sh: int, lo: int, hi: int) -> int:
    s = M * t + B
    r = (s + (1 << (sh - 1))) >> sh if sh >= 1 else s
    return min(max(r, lo), hi)


def _spec_node(nd: dict, v: dict, p: dict, nodes: dict) -> dict[str, np.ndarray]:
    """One node's vectors from its input vectors, with Python ints, from the spec text."""
    name, op = nd["name"], nd["op"]
    src = v[f"vec/{nd['inputs'][0]}"].astype(np.int64)
    n = src.shape[0]
    if op in ("conv2d", "linear"):
        a, w = nd["activation"], nd["weights"]
        dp = Datapath(w["format"], a["bits"], w["bits"], arch=w["arch"], a_signed=a["signed"],
                      e_max=w["e_max"], frac_bits=w["frac_bits"])
        wt = p[f"{name}/w"].astype(np.int64)
        bits = nd["accumulator"]["bits"]
        if op == "linear":
            c = wt.shape[0]
            acc = loop_conv(dp, src.reshape(n, -1, 1, 1), wt.reshape(c, -1, 1, 1), 1, 0, 1, bits)
            acc = acc.reshape(dp.n_acc, n, c)
        else:
            acc = loop_conv(dp, src, wt, nd["stride"], nd["padding"], nd["groups"], bits)
        M, B, sh = p[f"{name}/M"], p[f"{name}/B"], p[f"{name}/sh"]
        y = np.zeros(acc.shape[1:], dtype=np.int64)
        for idx in np.ndindex(*y.shape):
            s, c = idx[0], idx[1]
            ms = [int(m) for m in M[c]]
            if nd["beta_from"]:
                fb = nodes[nd["beta_from"]]["beta_frac"]
                bq = int(v[f"vec/{nd['beta_from']}/beta"][s])
                ms = [(m * bq + (1 << fb >> 1)) >> fb for m in ms]
            t = sum(m * int(acc[(k,) + idx]) for k, m in enumerate(ms)) + int(B[c])
            y[idx] = _py_requant(t, 1, 0, int(sh[c]), nd["output"]["lo"], nd["output"]["hi"])
        return {f"vec/{name}/acc": acc, f"vec/{name}": y}
    if op == "add":
        b = v[f"vec/{nd['inputs'][1]}"]
        M, B, sh = (int(x) for x in p[f"{name}/M"]), int(p[f"{name}/B"][0]), int(p[f"{name}/sh"][0])
        m0, m1 = M
        y = np.vectorize(lambda s, t: _py_requant(1, m0 * int(s) + m1 * int(t), B, sh, nd["output"]["lo"],
                                                  nd["output"]["hi"]))(src, b)
        return {f"vec/{name}": y}
    if op in ("maxpool", "avgpool"):
        (kh, kw), st, pad = nd["kernel"], nd["stride"], nd.get("padding", 0)
        n_, c, h, w = src.shape
        ho, wo = (h + 2 * pad - kh) // st + 1, (w + 2 * pad - kw) // st + 1
        y = np.zeros((n_, c, ho, wo), dtype=np.int64)
        for s, ch, oy, ox in np.ndindex(*y.shape):
            win = [int(src[s, ch, iy, ix]) for iy in range(oy * st - pad, oy * st - pad + kh)
                   for ix in range(ox * st - pad, ox * st - pad + kw) if 0 <= iy < h and 0 <= ix < w]
            if op == "maxpool":
                y[s, ch, oy, ox] = max(win)
            else:
                y[s, ch, oy, ox] = _py_requant(sum(win), int(p[f"{name}/M"][0]), 0, int(p[f"{name}/sh"][0]),
                                               nd["output"]["lo"], nd["output"]["hi"])
        return {f"vec/{name}": y}
    if op == "adapter":
        out = {k: [] for k in ("S", "P", "H", "beta")}
        bmax = (1 << nd["beta_bits"]) - 1
        for s in range(n):
            S = [int(src[s, c].sum()) for c in range(src.shape[1])]
            P = [_py_requant(x, int(p[f"{name}/pool_M"][0]), 0, int(p[f"{name}/pool_sh"][0]), 0, 255) for x in S]
            h = P
            if nd["hidden"]:
                w1, M1, B1, sh1 = (p[f"{name}/{k}"] for k in ("w1", "M1", "B1", "sh1"))
                h = [_py_requant(sum(int(w1[j, c]) * P[c] for c in range(len(P))), int(M1[j, 0]), int(B1[j]),
                                 int(sh1[j]), 0, 255) for j in range(nd["hidden"])]
                out["H"].append(h)
            w2 = p[f"{name}/w2"]
            beta = _py_requant(sum(int(w2[0, j]) * h[j] for j in range(len(h))), int(p[f"{name}/M2"][0, 0]),
                               int(p[f"{name}/B2"][0]), int(p[f"{name}/sh2"][0]), 1, bmax)
            out["S"].append(S)
            out["P"].append(P)
            out["beta"].append(beta)
        return {f"vec/{name}/{k}": np.array(a, dtype=np.int64) for k, a in out.items() if k != "H" or nd["hidden"]}
    # quant
    qp, g, ad = (1 << nd["bits"]) - 1, nd["g"], nd["adapter"]
    y = np.zeros(src.shape, dtype=np.int64)
    for idx in np.ndindex(*src.shape):
        z = int(src[idx])
        if ad is None:
            y[idx] = _py_requant(z, 1, 0, g, 0, qp)
        else:
            bq = int(v[f"vec/{ad}/beta"][idx[0]])
            L = bq.bit_length()
            R = (2 ** (L + 15) + bq) // (2 * bq)
            y[idx] = _py_requant(z, R, 0, L + 14 + g - nodes[ad]["beta_frac"], 0, qp)
    return {f"vec/{name}": y}


def _check_nodes(manifest: dict, params: dict, v: dict):
    """Compare every vector with the spec loops; name node, array, sample and index."""
    nodes = {nd["name"]: nd for nd in manifest["nodes"]}
    for nd in manifest["nodes"]:
        for key, want in _spec_node(nd, v, params, nodes).items():
            got = v[key]
            assert got.shape == want.shape, f"{manifest['name']} {key}: shape {got.shape} != {want.shape}"
            bad = np.argwhere(got != want)
            if len(bad):
                i = tuple(bad[0])
                raise AssertionError(f"{manifest['name']} {key}[{', '.join(map(str, i))}]: "
                                     f"expected {want[i]}, got {got[i]}")


@pytest.mark.parametrize("seed,fmt", [(0, FORMATS[0]), (1, FORMATS[3]), (2, FORMATS[4])])
def test_every_node_of_a_random_network_matches_the_spec_loops(seed, fmt):
    m, p = random_network(seed, fmt=fmt, samples=2)
    _check_nodes(m, p, netref.run_network((m, p), random_input(seed, m, 2)))


def test_the_node_check_names_a_mutated_value():
    m, p = random_network(4, fmt=FORMATS[2], samples=2)
    v = netref.run_network((m, p), random_input(4, m, 2))
    v["vec/q2"][1, 3, 2, 0] ^= 1
    with pytest.raises(AssertionError, match=r"vec/q2\[1, 3, 2, 0\]"):
        _check_nodes(m, p, v)


def _with_vectors(m: dict, v: dict, n: int) -> tuple[dict, dict]:
    vec = dict(v, **{"vec/labels": np.arange(n) % m["classes"],
                     "vec/qat_logits": np.zeros((n, m["classes"]), dtype=np.float32)})
    return dict(m, samples=n), vec


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("asq", [True, False])
def test_random_network_vectors_survive_the_export_format_and_rerun_identically(tmp_path, fmt, asq):
    m, p = random_network(11, fmt=fmt, asq=asq)
    x = random_input(11, m, 3)
    v = netref.run_network((m, p), x)
    m2, vec = _with_vectors(m, v, 3)
    path = tmp_path / "net.npz"
    write_network(path, m2, p, vec)
    net = read_network(path)
    assert set(net.vectors) == set(vec)
    for k, a in v.items():
        assert net.vectors[k].dtype == a.dtype
        np.testing.assert_array_equal(net.vectors[k], a, err_msg=k)
    again = netref.run_network(net, net.vectors["vec/input"])
    assert set(again) == set(v) and all(np.array_equal(again[k], v[k]) for k in v)


def test_run_network_makes_every_vector_the_format_expects():
    m, p = random_network(6)
    v = netref.run_network((m, p), random_input(6, m, 2))
    m2 = dict(m, samples=2, format=FORMAT, format_version=FORMAT_VERSION, spec_version="1.1")
    exp = expected_arrays(m2, validate(m2))
    want = {k: d for k, (d, _) in exp.items() if k.startswith("vec/") and k not in ("vec/labels", "vec/qat_logits")}
    assert {k: a.dtype.name for k, a in v.items()} == want
    assert all(tuple(v[k].shape) == exp[k][1] for k in v)


# --- predict and input checks ----------------------------------------------------------------
def test_predict_picks_the_lowest_index_of_a_tied_maximum():
    net = _net([1, 1, 2], _fc("input", 2, act=(8, True), classes=3, B=[0, 5, 5]))
    logits, top1 = netref.predict(net, _x([[[[3, -4]]], [[[0, 0]]]]))
    assert logits.tolist() == [[0, 5, 5]] * 2 and top1.tolist() == [1, 1]


def test_predict_in_batches_agrees_with_run_network():
    m, p = random_network(8)
    x = random_input(8, m, 5)
    logits, top1 = netref.predict((m, p), x, batch=2)
    v = netref.run_network((m, p), x)
    assert logits.dtype == np.int64 and top1.dtype == np.int64
    np.testing.assert_array_equal(logits, v["vec/fc"])
    np.testing.assert_array_equal(top1, np.argmax(v["vec/fc"], axis=1))


def test_input_codes_of_the_wrong_shape_are_a_user_error():
    m, p = random_network(0)
    with pytest.raises(UserError, match="shape"):
        netref.run_network((m, p), np.zeros((2, 3, 5, 5), dtype=np.int16))


def test_input_codes_beyond_8_bits_are_a_user_error():
    m, p = random_network(0)
    x = random_input(0, m, 1).astype(np.int32)
    x[0, 0, 0, 0] = 128
    with pytest.raises(UserError, match="signed 8-bit"):
        netref.run_network((m, p), x)


def test_a_parameter_that_does_not_fit_its_dtype_is_a_user_error():
    m, p = random_network(0)
    p = dict(p, **{"c1/w": p["c1/w"] + 65536})
    with pytest.raises(UserError, match="c1/w"):
        netref.run_network((m, p), random_input(0, m, 1))
