"""The package: one import root ``asqhw``, a core that needs no torch, extras, a licence."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=~!;]", requirement, maxsplit=1)[0].lower()


def test_every_installed_package_lives_under_asqhw():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["packages"]["find"]["include"] == ["asqhw*"]
    assert "package-dir" not in cfg
    assert {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} == {"asqhw"}


def test_no_module_imports_a_top_level_sim_golden_or_hdl():
    code = ("import sys, asqhw.cli, asqhw.sim, asqhw.golden.netref, asqhw.golden.qat.train, "
            "asqhw.hdl.engine.top, asqhw.hdl.synth, asqhw.hdl.cosim; "
            "print(sorted(m for m in ('sim', 'golden', 'hdl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_old_import_paths_are_gone():
    for name in ("asqhw.asqhw", "asqhw.tests"):
        out = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr, name


def test_core_dependencies_are_what_conform_needs():
    assert {_name(r) for r in PROJECT["dependencies"]} <= {"numpy", "numba", "tqdm", "tbb", "threadpoolctl"}


def test_torch_is_a_range_in_the_train_extra_not_a_pin():
    torch = [r for r in PROJECT["optional-dependencies"]["train"] if _name(r) == "torch"]
    assert len(torch) == 1 and "==" not in torch[0] and ">=" in torch[0]
    everywhere = PROJECT["dependencies"] + sum(PROJECT["optional-dependencies"].values(), [])
    assert not any("==" in r.split(";")[0] for r in everywhere)


def test_extras_cover_the_optional_groups():
    extras = PROJECT["optional-dependencies"]
    assert {"train", "rtl", "dask", "test", "all"} <= set(extras)
    assert "amaranth" in {_name(r) for r in extras["rtl"]}
    assert {"dask", "distributed"} <= {_name(r) for r in extras["dask"]}
    assert extras["all"] == ["asq-hw[train,rtl,dask,test]"]


def test_the_makefile_installs_the_pinned_torch_before_the_package():
    text = (ROOT / "Makefile").read_text()
    pin = re.search(r"^TORCH_PIN \?= (torch==[\d.]+)$", text, re.M)
    assert pin, "Makefile pins torch in TORCH_PIN"
    assert text.index("pip install -q '$(TORCH_PIN)'") < text.index("pip install -q -e '.[all]'")


def test_the_licence_is_the_one_pyproject_names():
    assert PROJECT["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, capture_output=True)
    (path,) = out.glob("asq_hw-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_has_one_import_root_and_the_bundled_data(wheel):
    names = wheel.namelist()
    roots = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert roots == {"asqhw"}
    assert "asqhw/golden/vectors/index.json" in names
    assert "asqhw/golden/networks/digits_cnn_asq_post4.npz" in names
    assert not any("__pycache__" in n or n.startswith("asqhw/tests") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_a_missing_optional_package_ends_in_one_line_that_names_its_extra(capsys, monkeypatch):
    import asqhw.cli.main as cli
    from conftest import assert_one_line_error, run

    def needs_amaranth(args):
        raise ModuleNotFoundError("No module named 'amaranth'", name="amaranth")

    monkeypatch.setattr(cli, "cmd_conform", needs_amaranth)
    code, out, err = run(capsys, "conform")
    assert_one_line_error(code, err, "needs amaranth, which is not installed: pip install 'asq-hw[rtl]'")
    assert set(cli.EXTRAS.values()) <= set(PROJECT["optional-dependencies"])


def test_a_missing_module_of_asqhw_itself_is_still_a_traceback(capsys, monkeypatch):
    import asqhw.cli.main as cli

    def broken(args):
        raise ModuleNotFoundError("No module named 'asqhw.nothing'", name="asqhw.nothing")

    monkeypatch.setattr(cli, "cmd_conform", broken)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["conform"])
