"""Hashing over byte chunks: pure, testable with literal bytes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

READ_CHUNK = 8 * 1024 * 1024  # large reads: hashlib releases the GIL above 2 KiB


@dataclass(frozen=True)
class Digest:
    algorithm: str
    value: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"


def sha256_chunks(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def git_blob_header(size: int) -> bytes:
    return b"blob %d\0" % size


def git_blob_id_chunks(chunks: Iterable[bytes], size: int) -> str:
    """Git's object id of a blob: sha1 over ``b"blob <size>\\0" + content``."""
    h = hashlib.sha1(git_blob_header(size), usedforsecurity=False)
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def iter_file(path: Path, chunk: int = READ_CHUNK) -> Iterable[bytes]:
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            yield bytes(view[:n]) if n < chunk else bytes(view)


@dataclass(frozen=True)
class FileHashes:
    size: int
    sha256: str
    git_oid: str | None


def hash_file(path: Path, *, with_git_oid: bool = False, chunk: int = READ_CHUNK) -> FileHashes:
    """Hash a local file with large reads (sha256, optionally its git blob id)."""
    size = os.stat(path).st_size
    h = hashlib.sha256()
    g = hashlib.sha1(git_blob_header(size), usedforsecurity=False) if with_git_oid else None
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        view = memoryview(buf)
        total = 0
        while True:
            n = f.readinto(buf)
            if not n:
                break
            total += n
            h.update(view[:n])
            if g is not None:
                g.update(view[:n])
    # If the file changed size while reading, the git id is meaningless.
    if g is not None and total != size:
        g = None
    return FileHashes(size=total, sha256=h.hexdigest(), git_oid=g.hexdigest() if g else None)


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def is_sha1(value: object) -> bool:
    return isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value)
