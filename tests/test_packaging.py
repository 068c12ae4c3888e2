"""asq-hw installs one top-level name, ``asqhw``: asqhw/sim/, asqhw/golden/ and asqhw/hdl/ are its subpackages."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


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
