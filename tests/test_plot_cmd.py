"""`asqhw plot` (asqhw/plot_cmd.py, asqhw/golden/plots.py, asqhw/betadist.py): PNGs, numbers, no overwriting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asqhw.cli.betadist import beta_stats
from asqhw.cli.common import default_networks
from asqhw.cli.main import main
from asqhw.core.network import read_network

BUNDLED = default_networks() / "digits_cnn_asq_post4.npz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny LSQ and ASQ 2-bit digits checkpoints sharing one float network."""
    import torch

    from asqhw.golden.qat.checkpoint import save_checkpoint
    from asqhw.golden.qat.data import load_digits
    from asqhw.golden.qat.scheme import Scheme
    from asqhw.golden.qat.train import train

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("ckpt")
    data = load_digits()
    lsq = train(data, Scheme("lsq", 2), float_epochs=1, qat_epochs=1, subset=64, progress=False, samples=8)
    asq = train(data, Scheme("asq", 2), qat_epochs=1, subset=64, float_state=lsq["float_state"], progress=False,
                samples=8)
    save_checkpoint(d / "lsq.pt", lsq)
    save_checkpoint(d / "asq.pt", asq)
    return str(d / "lsq.pt"), str(d / "asq.pt")


def _one_line_error(capsys, argv, text):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asqhw: error:") and text in err[0], err


def _is_png(path):
    return path.read_bytes()[:8] == PNG_MAGIC


def test_activations_writes_a_png_with_beta_per_image_and_codes_in_use(checkpoints, tmp_path, capsys):
    lsq, asq = checkpoints
    out = tmp_path / "fig4.png"
    assert main(["plot", "activations", "--lsq", lsq, "--asq", asq, "--images", "1", "--out", str(out),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert _is_png(out)
    assert res["lsq"]["beta"] == [1.0]
    assert len(res["asq"]["beta"]) == 1 and res["asq"]["beta"][0] > 0
    assert all(1 <= n <= 4 for n in res["lsq"]["codes_in_use"] + res["asq"]["codes_in_use"])


def test_block_error_writes_a_png_with_one_error_per_block_and_scheme(checkpoints, tmp_path, capsys):
    lsq, asq = checkpoints
    out = tmp_path / "fig5.png"
    assert main(["plot", "block-error", "--lsq", lsq, "--asq", asq, "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert _is_png(out)
    assert res["lsq"]["blocks"] == res["asq"]["blocks"] == ["conv1", "conv2", "pool", "conv3", "gap", "fc"]
    assert all(e > 0 for e in res["lsq"]["mean"] + res["asq"]["mean"])


@pytest.mark.parametrize("figure", ["activations", "block-error"])
def test_checkpoint_figures_refuse_to_overwrite_without_force(checkpoints, tmp_path, capsys, figure):
    lsq, asq = checkpoints
    out = tmp_path / "fig.png"
    out.write_bytes(b"mine")
    _one_line_error(capsys, ["plot", figure, "--lsq", lsq, "--asq", asq, "--out", str(out)], "--force")
    assert out.read_bytes() == b"mine"


def test_force_overwrites_a_figure(checkpoints, tmp_path, capsys):
    lsq, asq = checkpoints
    out = tmp_path / "fig.png"
    out.write_bytes(b"mine")
    assert main(["plot", "block-error", "--lsq", lsq, "--asq", asq, "--out", str(out), "--force"]) == 0
    assert _is_png(out)


def test_the_lsq_and_asq_checkpoints_must_not_be_swapped(checkpoints, tmp_path, capsys):
    lsq, asq = checkpoints
    _one_line_error(capsys, ["plot", "activations", "--lsq", asq, "--asq", lsq, "--out", str(tmp_path / "x.png")],
                    "without adapters")


def test_beta_writes_a_png_and_reports_the_range_of_beta_q_per_adapter(tmp_path, capsys):
    out = tmp_path / "beta.png"
    assert main(["plot", "beta", "--model", str(BUNDLED), "--limit", "40", "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert _is_png(out)
    assert res["images"] == 40
    assert [r["adapter"] for r in res["adapters"]] == ["q1_adapter", "q2_adapter", "q3_adapter"]
    for r in res["adapters"]:
        p = r["percentiles"]
        assert 1 <= r["min"] <= p["1"] <= p["50"] <= p["99"] <= r["max"] <= (1 << r["beta_bits"]) - 1
        assert r["bits_used"] == r["max"].bit_length()


def test_beta_stats_count_the_clamp_bounds_and_the_divider_width():
    net = read_network(BUNDLED)
    betas = {"q1_adapter": np.array([1, 1, 5, 1023, 300], dtype=np.int64)}
    (r,) = beta_stats(net, betas)
    assert (r["min"], r["max"], r["at_floor"], r["at_ceiling"], r["distinct"]) == (1, 1023, 2, 1, 4)
    assert r["L_range"] == [1, 10] and r["percentiles"]["50"] == 5
    assert r["beta_max"] == 1023 / 256


def test_beta_refuses_to_overwrite_without_force_and_needs_adapters(tmp_path, capsys):
    out = tmp_path / "beta.png"
    out.write_bytes(b"mine")
    _one_line_error(capsys, ["plot", "beta", "--model", str(BUNDLED), "--out", str(out)], "--force")
    assert out.read_bytes() == b"mine"
    _one_line_error(capsys, ["plot", "beta", "--model", str(BUNDLED), "--out", str(tmp_path / "b.jpg")], ".png")
