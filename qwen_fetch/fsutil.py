"""Atomic file writes: write aside, fsync, rename.  A reader sees the old file or the new one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from qwen_fetch.safefs import create_new


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
