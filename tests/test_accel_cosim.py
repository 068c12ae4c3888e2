"""The network accelerator in Verilator: bit-exact against the golden vectors, cycles equal to the model.

Three builds (about two minutes each cold on the shared machine, cached afterwards): the
bundled digits network at 8 lanes; a random network with a residual ``add``, a padded stride-2
max pool and a grouped conv (tests/netcases.py, post split, three adapters) at 4 lanes; the same
topology with uniform weights and no adapters (LSQ quant). Vectors from ``golden.netref``. The
first two run with random valid/ready stalls on ``s_in`` and ``m_out``, the third with
``CTRL.START`` and without stalls. The full bundled run is
``asqhw conform --rtl --unit network --stall`` (12 samples).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asqhw.core.network import FORMAT, FORMAT_VERSION, Network, read_network, validate, write_network
from asqhw.core.spec import SPEC_VERSION
from asqhw.golden import netref
from asqhw.hdl.accel import cosim, program
from asqhw.hdl.accel.cycles import image_cycles
from asqhw.hdl.verilator import lint

from conftest import assert_one_line_error, run
from netcases import FORMATS, random_input, random_network

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "asqhw" / "golden" / "networks" / "digits_cnn_asq_post4.npz"

pytestmark = [pytest.mark.rtl, pytest.mark.slow]


def _residual_net(samples: int = 2, seed: int = 0, fmt=FORMATS[2], asq: bool = True) -> Network:
    m, p = random_network(seed, fmt=fmt, samples=samples, asq=asq)
    v = netref.run_network((m, p), random_input(seed, m, samples))
    v |= {"vec/labels": np.zeros(samples, dtype=np.int64), "vec/qat_logits": np.zeros((samples, 10), dtype=np.float32)}
    m = dict(m, format=FORMAT, format_version=FORMAT_VERSION, spec_version=SPEC_VERSION, samples=samples)
    return Network(m, p, v, validate(m))


@pytest.fixture(scope="module")
def digits():
    return read_network(BUNDLED)


@pytest.fixture(scope="module")
def digits_run(digits):
    return cosim.run_network(digits, program.build(digits, 8), samples=3, stall=True)


@pytest.fixture(scope="module")
def residual():
    return _residual_net()


@pytest.fixture(scope="module")
def lsq():
    """Uniform weights, no adapters: every quant a static rounding shift (spec section 14, LSQ)."""
    return _residual_net(seed=2, fmt=FORMATS[0], asq=False)


@pytest.fixture(scope="module")
def residual_run(residual):
    return cosim.run_network(residual, program.build(residual, 4), stall=True)


def test_digits_network_is_bit_exact_with_stalls(digits_run):
    assert digits_run.mismatches == 0, [str(m) for m in digits_run.listed]
    assert digits_run.values > 30000       # every layer, quant, adapter value and logit of 3 samples
    assert digits_run.images == 3


def test_digits_cycles_equal_the_model_in_every_sample_and_step(digits, digits_run):
    model = image_cycles(program.build(digits, 8))
    assert digits_run.cycles == [model.total] * 3 == [76716] * 3
    assert digits_run.steps == [s.total for s in model.steps]
    assert digits_run.step_errors == 0
    assert digits_run.step_phases == [s.phases for s in model.steps]


def test_residual_network_is_bit_exact_and_exactly_timed(residual, residual_run):
    assert [s.op for s in program.build(residual, 4).steps].count("VEC") == 3       # add, max pool, avg pool
    assert residual_run.mismatches == 0, [str(m) for m in residual_run.listed]
    assert residual_run.cycles == [image_cycles(program.build(residual, 4)).total] * 2
    assert residual_run.step_errors == 0


def test_a_changed_golden_value_is_named_by_node_sample_and_index(digits):
    vec = dict(digits.vectors)
    vec["vec/conv2"] = vec["vec/conv2"].copy()
    vec["vec/conv2"][1].reshape(-1)[37] += 1
    r = cosim.run_network(digits, program.build(digits, 8), samples=2, vectors=vec)
    assert r.mismatches == 1
    m = r.listed[0]
    assert (m.node, m.array, m.sample, m.index) == ("conv2", "codes", 1, (37,))
    assert m.expected == m.got + 1


def test_a_changed_beta_is_seen_in_beta_r_and_every_multiplier(digits):
    vec = dict(digits.vectors)
    vec["vec/q2_adapter/beta"] = vec["vec/q2_adapter/beta"].copy()
    vec["vec/q2_adapter/beta"][0] += 1
    r = cosim.run_network(digits, program.build(digits, 8), samples=1, vectors=vec)
    assert r.by_array[("q2_adapter", "beta")] == 1
    assert r.by_array[("q2_adapter", "Mn")] >= 32          # most of the 64 multipliers move with beta
    assert set(r.by_array) <= {("q2_adapter", k) for k in ("beta", "R", "sh", "Mn")}


def test_a_wrong_cycle_model_is_caught(digits, monkeypatch):
    import asqhw.hdl.accel.cosim as cs
    from asqhw.hdl.accel import cycles as cyc

    monkeypatch.setattr(cyc, "STEP_OVERHEAD", 3)
    monkeypatch.setattr(cs, "image_cycles", cyc.image_cycles)
    r = cosim.run_network(digits, program.build(digits, 8), samples=1)
    assert r.step_errors == len(program.build(digits, 8).steps)
    assert r.mismatches == 0


def test_lsq_network_runs_on_ctrl_start_bit_exact_and_exactly_timed(lsq):
    assert not any(nd["op"] == "adapter" for nd in lsq.nodes)
    r = cosim.run_network(lsq, program.build(lsq, 4), manual_start=True)
    assert r.mismatches == 0 and r.images == 2, [str(m) for m in r.listed]
    assert r.cycles == [image_cycles(program.build(lsq, 4)).total] * 2 and r.step_errors == 0


def test_streams_without_stalls_give_the_modelled_image_period(lsq):
    r = cosim.run_network(lsq, program.build(lsq, 4))
    assert r.mismatches == 0
    assert r.transfers["period_measured"] == r.transfers["period_model"]


def test_accelerator_verilog_lints_clean(tmp_path, residual):
    text, _ports = cosim.render(program.build(residual, 4), "asqhw_accel_lint")
    path = tmp_path / "asqhw_accel_lint.v"
    path.write_text(text)
    lint(path, "asqhw_accel_lint")


def test_conform_command_reports_pass_and_json(tmp_path, capsys, residual):
    path = tmp_path / "res.npz"
    write_network(path, residual.manifest, residual.params, residual.vectors)
    code, out, err = run(capsys, "conform", "--rtl", "--unit", "network", "--lanes", "4", "--json", "-q", str(path))
    assert code == 0, err
    rec = json.loads(out)["networks"][0]
    assert rec["mismatches"] == 0 and rec["model_errors"] == 0 and rec["samples"] == 2
    assert all(s["model"] == s["measured"] for s in rec["steps"])


def test_conform_network_without_vectors_is_one_line_error(tmp_path, capsys, residual):
    path = tmp_path / "novec.npz"
    m = dict(residual.manifest, samples=0)
    write_network(path, m, residual.params)
    code, _, err = run(capsys, "conform", "--rtl", "--unit", "network", str(path))
    assert_one_line_error(code, err, "no golden vectors")
