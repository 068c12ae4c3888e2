"""Golden-vector files: deterministic writing and strict reading (docs/vectors.md)."""

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

from asqhw.core.spec import SPEC_VERSION
from asqhw.core.errors import UserError
from asqhw.core.vectors import load_cases, read_case, write_case, write_index
from conftest import tiny_arrays, tiny_manifest


def rewrite_entry(path, entry, data: bytes):
    """Replace one archive entry in place (bypassing the writer's checks)."""
    with zipfile.ZipFile(path) as zf:
        items = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in items:
            zf.writestr(name, data if name == entry else blob)


def npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_same_content_gives_same_bytes(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert write_case(a, tiny_manifest(), tiny_arrays()) == write_case(b, tiny_manifest(), tiny_arrays())
    assert a.read_bytes() == b.read_bytes()


def test_round_trip_keeps_arrays_and_manifest(tiny_case):
    case = read_case(tiny_case)
    assert case.name == "tiny_uniform_linear" and case.fan_in == 3
    np.testing.assert_array_equal(case["acc"], tiny_arrays()["acc"])
    assert case.manifest["spec_version"] == SPEC_VERSION


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_cases([tmp_path / "nope.npz"])


def test_directory_without_cases_is_an_error(tmp_path):
    with pytest.raises(UserError, match="holds no case files"):
        load_cases([tmp_path])


def test_truncated_archive_is_reported(tiny_case):
    data = tiny_case.read_bytes()
    tiny_case.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        read_case(tiny_case)


def test_garbage_file_is_reported(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(UserError, match="truncated or corrupt"):
        read_case(p)


def test_corrupt_array_entry_is_reported(tiny_case):
    rewrite_entry(tiny_case, "y.npy", b"\x93NUMPY garbage")
    with pytest.raises(UserError, match="'y' is corrupt"):
        read_case(tiny_case)


def test_newer_spec_major_version_is_refused(tiny_case):
    m = tiny_manifest() | {"format": "asqhw-vectors", "format_version": 1, "spec_version": "2.0"}
    rewrite_entry(tiny_case, "manifest.json", json.dumps(m).encode())
    with pytest.raises(UserError, match="newer than this tool"):
        read_case(tiny_case)


def test_unparsable_manifest_is_reported(tiny_case):
    rewrite_entry(tiny_case, "manifest.json", b"{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        read_case(tiny_case)


def test_wrong_dtype_is_reported(tiny_case):
    rewrite_entry(tiny_case, "x.npy", npy(tiny_arrays()["x"].astype(np.float32)))
    with pytest.raises(UserError, match="'x' has dtype float32"):
        read_case(tiny_case)


def test_wrong_shape_is_reported(tiny_case):
    rewrite_entry(tiny_case, "w.npy", npy(np.zeros((3, 2), np.int16)))
    with pytest.raises(UserError, match=r"'w' has shape \(3, 2\)"):
        read_case(tiny_case)


def test_out_of_range_activation_code_is_reported(tiny_case):
    x = tiny_arrays()["x"].copy()
    x[1, 2] = 16
    rewrite_entry(tiny_case, "x.npy", npy(x))
    with pytest.raises(UserError, match="activation code 16"):
        read_case(tiny_case)


def test_out_of_range_weight_code_is_reported(tiny_case):
    w = tiny_arrays()["w"].copy()
    w[0, 0] = -9
    rewrite_entry(tiny_case, "w.npy", npy(w))
    with pytest.raises(UserError, match="weight code"):
        read_case(tiny_case)


def test_pot_magnitude_beyond_e_max_is_out_of_range(tmp_path):
    from asqhw.core.params import Datapath

    dp = Datapath(fmt="pot", a_bits=4, w_bits=4, e_max=7)   # m_bits = 4, m <= 8
    import numpy as np
    assert dp.check_weight_codes_valid(np.array([8, 9, 16 + 8, 16 + 9])) == 2


def test_impossible_bit_width_is_reported(tiny_case):
    m = tiny_manifest() | {"format": "asqhw-vectors", "format_version": 1, "spec_version": "1.0"}
    m["activation"] = {"bits": 12, "signed": False}
    rewrite_entry(tiny_case, "manifest.json", json.dumps(m).encode())
    with pytest.raises(UserError, match="activation bits must be in 2..8"):
        read_case(tiny_case)


def test_index_detects_a_changed_file(tiny_case):
    digest = hashlib.sha256(tiny_case.read_bytes()).hexdigest()
    write_index(tiny_case.parent, 0, [{"name": "tiny", "file": tiny_case.name, "sha256": digest}])
    assert len(load_cases([tiny_case.parent])) == 1
    tiny_case.write_bytes(tiny_case.read_bytes() + b"\0")
    with pytest.raises(UserError, match="SHA-256 differs"):
        load_cases([tiny_case.parent])
