"""The asqhw command line: what a user sees, including every bad-input path."""

import json
import subprocess
import sys

import numpy as np

from asqhw.core.vectors import read_case, write_case
from conftest import assert_one_line_error, run, tiny_arrays, tiny_manifest




def test_conform_passes_a_correct_case(capsys, tiny_case):
    code, out, _ = run(capsys, "conform", str(tiny_case))
    assert code == 0
    assert "tiny_uniform_linear" in out and "0 mismatches" in out and "PASS" in out


def test_conform_fails_and_names_a_mutated_vector(capsys, tmp_path):
    arrays = tiny_arrays()
    arrays["y"] = arrays["y"].copy()
    arrays["y"][1, 0] += 1                       # expected code off by one at (1, 0)
    path = tmp_path / "mutated.npz"
    write_case(path, tiny_manifest(), arrays)
    code, out, _ = run(capsys, "conform", str(path))
    assert code == 1
    expected = int(arrays["y"][1, 0])
    assert f"MISMATCH tiny_uniform_linear: y[1,0] expected {expected} got {expected - 1}" in out
    assert "FAIL" in out


def test_conform_fails_on_a_mutated_accumulator(capsys, tmp_path):
    arrays = tiny_arrays()
    arrays["acc"] = arrays["acc"].copy()
    arrays["acc"][0, 0, 1] -= 3
    path = tmp_path / "mutated_acc.npz"
    write_case(path, tiny_manifest(), arrays)
    code, out, _ = run(capsys, "conform", str(path))
    assert code == 1 and "acc[0,0,1]" in out


def test_conform_json_is_machine_readable(capsys, tiny_case):
    code, out, _ = run(capsys, "conform", "--json", str(tiny_case))
    data = json.loads(out)
    assert code == 0 and data["summary"]["mismatches"] == 0 and data["summary"]["vectors"] == 4
    assert data["cases"][0]["case"] == "tiny_uniform_linear"


def test_missing_path_is_one_line_error(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "conform", str(tmp_path / "missing.npz"))[::2], "no such file")


def test_path_without_cases_is_one_line_error(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "conform", str(tmp_path))[::2], "holds no case files")


def test_truncated_archive_is_one_line_error(capsys, tiny_case):
    tiny_case.write_bytes(tiny_case.read_bytes()[:200])
    assert_one_line_error(*run(capsys, "conform", str(tiny_case))[::2], "truncated or corrupt")


def test_out_of_range_code_is_one_line_error(capsys, tiny_case):
    case = read_case(tiny_case)
    arrays = dict(case.arrays)
    arrays["x"] = arrays["x"].copy()
    arrays["x"][0, 0] = 99
    import io, zipfile
    buf = io.BytesIO()
    np.save(buf, arrays["x"])
    with zipfile.ZipFile(tiny_case) as zf:
        items = [(n, zf.read(n)) for n in zf.namelist()]
    with zipfile.ZipFile(tiny_case, "w") as zf:
        for n, b in items:
            zf.writestr(n, buf.getvalue() if n == "x.npy" else b)
    assert_one_line_error(*run(capsys, "conform", str(tiny_case))[::2], "activation code 99")


def test_impossible_bit_width_is_one_line_error(capsys):
    assert_one_line_error(*run(capsys, "levels", "--weights", "post", "--bits", "12")[::2], "weight bits")


def test_levels_lists_the_post_set(capsys):
    code, out, _ = run(capsys, "levels", "--weights", "post", "--bits", "4")
    assert code == 0
    assert "15 levels" in out and "+0.707107" in out and "-0.125000" in out


def test_levels_eq17_set_has_two_more_levels(capsys):
    code, out, _ = run(capsys, "levels", "--weights", "post", "--bits", "4", "--e-max", "7", "--json")
    data = json.loads(out)
    assert len({r["level"] for r in data["levels"]}) == 17 and data["storage_bits"] == 5


def test_levels_plot_writes_a_png_and_never_overwrites(capsys, tmp_path):
    png = tmp_path / "levels.png"
    assert run(capsys, "levels", "--weights", "post", "--bits", "4", "--plot", str(png))[0] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_one_line_error(*run(capsys, "levels", "--weights", "post", "--bits", "4",
                               "--plot", str(png))[::2], "exists")


def test_entry_point_exits_nonzero_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "asqhw.cli", "conform", str(tmp_path / "x.npz")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "no such file" in proc.stderr


def test_golden_export_reproduces_the_bundled_corpus(capsys, tmp_path):
    from asqhw.cli.common import default_corpus

    code, out, _ = run(capsys, "golden", "export", "--out", str(tmp_path), "-q")
    assert code == 0 and "wrote 86 cases" in out
    bundled = default_corpus()
    for f in sorted(bundled.glob("*.npz")):
        assert (tmp_path / f.name).read_bytes() == f.read_bytes(), f.name


def test_golden_export_never_overwrites_a_different_file(capsys, tmp_path):
    assert run(capsys, "golden", "export", "--out", str(tmp_path), "-q",
               "--case", "post4_split_lin72")[0] == 0
    target = tmp_path / "post4_split_lin72.npz"
    target.write_bytes(b"user data")
    assert_one_line_error(*run(capsys, "golden", "export", "--out", str(tmp_path), "-q",
                               "--case", "post4_split_lin72")[::2], "post4_split_lin72")
    assert target.read_bytes() == b"user data"


def test_verilog_refuses_to_overwrite_and_rejects_bad_widths(capsys, tmp_path):
    argv = ["verilog", "--unit", "dot", "--weights", "post", "--mode", "split", "--lanes", "4",
            "-o", str(tmp_path)]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and out.strip().endswith(".json")
    assert_one_line_error(*run(capsys, *argv)[::2], "--force")
    assert_one_line_error(*run(capsys, *argv[:-2], "--w-bits", "12", "-o", str(tmp_path / "x"))[::2],
                          "weight bits")
