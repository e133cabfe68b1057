"""Digests over byte chunks (sha256, git blob ids) and their textual checks: pure, testable with literal bytes.

Reading files to hash them is :mod:`qwen_fetch.store.hasher`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


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


_LOWER_HEX = frozenset("0123456789abcdef")


def is_lower_hex(value: object, *lengths: int) -> bool:
    """``value`` is lowercase hex, ``lengths`` characters long: how every digest and object id is spelt.

    The one spelling check behind :func:`is_sha256`, :func:`is_sha1` and
    :func:`qwen_fetch.core.revisions.is_commit_id`; uppercase is refused because the
    cache and the lockfile name things by the lowercase form only.
    """
    return isinstance(value, str) and len(value) in lengths and _LOWER_HEX.issuperset(value)


def is_sha256(value: object) -> bool:
    return is_lower_hex(value, 64)


def is_sha1(value: object) -> bool:
    """A git object id (a blob's, for plain files), as huggingface_hub names their blobs."""
    return is_lower_hex(value, 40)
