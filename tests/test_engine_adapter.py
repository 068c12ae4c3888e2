# amaranth: UnusedElaboratable=no
"""The adapter companion unit in Verilator: S, P, H, beta_q, R, sh, M_n bit-exact, cycles = the model.

One build (sized for the largest adapter here) runs every case: the bundled network's three
adapters (12 samples each), the adapters of random networks (``C_h = 0`` and ``> 0``) and
small hand-made adapters (``C`` of 1..4, ``C_h`` of 0..2, 0 to 40 multipliers) whose golden
values come from ``golden.netref.adapter`` and ``golden.netref.beta_multipliers``.
"""

from pathlib import Path

import numpy as np
import pytest

from asqhw.core.spec import SPEC_VERSION
from asqhw.cli.main import main
from asqhw.core.network import FORMAT, FORMAT_VERSION, Network, m_cap, read_network, validate, write_network
from asqhw.golden import netref
from asqhw.hdl.verilator import lint
from asqhw.hdl.engine.adapter import adapter_cycles, adapter_stalls
from asqhw.hdl.engine.adapter_cosim import (AdapterConfig, adapter_jobs, build_adapter, compare_run, render,
                                      config_of, expected_of, reciprocal, run_adapter)

from netcases import _shift_for, random_input, random_network

BUNDLED = Path(__file__).resolve().parent.parent / "asqhw" / "golden" / "networks" / "digits_cnn_asq_post4.npz"
BUILD = AdapterConfig(max_channels=32, max_hidden=8, max_hw=64, max_mults=64)


def _random_net(seed: int, channels: int) -> Network:
    m, p = random_network(seed, channels=channels, samples=3)
    v = netref.run_network((m, p), random_input(seed, m, 3))
    m = dict(m, format=FORMAT, format_version=FORMAT_VERSION, spec_version=SPEC_VERSION, samples=3)
    return Network(m, p, v, validate(m))


def _small_adapter(seed: int, channels: int, hidden: int, n_mults: int, hw: int = 4, n: int = 4):
    """A hand-made adapter node, its arrays, input ``z``, multipliers and golden values (netref)."""
    rng = np.random.default_rng(seed)
    mults = rng.integers(0, m_cap(10, 8) + 1, size=n_mults)
    z = rng.integers(0, 2**15, size=(n, channels, hw, 1))
    pm, psh = _shift_for(100.0 / (hw * 2**14), 65535)
    params = {"pool_M": np.array([pm]), "pool_sh": np.array([psh])}
    fan = hidden or channels
    if hidden:
        m1, sh1 = _shift_for(60.0 / (np.sqrt(channels) * 100 * 64), 65535)
        params |= {"w1": rng.integers(-128, 128, size=(hidden, channels)), "M1": np.full((hidden, 1), m1),
                   "B1": rng.integers(10, 60, size=hidden) << sh1, "sh1": np.full(hidden, sh1)}
    m2, sh2 = _shift_for(64.0 / (np.sqrt(fan) * (60 if hidden else 100) * 64), 65535)
    params |= {"w2": rng.integers(-128, 128, size=(1, fan)), "M2": np.array([[m2]]),
               "B2": np.array([256 << sh2]), "sh2": np.array([sh2])}
    node = {"name": f"small_c{channels}_h{hidden}", "op": "adapter", "channels": channels,
            "hidden": hidden, "beta_bits": 10, "beta_frac": 8}
    gold = {k: v.numpy() for k, v in netref.adapter(z, node, params).items()}
    exp = {"S": gold["S"], "P": gold["P"], "beta": gold["beta"]} | ({"H": gold["H"]} if hidden else {})
    rs = [reciprocal(int(b), 9, 8) for b in gold["beta"]]
    exp |= {"R": np.array([r for r, _ in rs]), "sh": np.array([s for _, s in rs]),
            "Mn": netref.beta_multipliers(mults.reshape(-1, 1), gold["beta"], 8).numpy().reshape(n, -1)}
    return node, params, z, mults, exp


@pytest.fixture(scope="module")
def unit():
    return build_adapter(BUILD)


@pytest.fixture(scope="module")
def runs(unit):
    """``(case, node, run, expected, multipliers)`` for every adapter of every case, run once."""
    exe, ports = unit
    out = []
    nets = [read_network(BUNDLED), _random_net(1, 8), _random_net(2, 4)]
    for net in nets:
        for name, nd, params, z, g, mults in adapter_jobs(net):
            run = run_adapter(BUILD, exe, ports, nd, params, z, g, mults, name=f"{net.name}/{name}")
            out.append((net.name, nd, run, expected_of(net, nd, net.vectors), len(mults)))
    for seed, (c, h, nm) in enumerate([(1, 0, 0), (2, 0, 1), (3, 0, 16), (1, 1, 17), (2, 1, 5),
                                       (3, 2, 40), (4, 1, 2)]):
        node, params, z, mults, exp = _small_adapter(seed, c, h, nm)
        run = run_adapter(BUILD, exe, ports, node, params, z, 9, mults, name=node["name"])
        out.append(("small", node, run, exp, nm))
    return out


def _mismatches(runs, case):
    return [b for name, nd, run, exp, _ in runs if name.startswith(case)
            for b in compare_run(name, nd["name"], run, exp)]


def test_one_build_covers_every_adapter_of_the_bundled_network():
    assert config_of([read_network(BUNDLED)]) == [BUILD]


