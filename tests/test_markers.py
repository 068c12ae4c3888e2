"""The test markers of conftest.py name real tests and modules, so that no mark is lost to a rename."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import RTL_MODULES, SLOW_TESTS, _matches

TESTS = Path(__file__).parent


def _functions(module: str) -> set[str]:
    tree = ast.parse((TESTS / module).read_text())
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_slow_test_exists():
    missing = [t for t in SLOW_TESTS if t.split("::")[1] not in _functions(t.split("::")[0])]
    assert missing == []


def test_every_rtl_name_matches_a_test_module():
    modules = [p.stem for p in TESTS.glob("test_*.py")]
    assert [n for n in RTL_MODULES if not any(_matches(m, [n]) for m in modules)] == []


def test_a_slow_test_is_not_also_rtl():
    assert [t for t in SLOW_TESTS if _matches(t.split(".py::")[0], RTL_MODULES)] == []


def test_the_matcher_takes_names_and_prefixes():
    assert _matches("test_hdl_dot", ["test_hdl_"]) and _matches("test_engine", ["test_engine"])
    assert not _matches("test_engine_core", ["test_engine"]) and not _matches("test_sim_x", ["test_hdl_"])
