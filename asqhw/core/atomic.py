"""Safe file output: atomic writes, no-clobber without ``force``, one-line errors.

Every function raises :class:`asqhw.core.errors.UserError` (never ``OSError``) naming the
path and the reason, so a command-line handler only has to let it through.

API
---
``ensure_dir(path)``
    Create a directory (and parents); refuse a path that is, or lies under, a file.
``check_target(path, force, need_dir=False)``
    Refuse, before any work, an output path that is a directory, lies under a file,
    exists without ``force`` or whose directory cannot be written (or is missing).
``write_bytes(path, data, force=False)`` / ``write_text(path, text, force=False)``
    Write to a temporary file beside ``path``, flush it to disk, then rename it over
    ``path``: a reader sees the old file or the new one, never a partial one, and a
    killed run leaves at most a ``.<name>.tmp-*`` file. Without ``force`` an existing
    ``path`` is never replaced (the final step is a hard link, which fails if the name
    exists, so two writers cannot both win). ``force=None`` replaces silently (caches).
``replace_dir(tmpdir, final)``
    Move a finished directory into place atomically; if another process put ``final``
    there first, ``tmpdir`` is removed and False is returned.
``temp_path(path)``
    A fresh temporary name beside ``path`` (same file system, so a rename is atomic).
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from .errors import UserError

__all__ = ["ensure_dir", "pid_alive", "check_target", "write_bytes", "write_text", "replace_dir", "temp_path",
           "os_reason"]


def os_reason(exc: OSError) -> str:
    """Short reason of an OSError (``No space left on device``) without the path."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    return exc.strerror or exc.__class__.__name__


def _under_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a directory, if any."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def ensure_dir(path) -> Path:
    """Create directory ``path`` with its parents; return it as a Path.

    Raises
    ------
    UserError
        If ``path`` is a file, lies under a file or cannot be created.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory")
    blocker = _under_file(path)
    if blocker is not None:
        raise UserError(f"{path}: cannot create a directory under the file {blocker}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{path}: cannot create directory ({os_reason(e)})") from None
    return path


def check_target(path, force: bool, need_dir: bool = False) -> Path:
    """Check that ``path`` can be written as a new file, before any work is done.

    ``need_dir``: its directory must already exist (no one will create it).

    Raises
    ------
    UserError
        If ``path`` is a directory, lies under a file, exists and ``force`` is false, or its
        existing directory is not writable (or, with ``need_dir``, missing).
    """
    path = Path(path)
    _refuse_non_file_target(path)
    if (path.exists() or path.is_symlink()) and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    parent = path.parent
    if need_dir and not parent.is_dir():
        raise UserError(f"{path}: directory {parent} does not exist")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{path}: directory {parent} is not writable")
    return path


def _refuse_non_file_target(path: Path) -> None:
    """Refuse a target that is a directory or lies under a file (no file could be written there)."""
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a file name")
    blocker = _under_file(path)
    if blocker is not None:
        raise UserError(f"{path}: cannot write under the file {blocker}")


def temp_path(path) -> Path:
    """A new temporary name in the directory of ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_bytes(path, data: bytes, force: bool | None = False) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring for ``force``).

    Raises
    ------
    UserError
        If ``path`` exists and ``force`` is False, or on any OS error (no space, no
        permission, a file in the way); the temporary file is removed and ``path`` is
        left as it was.
    """
    path = Path(path)
    _refuse_non_file_target(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force is False:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise UserError(f"{path} exists; pass --force to overwrite it") from None
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                if path.exists():                 # no hard links here: best-effort check
                    raise UserError(f"{path} exists; pass --force to overwrite it") from None
                os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({os_reason(e)})") from None
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            pass
    return path


def write_text(path, text: str, force: bool | None = False) -> Path:
    """:func:`write_bytes` of UTF-8 ``text``."""
    return write_bytes(path, text.encode("utf-8"), force)


def replace_dir(tmpdir, final) -> bool:
    """Rename the finished directory ``tmpdir`` to ``final``; False if ``final`` already existed.

    Both must be on one file system. When another process created ``final`` first,
    ``tmpdir`` is deleted and its content discarded (the two are assumed equivalent).
    """
    tmpdir, final = Path(tmpdir), Path(final)
    try:
        os.rename(tmpdir, final)
        return True
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY) or final.exists():
            shutil.rmtree(tmpdir, ignore_errors=True)
            return False
        raise UserError(f"{final}: cannot move into place ({os_reason(e)})") from None


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists (a leftover work directory of a dead one may go)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
