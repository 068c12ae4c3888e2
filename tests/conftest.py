"""Shared fixtures (a tiny hand-computed case writer for format and CLI tests) and the test markers.

Markers (declared in pyproject.toml): ``rtl`` on every module that builds or simulates
hardware (Amaranth's simulator, Verilog, Verilator, yosys/nextpnr), ``slow`` on the single
tests that take 20 s or more without ``rtl``. ``pytest -m "not rtl"`` is the inner loop,
``-m "not rtl and not slow"`` a faster one; ``make test`` runs everything.
"""

from __future__ import annotations

import numpy as np
import pytest

from asqhw.core.params import Datapath
from asqhw.core.vectors import write_case


#: Modules (by name or name prefix) that build or simulate hardware.
RTL_MODULES = ("test_hdl_", "test_accel_", "test_board_", "test_rtl_contract", "test_verilog", "test_cosim",
               "test_engine", "test_engine_verilog", "test_engine_adapter", "test_synth", "test_caches",
               "test_dask_jobs")
#: Tests (``module.py::function``) outside RTL_MODULES that take 20 s or more.
SLOW_TESTS = (
    "test_cross_model.py::test_every_path_of_the_numba_model_equals_the_pytorch_integer_reference",
    "test_cross_model.py::test_packed_split_paths_equal_the_pytorch_integer_reference",
    "test_sim_cache.py::test_a_fresh_process_loads_both_direct_entry_points_from_the_disk_cache",
    "test_sim_layers.py::test_int_path_equals_exact_kernel_or_refuses",
    "test_sim_threads.py::test_a_threading_layer_the_user_sets_is_kept",
    "test_import_authors.py::test_the_command_imports_the_layout_and_runs_qat_on_an_image_folder",
    "test_import_authors.py::test_the_torchvision_layout_computes_torchvisions_resnet18",
    "test_cli.py::test_golden_export_reproduces_the_bundled_corpus",
    "test_golden_corpus.py::test_exporting_seed_0_reproduces_every_committed_file",
    "test_netexport.py::test_resnet20_export_has_projection_and_identity_adds",
)


def _matches(module: str, names) -> bool:
    return any(module == n or (n.endswith("_") and module.startswith(n)) for n in names)


def pytest_collection_modifyitems(config, items):
    """Mark each test ``rtl`` by its module (:data:`RTL_MODULES`) and ``slow`` by name (:data:`SLOW_TESTS`)."""
    for item in items:
        module = item.path.stem
        if _matches(module, RTL_MODULES):
            item.add_marker(pytest.mark.rtl)
        if f"{module}.py::{getattr(item, 'originalname', item.name)}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def tiny_manifest(**over) -> dict:
    """A 2x3 -> 2 uniform linear layer manifest (4-bit codes, 4-bit unsigned out)."""
    dp = Datapath(fmt="uniform", a_bits=4, w_bits=4)
    m = {
        "name": "tiny_uniform_linear", "description": "hand case for tests", "tags": [],
        "layer": {"kind": "linear", "in_features": 3, "out_features": 2}, "batch": 2,
        "activation": {"bits": 4, "signed": False},
        "weights": {"format": "uniform", "bits": 4, "e_max": None, "arch": "mul", "frac_bits": 0,
                    "storage_bits": 4},
        "accumulator": {"bits": dp.natural_acc_bits(3), "natural_bits": dp.natural_acc_bits(3), "count": 1},
        "output": {"bits": 4, "signed": False, "lo": 0, "hi": 15},
        "requant": {"rounding": "ties_toward_plus_inf", "m_bits": 16},
        "scales": {"s": 0.1, "beta": 1.0, "s_out": 0.2},
    }
    m.update(over)
    return m


def tiny_arrays() -> dict:
    """Arrays for tiny_manifest, expected values computed by hand from the spec."""
    x = np.array([[1, 2, 3], [15, 0, 7]], dtype=np.int16)
    w = np.array([[1, -2, 3], [-8, 7, 0]], dtype=np.int16)
    acc = (x.astype(np.int64) @ w.T.astype(np.int64))[None]          # [[6, 6], [36, -120]]
    M = np.array([[32768], [40000]], dtype=np.int64)
    B = np.array([0, 100000], dtype=np.int64)
    sh = np.array([16, 17], dtype=np.int64)
    t = M[:, 0][None] * acc[0] + B[None]
    y = np.clip((t + (1 << (sh[None] - 1))) >> sh[None], 0, 15).astype(np.int16)
    return {"x": x, "w": w, "M": M, "B": B, "sh": sh, "acc": acc, "y": y,
            "alpha": np.ones(2), "bias": np.zeros(2), "y_float": y.astype(np.float32) * 0.2}


@pytest.fixture
def tiny_case(tmp_path):
    """Path of a valid tiny case file."""
    path = tmp_path / "tiny.npz"
    write_case(path, tiny_manifest(), tiny_arrays())
    return path


def run(capsys, *argv):
    """``asqhw`` on ``argv`` in this process: exit status, stdout, stderr."""
    from asqhw.cli.main import main
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, fragment):
    """Exit 2 and one stderr line ``asqhw: error: ...`` that names ``fragment``; no traceback."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("asqhw: error:"), err
    assert fragment in lines[0]
    assert "Traceback" not in err
