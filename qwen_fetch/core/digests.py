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


def parse_digest(text: str | None) -> Digest | None:
    """``"<algorithm>:<value>"`` (as :class:`Digest` prints itself) back into a digest."""
    if text is None:
        return None
    algorithm, _, value = text.partition(":")
    return Digest(algorithm, value)


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


# -- chunk roots ----------------------------------------------------------------------------
# One file's sha256 is a single sequential stream: a 5 GB shard takes one core several seconds whatever the
# machine.  A *chunk root* can be checked on every core: the file is cut into CHUNK-byte chunks (the last one
# shorter; an empty file is one empty chunk), each chunk's sha256 is taken on its own, and the root is the
# sha256 of those digests' raw bytes concatenated in file order (as sigstore model-transparency folds the
# digests of a file's shards).  A root only means something beside the file's size, which fixes the chunks.
# A file of one chunk gains nothing (its root follows from its sha256), so the lock records roots only for
# files longer than CHUNK.
CHUNK = 64 * 1024 * 1024
ROOT_ALGORITHM = "sha256-chunks-64m"  # the name the lockfile gives this root (chunk size included)


def chunk_spans(size: int, chunk: int | None = None) -> list[tuple[int, int]]:
    """The ``[start, end)`` byte ranges of a ``size``-byte file's chunks."""
    chunk = chunk or CHUNK
    if size <= 0:
        return [(0, 0)]
    return [(s, min(s + chunk, size)) for s in range(0, size, chunk)]


def fold_root(chunk_digests: Iterable[bytes]) -> str:
    """The root over the chunks' raw sha256 digests, in file order (hex)."""
    h = hashlib.sha256()
    for d in chunk_digests:
        h.update(d)
    return h.hexdigest()


def wants_root(size: int, chunk: int | None = None) -> bool:
    """Is a root worth recording for a file of ``size`` bytes (more than one chunk)?"""
    return size > (chunk or CHUNK)


class ChunkRoots:
    """A chunk root fed like a hash: ``update`` with the file's bytes in order, then ``root()``.

    Bytes may arrive in pieces of any size; pieces are cut at chunk boundaries here.
    """

    def __init__(self, chunk: int | None = None) -> None:
        self.chunk = chunk or CHUNK
        self.digests: list[bytes] = []
        self._h = hashlib.sha256()
        self._filled = 0  # bytes of the current chunk so far

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            take = min(len(view), self.chunk - self._filled)
            self._h.update(view[:take])  # large pieces release the GIL while hashed
            self._filled += take
            view = view[take:]
            if self._filled == self.chunk:
                self.digests.append(self._h.digest())
                self._h, self._filled = hashlib.sha256(), 0

    @property
    def consumed(self) -> int:
        return len(self.digests) * self.chunk + self._filled

    def root(self) -> str:
        """The root of everything fed so far, taken as the whole file (the object stays usable)."""
        tail = [self._h.digest()] if self._filled or not self.digests else []
        return fold_root(self.digests + tail)


def root_digest(value: str) -> Digest:
    """A chunk root (hex, as the hasher computes it) as a digest."""
    return Digest(ROOT_ALGORITHM, value)


def chunk_root(data: bytes, chunk: int | None = None) -> str:
    """The chunk root of ``data`` (literal bytes; files are rooted by :mod:`qwen_fetch.store.hasher`)."""
    r = ChunkRoots(chunk)
    r.update(data)
    return r.root()


def git_blob_header(size: int) -> bytes:
    return b"blob %d\0" % size


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
