"""Writing inside the cache or a ``--local-dir`` without ever following a link we did not make.

Anyone who can write the cache can plant a symlink where qwen-fetch writes: a
partial download, a ``.parts`` journal, a lock file, ``snapshots/<commit>`` or a
sub-folder of a ``--local-dir``.  Followed, it makes a pull write (or truncate)
a file elsewhere.  So:

* files are opened for writing with ``O_NOFOLLOW`` and checked with ``fstat``
  (a regular file, not a device or a FIFO); temporaries with ``O_EXCL`` too;
* a directory on the way down from the root (the cache dir or the
  ``--local-dir``, which the user chose and may itself be a link) must be a real
  directory, never a symlink: :func:`make_dirs` creates what is missing and
  refuses the rest;
* a leftover of ours that is not a regular file (a planted link named like a
  partial, a journal or a lock) is unlinked, which removes the link and never
  touches its target, and is then created afresh.

The checks are made on the way, not held: a process racing us with the same
rights could still swap a directory between a check and a use.  That process can
replace blobs anyway; the rule protects against what was planted before.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from qwen_fetch.core.errors import IntegrityError, Ref
from qwen_fetch.core.paths import SafeRelPath, UnsafePathError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafeEntryError(IntegrityError):
    ref = Ref.UNSAFE_CACHE_ENTRY


def _refuse(path: Path, what: str) -> UnsafeEntryError:
    return UnsafeEntryError(f"refusing to write through {path}: {what}",
                            hint="something other than qwen-fetch put it there; remove it (or move it away) "
                                 "and rerun", reference=Ref.UNSAFE_CACHE_ENTRY)


def make_dirs(root: Path, path: Path) -> Path:
    """``mkdir -p path`` for a ``path`` at or below ``root``; every directory below ``root`` must be real.

    ``root`` itself is the user's choice and may be a link; below it a symlink (or a
    file) where a directory belongs is refused with :class:`UnsafeEntryError`.
    """
    root_abs, path_abs = Path(os.path.abspath(root)), Path(os.path.abspath(path))
    try:
        rel = path_abs.relative_to(root_abs)
    except ValueError:
        raise _refuse(path, f"not inside {root}") from None
    root_abs.mkdir(parents=True, exist_ok=True)
    cur = root_abs
    for part in rel.parts:
        cur = cur / part
        try:
            os.mkdir(cur)
        except FileExistsError:
            pass
        st = os.lstat(cur)
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(cur, "a symlink where a directory belongs")
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse(cur, "not a directory")
    return path


def open_file(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a final symlink and only returns a regular file's descriptor."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, "it is a symlink") from None
        raise
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _refuse(path, "not a regular file")
    return fd


def create_new(path: Path, mode: int = 0o644, *, append: bool = False) -> int:
    """Create ``path`` (a temporary with a random name): fails if anything at all is there."""
    return open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | (os.O_APPEND if append else 0), mode)


def is_regular(path: Path) -> bool:
    """A regular file, not a symlink to one (``Path.is_file`` follows links)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def clear_odd(path: Path) -> bool:
    """Unlink ``path`` when it is there but not a regular file (a planted link); True when it did.

    A symlink is removed itself; its target is never touched.  A directory is left
    alone (and the open that follows fails with a clear error).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return False
    os.unlink(path)
    return True


def remove_file(path: Path) -> None:
    """Unlink ``path`` if it is there (a link is removed, not its target); a directory there is refused."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise _refuse(path, "a directory where a file belongs") from None
    except PermissionError:
        if os.path.isdir(path) and not os.path.islink(path):  # Linux says EISDIR, macOS EPERM
            raise _refuse(path, "a directory where a file belongs") from None
        raise


def cache_lock(path: Path, root: Path | None = None) -> Any:
    """A ``filelock.FileLock`` on ``path`` whose directory is real (below ``root``) and whose file is no link.

    Older filelock releases open the lock file with ``O_CREAT | O_TRUNC``, following a
    link: a planted ``<blob>.lock`` symlink would truncate its target.
    """
    from filelock import FileLock

    if root is not None:
        make_dirs(root, path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    clear_odd(path)
    return FileLock(str(path))


# Atomic file writes: write aside, fsync, rename.  A reader sees the old file or the new one.

def atomic_write_bytes(path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``path`` atomically.

    ``tmp_dir`` (on the same file system) keeps a crash's leftover out of directories
    that readers list, such as ``refs/``.  On any failure (a full disk, a ^C) the
    temporary file is removed.
    """
    tmp = (tmp_dir or path.parent) / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        with os.fdopen(create_new(tmp), "wb") as f:  # never through a link planted at that name
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path, text: str, tmp_dir: Path | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), tmp_dir)


def join_safe(root: Path, rel: SafeRelPath) -> Path:
    """Join a validated relative path to ``root``; asserts it stays inside."""
    target = root.joinpath(*rel.split("/"))
    # Defence in depth: a symlinked *parent* inside root could still escape.  The
    # final component itself may be a symlink (snapshot links point into blobs/).
    resolved_root = root.resolve()
    parent = target.parent.resolve()
    if parent != resolved_root and not str(parent).startswith(str(resolved_root) + "/"):
        raise UnsafePathError(f"refused file path {rel!r}: escapes {root}",
                              hint="a symlink inside the target directory points outside it")
    return target
