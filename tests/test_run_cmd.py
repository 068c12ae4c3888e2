"""`asqhw run` (asqhw/run_cmd.py, asqhw/core/datasets.py): data to input codes, accuracy, agreement, bad input."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest

from asqhw.cli.main import main
from asqhw.core.datasets import input_codes, load_test_set
from asqhw.core.network import read_network, write_network
from asqhw.core.params import Datapath
from netcases import random_input, random_network
from asqhw.sim.network import predict, run_network, set_threads


def _digits_net(path, samples=0, meta=None):
    """A random network reshaped to the digits' 1x8x8 input (first conv reads one channel)."""
    manifest, params = random_network(1, size=8)
    manifest["meta"] = meta or {}
    manifest["input"] |= {"shape": [1, 8, 8], "mean": [0.3], "std": [0.4], "step": 1 / 40}
    c1 = manifest["nodes"][0]
    w = c1["weights"]
    dp = Datapath(fmt=w["format"], a_bits=8, w_bits=w["bits"], arch=w["arch"], a_signed=True, e_max=w["e_max"],
                  frac_bits=w["frac_bits"])
    c1 |= {"in_channels": 1, "accumulator": {"bits": dp.natural_acc_bits(9)}}
    params["c1/w"] = params["c1/w"][:, :1]
    write_network(path, manifest, params)
    if samples:
        x = random_input(1, manifest, samples)
        vec = run_network(read_network(path), x)
        vec |= {"vec/labels": np.zeros(samples), "vec/qat_logits": vec["vec/fc"].astype(np.float32)}
        write_network(path, manifest | {"samples": samples}, params, vec)
    return path


