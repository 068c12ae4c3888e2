"""`asqhw results` (asqhw/results_cmd.py): a tiny configuration gives a well-formed table."""

from __future__ import annotations

import json

import pytest

from asqhw.cli.main import main

TINY = ["results", "--schemes", "asq+post", "--bits", "2", "--epochs", "1,1", "--subset", "64", "--limit", "48",
        "--samples", "2", "-q"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One row (ASQ+POST 2-bit, 1+1 epochs on 64 training images, 48 test images), JSON and markdown."""
    import contextlib
    import io

    import torch

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("results")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(TINY + ["--json", "--work", str(d / "work"), "--out", str(d / "results.md")])
    return rc, json.loads(out.getvalue()), (d / "results.md").read_text(), d


def test_a_tiny_configuration_measures_one_well_formed_row(tiny):
    rc, res, _, _ = tiny
    assert rc == 0
    (row,) = res["rows"]
    assert (row["scheme"], row["bits"], row["images"]) == ("asq+post", 2, 48)
    for key in ("float_acc", "qat_acc", "int_acc", "agreement"):
        assert 0.0 <= row[key] <= 100.0
    assert row["disagree"] == round(48 * (100 - row["agreement"]) / 100)
    assert row["gap"] == pytest.approx(row["int_acc"] - row["qat_acc"])
    assert row["golden_vectors"] > 0 and row["golden_mismatches"] == 0
    assert res["epochs"] == [1, 1]


def test_the_markdown_holds_the_command_and_one_table_row_per_measurement(tiny):
    _, res, md, _ = tiny
    assert res["command"] in md
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| scheme | bits | float % | QAT % | integer % | int - QAT | agreement %")
    assert len(lines) == 2 and lines[1].startswith("| ASQ+POST | 2 | ")
    assert len(lines[1].split("|")) == len(lines[0].split("|"))


def test_the_work_directory_keeps_the_checkpoint_and_the_export(tiny):
    d = tiny[3] / "work"
    assert sorted(p.name for p in d.iterdir()) == ["digits_cnn_asq_post2.npz", "digits_cnn_asq_post2.pt"]


def test_an_existing_table_is_not_overwritten_without_force(tiny, capsys):
    out = tiny[3] / "results.md"
    before = out.read_text()
    assert main(TINY + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asqhw: error:") and "--force" in err[0]
    assert out.read_text() == before


def test_an_unknown_scheme_is_a_one_line_error(capsys):
    assert main(["results", "--schemes", "lsq,apot", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apot" in err[0]