def test_expected_per_sample_multipliers_agree_with_netref():
    net = read_network(BUNDLED)
    nd = net.node("q1_adapter")
    want = netref.beta_multipliers(net.param("conv2", "M"), net.vectors["vec/q1_adapter/beta"], 8)
    assert np.array_equal(expected_of(net, nd, net.vectors)["Mn"], want.numpy().reshape(12, -1))


def test_bundled_network_adapters_are_bit_exact(runs):
    assert [nd["name"] for name, nd, *_ in runs if name == "digits_cnn_asq_post4"] == \
        ["q1_adapter", "q2_adapter", "q3_adapter"]
    assert _mismatches(runs, "digits_cnn_asq_post4") == []


def test_random_network_adapters_with_and_without_hidden_layer_are_bit_exact(runs):
    hidden = {nd["hidden"] for name, nd, *_ in runs if name.startswith("random")}
    assert 0 in hidden and max(hidden) > 0
    assert _mismatches(runs, "random") == []


def test_small_adapters_are_bit_exact(runs):
    assert _mismatches(runs, "small") == []


def test_every_sample_takes_the_cycles_of_the_model(runs):
    for name, nd, run, _, n_mults in runs:
        model = adapter_cycles(nd["channels"], nd["hidden"], multipliers=n_mults)
        assert run.cycles == [model] * len(run.cycles), (name, nd["name"], run.cycles, model)


def test_the_model_counts_the_stalls_of_small_layers():
    assert adapter_stalls(16, 4) == 0 and adapter_stalls(4, 0) == 0
    assert adapter_stalls(8, 2) == 1 and adapter_stalls(1, 0) == 1 and adapter_stalls(1, 1) == 3
    assert adapter_cycles(16, 4) == 16 + 16 * 4 + 4 + 16 + 3
    assert adapter_cycles(16, 4, multipliers=16) == adapter_cycles(16, 4)
    assert adapter_cycles(16, 4, multipliers=64) == adapter_cycles(16, 4) + 48


def test_a_changed_golden_value_is_reported_by_case_node_array_sample_and_index(runs):
    name, nd, run, exp, _ = runs[0]
    bad = dict(exp, beta=exp["beta"].copy(), P=exp["P"].copy())
    bad["beta"][5] += 1
    bad["P"][2, 7] ^= 1
    got = compare_run(name, nd["name"], run, bad)
    assert (name, "q1_adapter", "P", 2, (7,), int(bad["P"][2, 7]), int(run.P[2, 7])) in got
    assert (name, "q1_adapter", "beta", 5, (), int(bad["beta"][5]), int(run.beta[5])) in got
    assert len(got) == 2


def test_a_changed_input_code_changes_the_pool_sum(unit):
    exe, ports = unit
    node, params, z, mults, exp = _small_adapter(0, 3, 1, 4)
    z = z.copy()
    z[1, 2, 0, 0] ^= 1 << 10
    run = run_adapter(BUILD, exe, ports, node, params, z, 9, mults)
    found = [b[:5] for b in compare_run("small", node["name"], run, exp)]
    assert ("small", node["name"], "S", 1, (2,)) in found


def test_the_unit_verilog_passes_verilator_lint_wall(tmp_path):
    text, module, _ = render(BUILD)
    (tmp_path / "adapter.v").write_text(text)
    lint(tmp_path / "adapter.v", module)


def test_conform_rtl_unit_adapter_passes_the_bundled_network(capsys):
    assert main(["conform", "--rtl", "--unit", "adapter", "-q", str(BUNDLED)]) == 0
    out = capsys.readouterr().out
    assert "3 adapters: 0 mismatches; cycle model off in 0 samples" in out and "PASS: bit-exact" in out


def test_conform_rtl_unit_adapter_names_a_wrong_golden_beta_and_exits_1(tmp_path, capsys):
    net = read_network(BUNDLED)
    vec = dict(net.vectors)
    vec["vec/q2_adapter/beta"] = vec["vec/q2_adapter/beta"].copy()
    vec["vec/q2_adapter/beta"][3] += 1
    write_network(tmp_path / "bad.npz", net.manifest, net.params, vec)
    assert main(["conform", "--rtl", "--unit", "adapter", "-q", str(tmp_path / "bad.npz")]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH digits_cnn_asq_post4 q2_adapter beta[sample 3]" in out and "FAIL" in out


def test_conform_rtl_unit_adapter_rejects_a_layer_case_in_one_line(capsys):
    corpus = BUNDLED.parent.parent / "vectors"
    assert main(["conform", "--rtl", "--unit", "adapter", str(corpus)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"asqhw: error: {corpus}: not a network export; "
                   "--unit adapter checks the adapters of networks"]


def test_conform_rtl_unit_adapter_refuses_a_network_without_adapters(tmp_path, capsys):
    m, p = random_network(5, channels=4, samples=2, asq=False)
    v = netref.run_network((m, p), random_input(5, m, 2))
    v |= {"vec/labels": np.arange(2) % 10, "vec/qat_logits": np.zeros((2, 10), dtype=np.float32)}
    write_network(tmp_path / "lsq.npz", dict(m, samples=2), p, v)
    assert main(["conform", "--rtl", "--unit", "adapter", str(tmp_path / "lsq.npz")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == \
        [f"asqhw: error: {tmp_path / 'lsq.npz'}: network has no adapter nodes"]


def test_a_build_larger_than_the_unit_allows_is_refused_by_name():
    with pytest.raises(ValueError, match=r"max_channels must be in 1\.\.256, not 300"):
        AdapterConfig(300, 8, 64).check()
    with pytest.raises(ValueError, match=r"max_hw must be"):
        AdapterConfig(32, 8, 1 << 21).check()