def _run_json(capsys, *argv):
    assert main(["run", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def _one_line_error(capsys, argv, text):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asqhw: error:") and text in err[0], err


def test_input_codes_round_half_to_even_and_clamp():
    inp = {"shape": [1, 1, 6], "mean": [0.5], "std": [0.25], "step": 0.5}
    # (x - 0.5) / 0.25 / 0.5 = 8x - 4: x = 0.5625 -> 0.5 -> 0, 0.6875 -> 1.5 -> 2, 0.4375 -> -0.5 -> 0,
    # 0.3125 -> -1.5 -> -2, 20 -> 156 -> 127, -20 -> -164 -> -128
    x = np.array([0.5625, 0.6875, 0.4375, 0.3125, 20.0, -20.0]).reshape(1, 1, 1, 6)
    assert input_codes(x, inp).tolist() == [[[[0, 2, 0, -2, 127, -128]]]]


def test_digits_test_split_is_the_documented_permutation():
    from sklearn.datasets import load_digits

    x, y, _ = load_test_set("digits")
    idx = np.random.default_rng(20240).permutation(1797)[:360]
    d = load_digits()
    assert x.shape == (360, 1, 8, 8) and np.array_equal(x[:, 0] * 16, d.images[idx])
    assert np.array_equal(y, d.target[idx])


def test_run_reports_the_integer_accuracy_over_the_digits_test_split(tmp_path, capsys):
    path = _digits_net(tmp_path / "d.npz")
    rec = _run_json(capsys, "--model", str(path), "--batch", "100")
    x, y, _ = load_test_set("digits")
    net = read_network(path)
    correct = int(np.count_nonzero(predict(net, input_codes(x, net.manifest["input"])) == y))
    assert (rec["images"], rec["correct"]) == (360, correct)
    assert rec["accuracy"] == round(correct / 360, 6) and rec["images_per_second"] > 0
    assert rec["qat_agreement"] is None


def test_limit_takes_the_first_images(tmp_path, capsys):
    rec = _run_json(capsys, "--model", str(_digits_net(tmp_path / "d.npz")), "--limit", "37")
    assert rec["images"] == 37


def test_agreement_with_qat_is_measured_on_the_golden_samples(tmp_path, capsys):
    path = _digits_net(tmp_path / "d.npz", samples=5)
    rec = _run_json(capsys, "--model", str(path), "--limit", "10")
    assert (rec["qat_agreement"], rec["qat_agreement_samples"]) == (1.0, 5)
    net = read_network(path)
    qat = net.vectors["vec/qat_logits"].copy()
    qat[0] = 0
    qat[0, (int(np.argmax(net.vectors["vec/fc"][0])) + 1) % 10] = 1   # QAT now disagrees on sample 0
    write_network(path, net.manifest, net.params, net.vectors | {"vec/qat_logits": qat})
    rec = _run_json(capsys, "--model", str(path), "--limit", "10")
    assert rec["qat_agreement"] == 0.8


def _cifar_dir(tmp_path, n=6, obj=None):
    d = tmp_path / "cifar"
    d.mkdir()
    rng = np.random.default_rng(0)
    obj = obj if obj is not None else {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                                       b"labels": [int(v) for v in rng.integers(0, 10, size=n)]}
    (d / "test_batch").write_bytes(pickle.dumps(obj, protocol=2))
    return d


def test_run_reads_the_cifar10_test_batch(tmp_path, capsys):
    manifest, params = random_network(2, size=32, channels=4)
    write_network(tmp_path / "c.npz", manifest, params)
    rec = _run_json(capsys, "--model", str(tmp_path / "c.npz"), "--data", f"cifar10:{_cifar_dir(tmp_path)}")
    assert rec["images"] == 6


def test_a_cifar_batch_with_foreign_pickle_globals_is_refused(tmp_path, capsys):
    manifest, params = random_network(2, size=32, channels=4)
    write_network(tmp_path / "c.npz", manifest, params)
    d = _cifar_dir(tmp_path, obj={b"data": zipfile.ZipFile, b"labels": []})
    _one_line_error(capsys, ["run", "--model", str(tmp_path / "c.npz"), "--data", f"cifar10:{d}"],
                    "not a CIFAR-10 python batch")


def test_a_data_set_of_the_wrong_shape_is_one_line(tmp_path, capsys):
    manifest, params = random_network(0)
    write_network(tmp_path / "n.npz", manifest, params)
    _one_line_error(capsys, ["run", "--model", str(tmp_path / "n.npz")], "images are 1x8x8, the network expects 3x6x6")


def _rewrite(src, dst, *, drop=None, manifest=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename == drop:
                continue
            data = zin.read(info)
            if info.filename == "manifest.json" and manifest:
                data = json.dumps(manifest(json.loads(data))).encode()
            zout.writestr(info, data)


def test_an_export_from_a_newer_format_is_one_line(tmp_path, capsys):
    _digits_net(tmp_path / "d.npz")
    _rewrite(tmp_path / "d.npz", tmp_path / "new.npz", manifest=lambda m: m | {"format_version": 2})
    _one_line_error(capsys, ["run", "--model", str(tmp_path / "new.npz")], "format_version")


def test_an_export_missing_a_layer_array_is_one_line(tmp_path, capsys):
    _digits_net(tmp_path / "d.npz")
    _rewrite(tmp_path / "d.npz", tmp_path / "miss.npz", drop="c2/w.npy")
    _one_line_error(capsys, ["run", "--model", str(tmp_path / "miss.npz")], "'c2/w' is missing")


@pytest.mark.parametrize("spec", ["mnist", "cifar10:"])
def test_an_unknown_data_spec_is_one_line(tmp_path, capsys, spec):
    _one_line_error(capsys, ["run", "--model", str(_digits_net(tmp_path / "d.npz")), "--data", spec],
                    "--data must be")


def test_the_qat_accuracy_recorded_in_meta_is_reported_for_its_data_set(tmp_path, capsys):
    path = _digits_net(tmp_path / "d.npz", meta={"data": "digits", "qat_acc": 12.5})
    rec = _run_json(capsys, "--model", str(path))
    assert (rec["data"], rec["images"], rec["qat_accuracy"]) == ("digits", 360, 0.125)
    assert _run_json(capsys, "--model", str(path), "--limit", "20")["qat_accuracy"] is None


def test_threads_sets_the_model_threads_and_rejects_too_many(tmp_path, capsys):
    import numba

    path = _digits_net(tmp_path / "d.npz")
    before = numba.get_num_threads()
    try:
        assert _run_json(capsys, "--model", str(path), "--limit", "5", "--threads", "1")["threads"] == 1
    finally:
        set_threads(before)
    _one_line_error(capsys, ["run", "--model", str(path), "--threads", str(numba.config.NUMBA_NUM_THREADS + 1)],
                    "--threads must be in")
