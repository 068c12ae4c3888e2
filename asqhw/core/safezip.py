"""Bounded reading of ZIP/npz archives and their JSON and ``.npy`` entries; deterministic writing.

Nothing is inflated or allocated before it is checked against what the caller
declares: an entry's flags, compression method and sizes are read from the ZIP
directory first, every read stops at the declared size, and a ``.npy`` header is
parsed and compared with the expected dtype and shape before its data is touched.
Every defect raises :class:`asqhw.core.errors.UserError` with ``where`` in front.

API
---
``SafeZip(path, max_entries=64)``  (a context manager)
    Opens the archive; refuses duplicate names, encrypted entries, compression
    other than stored/deflate, and more than ``max_entries`` entries.
    ``names`` -- entry names in archive order.
    ``size(name)`` -- the uncompressed size the ZIP directory declares.
    ``read(name, max_bytes)`` -- the entry's bytes; refuses an entry whose declared size
    exceeds ``max_bytes`` and stops reading at the declared size (a lying size or a
    failed CRC is an error).
    ``read_json(name, max_bytes=1 << 20)`` -- :func:`loads_json` of the entry.
    ``read_npy(name, dtype, shape, label=None)`` -- the array, after checking the entry's declared
    size, its header's dtype, order and shape against ``dtype`` and ``shape``.
``archive_bytes(manifest, arrays)``
    The bytes of an archive: ``manifest.json`` (sorted keys) then ``KEY.npy`` per array in
    the given order, stored, with fixed timestamps: the same content gives the same bytes.
``loads_json(data, where)``
    Strict JSON: UTF-8, no NaN/Infinity and no number that overflows to infinity (``1e400``),
    nesting at most ``MAX_JSON_DEPTH`` levels.
``max_file_bytes()`` / ``set_max_file_bytes(n)``
    The total-size limit of one file: the sum of the array bytes its manifest declares may
    not exceed it (checked before anything is allocated). Default ``DEFAULT_MAX_FILE_BYTES``
    (256 MiB); raised or lowered by ``$ASQHW_MAX_FILE_BYTES`` or the ``--max-file-bytes``
    option of ``asqhw`` (which calls ``set_max_file_bytes``). A number with an optional
    ``K``/``M``/``G`` suffix (powers of 1024).
``check_total(total, where)``
    UserError when ``total`` declared bytes exceed ``max_file_bytes()``.
``parse_npy(data, dtype, shape, where)``
    A NumPy array from ``.npy`` bytes, checked as above (no pickles, no Fortran order);
    messages read ``"{where} has dtype ..."``.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import UserError

__all__ = ["SafeZip", "loads_json", "parse_npy", "MAX_JSON_DEPTH", "NPY_HEADER_MAX", "DEFAULT_MAX_FILE_BYTES",
           "MAX_FILE_BYTES_ENV", "max_file_bytes", "set_max_file_bytes", "parse_bytes", "check_total"]

MAX_JSON_DEPTH = 64          # deeper nesting in a manifest is refused before parsing
NPY_HEADER_MAX = 1 << 16     # largest .npy header accepted (magic + length + dict)
DEFAULT_MAX_FILE_BYTES = 1 << 28     # 256 MiB of declared arrays per file
MAX_FILE_BYTES_ENV = "ASQHW_MAX_FILE_BYTES"
_LIMIT_RANGE = (1 << 10, 1 << 40)    # what the limit itself may be set to: 1 KiB .. 1 TiB
_limit: int | None = None            # set by set_max_file_bytes (the command-line option)
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str, what: str) -> int:
    """A byte count such as ``268435456``, ``512M`` or ``2G``, within 1 KiB .. 1 TiB."""
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    num, suffix = (t[:-1], t[-1]) if t and t[-1] in _SUFFIX else (t, "")
    if not (num.isascii() and num.isdigit() and len(num) <= 15):
        raise UserError(f"{what} must be a byte count such as 268435456, 512M or 2G, not {text!r}")
    n = int(num) * _SUFFIX[suffix]
    if not _LIMIT_RANGE[0] <= n <= _LIMIT_RANGE[1]:
        raise UserError(f"{what} must be between 1K and 1T bytes, not {text!r}")
    return n


def set_max_file_bytes(value) -> int:
    """Set the total-size limit of one file (``--max-file-bytes``); None returns to the default."""
    global _limit
    _limit = None if value is None else parse_bytes(value, "--max-file-bytes")
    return max_file_bytes()


def max_file_bytes() -> int:
    """The total-size limit of one file: the option, else ``$ASQHW_MAX_FILE_BYTES``, else 256 MiB."""
    if _limit is not None:
        return _limit
    env = os.environ.get(MAX_FILE_BYTES_ENV)
    if env is None or not env.strip():
        return DEFAULT_MAX_FILE_BYTES
    return parse_bytes(env, f"${MAX_FILE_BYTES_ENV}")


def check_total(total: int, where: str) -> None:
    """Refuse a file whose arrays declare more than :func:`max_file_bytes` bytes in all."""
    limit = max_file_bytes()
    if total > limit:
        raise UserError(f"{where} declares {total} bytes of arrays, more than the limit of {limit} "
                        f"(raise it with --max-file-bytes or ${MAX_FILE_BYTES_ENV})")
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


def _depth_ok(text: str, limit: int) -> bool:
    depth = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _no_constant(name):
    raise ValueError(f"{name} is not allowed")


def _finite_float(text):
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:40]} overflows to infinity, which is not allowed")
    return v


def loads_json(data: bytes, where: str):
    """Parse strict JSON (see the module docstring); UserError on any defect."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
    if not _depth_ok(text, MAX_JSON_DEPTH):
        raise UserError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as e:
        raise UserError(f"{where}: not valid JSON ({e})") from None


