"""A plain (non-LFS) git file on its way to disk: written as it arrives, hashed on the way.

The hub lists no sha256 for these files, so a fresh pull must read their bytes
to pin them.  Held in memory, a repository with many large plain files made a
pull's peak memory the sum of them; streamed into a :class:`PlainSink` it stays
one buffer per connection.  The sink is an unnamed file (``O_TMPFILE``) in the
folder its blob will live in, so nothing is left behind when the process dies;
its sha256 and git blob id are computed while writing, and only once both match
the listing is the file given a name (:meth:`PlainSink.promote`, an atomic
rename).  Where ``O_TMPFILE`` is missing (not Linux, some network file systems)
the sink is a named file unlinked as soon as it is open: just as anonymous.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qwen_fetch.core.digests import git_blob_header
from qwen_fetch.core.manifest import PinnedFile
from qwen_fetch.store.safefs import create_new, remove_file

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
COPY_PIECE = 1 << 20


def _copy_range(src: int, dst: int, offset: int, count: int) -> int:
    """Copy ``count`` bytes at ``offset`` of ``src`` to the end of ``dst``; bytes copied."""
    if hasattr(os, "copy_file_range"):
        try:
            return os.copy_file_range(src, dst, count, offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
    data = os.pread(src, count, offset)
    view = memoryview(data)
    while view:
        view = view[os.write(dst, view):]
    return len(data)


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
        self.fd = self._open(folder)

    def _open(self, folder: Path | None) -> int:
        if folder is None:
            with tempfile.TemporaryFile() as f:
                return os.dup(f.fileno())  # the copy keeps the unnamed file alive
        if _O_TMPFILE:
            try:
                return os.open(folder, _O_TMPFILE | os.O_RDWR, 0o644)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                    raise
        # No O_TMPFILE: a named file, unlinked at once, is just as anonymous from then on.
        name = folder / f".{secrets.token_hex(4)}.plain.tmp"
        fd = create_new(name)
        os.unlink(name)
        return fd

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

        The caller holds the blob's lock.  The file gets a temporary name ``.<sha256>.<random>.tmp`` first,
        which a rerun or ``gc`` removes if the process dies before the rename: linked where the kernel
        allows naming an ``O_TMPFILE`` file, else copied (inside the kernel, a piece at a time).
        """
        assert self.folder is not None, "a sink without a folder cannot be promoted"
        tmp = tmp_dir / f".{self.sha256}.{secrets.token_hex(4)}.tmp"
        try:
            try:
                os.fsync(self.fd)
                os.link(f"/proc/self/fd/{self.fd}", tmp, follow_symlinks=True)
            except OSError:  # no /proc, a sandbox, or an unlinked named file (nlink 0): copy
                remove_file(tmp)
                self._copy_to(tmp)
            os.replace(tmp, dest)
        except BaseException:
            remove_file(tmp)
            raise

    def _copy_to(self, path: Path) -> None:
        out = create_new(path)
        try:
            off = 0
            while off < self.written:
                n = _copy_range(self.fd, out, off, min(COPY_PIECE, self.written - off))
                if n <= 0:
                    raise OSError(errno.EIO, f"short copy into {path}")
                off += n
            os.fsync(out)
        finally:
            os.close(out)

    def read(self) -> bytes:
        """The whole content (tests and small callers only)."""
        return os.pread(self.fd, self.written, 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True)
class FetchedPlain:
    """One plain file of a fresh pull, fetched and verified: its pin, the source, and whether this pull wrote it
    (False: an intact copy was in place already, or ``qwen-fetch lock``, which writes nothing)."""

    pinned: PinnedFile
    source: str
    written: bool
