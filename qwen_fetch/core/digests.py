"""Digests over byte chunks (sha256, git blob ids) and their textual checks: pure, testable with literal bytes.

Reading files to hash them is :mod:`qwen_fetch.store.hasher`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

SHA256 = "sha256"  # the algorithm of every digest the lockfile, the listings and the cache name today


@dataclass(frozen=True)
class Digest:
    """A content digest: which algorithm, and its value in lowercase hex."""

    algorithm: str
    value: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"


def sha256_digest(value: str) -> Digest:
    return Digest(SHA256, value)


def digest_matches(expected: Digest | str, actual: Digest | str | None) -> bool:
    """Does ``actual`` name the content ``expected`` names?  Every digest comparison goes through here.

    A bare string is a sha256 in hex, as the lockfile, hub listings, stamps and the hasher
    write it, so a second algorithm changes this function and the ``digest`` properties of the
    manifest rather than every comparison.  No digest (``None``) never matches, and digests of
    two different algorithms never match: neither is evidence about the other.
    """
    if actual is None:
        return False
    want = expected if isinstance(expected, Digest) else sha256_digest(expected)
    got = actual if isinstance(actual, Digest) else sha256_digest(actual)
    return want.algorithm == got.algorithm and want.value == got.value


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


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def is_sha1(value: object) -> bool:
    return isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value)