def parse_npy(data: bytes, dtype, shape, where: str) -> np.ndarray:
    """Array of ``dtype`` and ``shape`` from ``.npy`` bytes, checked before any allocation."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            hshape, fortran, hdtype = np.lib.format.read_array_header_1_0(f, max_header_size=NPY_HEADER_MAX)
        elif version in ((2, 0), (3, 0)):
            hshape, fortran, hdtype = np.lib.format.read_array_header_2_0(f, max_header_size=NPY_HEADER_MAX)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as e:
        raise UserError(f"{where} is corrupt (bad .npy header: {e})") from None
    if hdtype.hasobject:
        raise UserError(f"{where} holds Python objects, refused")
    if hdtype != dtype:
        raise UserError(f"{where} has dtype {hdtype}, expected {dtype}")
    if tuple(hshape) != shape:
        raise UserError(f"{where} has shape {tuple(hshape)}, expected {shape}")
    if fortran and len(shape) > 1:
        raise UserError(f"{where} is in Fortran order, which is not supported")
    offset = f.tell()
    need = math.prod(shape) * dtype.itemsize
    if len(data) - offset != need:
        raise UserError(f"{where} is corrupt: {len(data) - offset} data bytes, {need} expected "
                        f"for shape {shape}")
    return np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape).copy()


def _declared_entries(path: Path) -> int | None:
    """The entry count the end-of-central-directory record declares (ZIP64 too), or None.

    Read before ``zipfile`` parses the central directory, so that an archive declaring a
    million entries is refused without building a million ``ZipInfo`` objects.
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - (1 << 16) - 22))
            tail = f.read()
    except OSError:
        return None
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or len(tail) < i + 22:
        return None
    count = int.from_bytes(tail[i + 10:i + 12], "little")
    if count == 0xFFFF:
        j = tail.rfind(b"PK\x06\x06", 0, i)
        if j >= 0 and len(tail) >= j + 40:
            count = int.from_bytes(tail[j + 32:j + 40], "little")
    return count


class SafeZip:
    """A ZIP archive read within declared bounds (see the module docstring)."""

    def __init__(self, path, max_entries: int = 64):
        self.path = Path(path)
        self.where = str(path)
        declared = _declared_entries(self.path)
        if declared is not None and declared > max_entries:
            raise UserError(f"{path}: archive declares {declared} entries, at most {max_entries} expected")
        try:
            self._zf = zipfile.ZipFile(self.path)
            infos = self._zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
                NotImplementedError) as e:
            raise UserError(f"{path}: not a readable archive (truncated or corrupt: {e})") from None
        if len(infos) > max_entries:
            self.close()
            raise UserError(f"{path}: archive has {len(infos)} entries, at most {max_entries} expected")
        self._infos = {}
        for info in infos:
            if info.filename in self._infos:
                self.close()
                raise UserError(f"{path}: entry {info.filename!r} appears twice")
            if info.flag_bits & 0x1:
                self.close()
                raise UserError(f"{path}: entry {info.filename!r} is encrypted")
            if info.compress_type not in _METHODS:
                self.close()
                raise UserError(f"{path}: entry {info.filename!r} uses compression method "
                                f"{info.compress_type}; only stored and deflate are supported")
            self._infos[info.filename] = info

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the archive."""
        self._zf.close()

    @property
    def names(self) -> list[str]:
        """Entry names in archive order."""
        return list(self._infos)

    def size(self, name: str) -> int:
        """Uncompressed size of ``name`` as the ZIP directory declares it."""
        return self._infos[name].file_size

    def read(self, name: str, max_bytes: int) -> bytes:
        """Bytes of entry ``name``, at most ``max_bytes`` (see the module docstring)."""
        info = self._infos.get(name)
        if info is None:
            raise UserError(f"{self.where}: entry {name!r} is missing")
        if info.file_size > max_bytes:
            raise UserError(f"{self.where}: entry {name!r} declares {info.file_size} bytes, "
                            f"more than the {max_bytes} expected")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise UserError(f"{self.where}: entry {name!r} is stored but its sizes differ")
        try:
            with self._zf.open(info) as f:
                data = f.read(info.file_size)
                extra = f.read(1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
                RuntimeError) as e:
            raise UserError(f"{self.where}: entry {name!r} is corrupt ({e})") from None
        if len(data) != info.file_size or extra:
            raise UserError(f"{self.where}: entry {name!r} does not have its declared size")
        return data

    def read_json(self, name: str, max_bytes: int = 1 << 20):
        """Strict JSON value of entry ``name`` (:func:`loads_json`)."""
        return loads_json(self.read(name, max_bytes), f"{self.where}: {name}")

    def read_npy(self, name: str, dtype, shape, label: str | None = None) -> np.ndarray:
        """Array of entry ``name``, checked against ``dtype`` and ``shape`` before reading.

        ``label`` names the array in messages (default: ``entry 'name'``).
        """
        need = math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize
        return parse_npy(self.read(name, need + NPY_HEADER_MAX), dtype, shape,
                         f"{self.where}: {label or f'entry {name!r}'}")


_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def npy_bytes(arr: np.ndarray) -> bytes:
    """The ``.npy`` bytes of ``arr`` (C order, no pickles)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def archive_bytes(manifest: dict, arrays: dict) -> bytes:
    """A deterministic archive of ``manifest`` and ``arrays`` (see the module docstring)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        entries = [("manifest.json", json.dumps(manifest, sort_keys=True, indent=1).encode())]
        entries += [(f"{k}.npy", npy_bytes(a)) for k, a in arrays.items()]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()
