"""asqhw.core.atomic and asqhw.core.safezip: the shared safe-output and bounded-reading helpers."""

import io
import threading
import zipfile

import numpy as np
import pytest

from asqhw.core.atomic import check_target, ensure_dir, replace_dir, write_bytes
from asqhw.core.errors import UserError
from asqhw.core.safezip import (DEFAULT_MAX_FILE_BYTES, MAX_FILE_BYTES_ENV, SafeZip, check_total, loads_json,
                                 max_file_bytes, parse_npy, set_max_file_bytes)


def test_write_without_force_never_replaces_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"mine")
    with pytest.raises(UserError, match="--force"):
        write_bytes(p, b"theirs")
    assert p.read_bytes() == b"mine" and [q.name for q in tmp_path.iterdir()] == ["f.bin"]


def test_of_many_writers_without_force_exactly_one_wins(tmp_path):
    p, results = tmp_path / "f.bin", []

    def writer(i):
        try:
            write_bytes(p, bytes([i]) * 1000)
            results.append(i)
        except UserError:
            pass
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and p.read_bytes() == bytes([results[0]]) * 1000


def test_force_replaces_atomically(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    write_bytes(p, b"new", force=True)
    assert p.read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1


def test_paths_under_files_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    for fn in (lambda: ensure_dir(tmp_path / "file" / "d"), lambda: check_target(tmp_path / "file" / "o", True),
               lambda: write_bytes(tmp_path / "file" / "o", b"")):
        with pytest.raises(UserError, match="under the file"):
            fn()


def test_replace_dir_lets_the_first_finisher_win(tmp_path):
    a, b, final = tmp_path / "a", tmp_path / "b", tmp_path / "final"
    for d, text in ((a, "A"), (b, "B")):
        d.mkdir()
        (d / "x").write_text(text)
    assert replace_dir(a, final) is True and replace_dir(b, final) is False
    assert (final / "x").read_text() == "A" and not b.exists()


def _zip(tmp_path, entries, method=zipfile.ZIP_STORED):
    p = tmp_path / "z.zip"
    with zipfile.ZipFile(p, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return p


def test_read_refuses_an_entry_larger_than_allowed_before_inflating(tmp_path):
    p = _zip(tmp_path, {"big": b"\0" * 100_000}, zipfile.ZIP_DEFLATED)
    with SafeZip(p) as zf:
        with pytest.raises(UserError, match="declares 100000 bytes"):
            zf.read("big", 1000)
        assert zf.read("big", 100_000) == b"\0" * 100_000


def test_read_npy_checks_dtype_and_shape_from_the_header(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.int16).reshape(2, 3))
    p = _zip(tmp_path, {"a.npy": buf.getvalue()})
    with SafeZip(p) as zf:
        assert zf.read_npy("a.npy", np.int16, (2, 3)).tolist() == [[0, 1, 2], [3, 4, 5]]
        with pytest.raises(UserError, match="has shape"):
            zf.read_npy("a.npy", np.int16, (3, 2))
    with pytest.raises(UserError, match="has dtype"):
        parse_npy(buf.getvalue(), np.int32, (2, 3), "a")


def test_strict_json_refuses_nan_and_deep_nesting():
    assert loads_json(b'{"a": [1, 2.5]}', "m") == {"a": [1, 2.5]}
    with pytest.raises(UserError, match="NaN"):
        loads_json(b'{"a": NaN}', "m")
    with pytest.raises(UserError, match="nested deeper"):
        loads_json(b"[" * 65 + b"]" * 65, "m")


def test_strict_json_refuses_a_number_that_overflows_to_infinity():
    with pytest.raises(UserError, match="overflows to infinity"):
        loads_json(b'{"a": 1e400}', "m")
    with pytest.raises(UserError, match="overflows to infinity"):
        loads_json(b'[-1e999]', "m")
    assert loads_json(b"[1e300]", "m") == [1e300]


def test_the_total_size_limit_has_a_default_an_environment_variable_and_a_flag(monkeypatch):
    monkeypatch.delenv(MAX_FILE_BYTES_ENV, raising=False)
    set_max_file_bytes(None)
    assert max_file_bytes() == DEFAULT_MAX_FILE_BYTES == 1 << 28
    monkeypatch.setenv(MAX_FILE_BYTES_ENV, "512M")
    assert max_file_bytes() == 1 << 29
    try:
        assert set_max_file_bytes("2G") == 1 << 31          # the flag wins over the environment
        check_total(1 << 31, "f")
        with pytest.raises(UserError, match="f declares 2147483649 bytes of arrays, more than the limit"):
            check_total((1 << 31) + 1, "f")
    finally:
        set_max_file_bytes(None)


@pytest.mark.parametrize("text", ["", "lots", "-5", "1.5G", "0", "512", "2T", "1e9", "١٢٣٤K"])
def test_a_size_limit_outside_1k_to_1t_or_not_a_count_is_refused(text):
    with pytest.raises(UserError, match="--max-file-bytes"):
        set_max_file_bytes(text)
