"""A plain (non-LFS) git file on its way to disk: written as it arrives, hashed on the way.

The hub lists no sha256 for these files, so a fresh pull must read their bytes
to pin them.  Held in memory, a repository with many large plain files made a
pull's peak memory the sum of them; streamed into a :class:`PlainSink` it stays
one buffer per connection.  The sink is an unnamed file (``O_TMPFILE``) in the
folder its blob will live in, so nothing is left behind when the process dies;
its sha256 and git blob id are computed while writing, and only once both match
the listing is the file given a name (:meth:`PlainSink.promote`, an atomic
rename).  Where ``O_TMPFILE`` is missing (not Linux, some network file systems)
the sink is a named temporary (``.<random>.plain.tmp``) removed when closed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import tempfile
from pathlib import Path

from qwen_fetch.hashing import git_blob_header
from qwen_fetch.safefs import create_new, remove_file

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


class PlainSink:
    """Bytes of one listed file of ``size`` bytes, written to an unnamed file in ``folder``.

    ``folder=None`` (``qwen-fetch lock``, which writes no cache) uses the system's
    temporary folder; such a sink cannot be promoted.
    """

    def __init__(self, folder: Path | None, size: int) -> None:
        self.size = size
        self.written = 0
        self._sha256 = hashlib.sha256()
        # The git blob id hashes a header with the length first: the listed size is used, and a body of
        # another length fails the size check whatever its id.
        self._sha1 = hashlib.sha1(git_blob_header(size), usedforsecurity=False)
        self.folder = folder
        self.name: Path | None = None  # a named temporary (no O_TMPFILE here)
        self.fd = self._open(folder)

    def _open(self, folder: Path | None) -> int:
        if folder is None:
            return os.dup(tempfile.TemporaryFile().fileno())  # the dup keeps the unnamed file alive
        if _O_TMPFILE:
            try:
                return os.open(folder, _O_TMPFILE | os.O_RDWR, 0o644)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                    raise
        self.name = folder / f".{secrets.token_hex(4)}.plain.tmp"
        return create_new(self.name)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        self._sha256.update(view)
        self._sha1.update(view)
        self.written += len(view)
        while view:
            view = view[os.write(self.fd, view):]

    def reset(self) -> None:
        """Drop what was written (a retry starts the body over)."""
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.written = 0
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1(git_blob_header(self.size), usedforsecurity=False)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def git_oid(self) -> str:
        return self._sha1.hexdigest()

    def promote(self, dest: Path, tmp_dir: Path) -> None:
        """Give the verified bytes the name ``dest`` (atomic; ``tmp_dir`` is on the same file system).

        The caller holds the blob's lock.  The temporary name is ``.<sha256>.<random>.tmp``, which a
        rerun or ``gc`` removes if the process dies between the two steps.
        """
        assert self.folder is not None, "a sink without a folder cannot be promoted"
        os.fsync(self.fd)
        if self.name is not None:
            os.replace(self.name, dest)
            self.name = None
            return
        tmp = tmp_dir / f".{self.sha256}.{secrets.token_hex(4)}.tmp"
        os.link(f"/proc/self/fd/{self.fd}", tmp, follow_symlinks=True)  # how an O_TMPFILE file gets a name
        try:
            os.replace(tmp, dest)
        except BaseException:
            remove_file(tmp)
            raise

    def read(self) -> bytes:
        """The whole content (tests and small callers only)."""
        return os.pread(self.fd, self.written, 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.name is not None:
            remove_file(self.name)
            self.name = None
