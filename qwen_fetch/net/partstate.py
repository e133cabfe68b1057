"""The resume state kept beside a partial download: ``<blob>.incomplete.parts``.

It records, per block, a 64-bit xxh3 checksum of the bytes written there
(``null`` for a block not yet written), plus the ETag and source the bytes came
from.  The first line is a JSON snapshot; each block finished since then
appends a journal line ``[index,sum]``, and a block still arriving appends
``[index,length,sum]`` for its first ``length`` bytes every step (a *head*,
256 KiB by default), so a killed process loses at most the unwritten step of each
connection, not whole blocks; the snapshot is rewritten (compacted) now and then
and keeps the heads of unfinished blocks (``heads``).  Readers older than heads
stop at the first head line and fetch more again, never trusting a byte more.  On
resume every recorded block is read back and checked, so a partial file that
was truncated, corrupted or written past its state is repaired instead of
promoted.  ``gc`` deletes ``*.incomplete`` and ``*.incomplete.parts`` that no
lock holds, so the name must stay ``str(partial) + ".parts"``.

Why xxh3 and not crc32: the checksum is computed over every byte a pull
receives, and on a 2-core machine without SHA-NI zlib.crc32 took a noticeable
share of a pull's CPU; xxh3 (SIMD) runs at memory speed.  Version 1 states (zlib.crc32,
key ``crc``) from older releases are still read: their blocks are checked with
crc32 and re-summed with xxh3, so an upgrade mid-download loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import zlib
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path

import xxhash

from qwen_fetch.core.digests import ChunkRoots, digest_matches
from qwen_fetch.core.ranges import block_count, block_span
from qwen_fetch.store.safefs import UnsafeEntryError, create_new, open_file

STATE_VERSION = 2
STATE_SUFFIX = ".parts"
# version -> (JSON key of the per-block list, checksum function, exclusive bound of a checksum)
_SUMS = {1: ("crc", zlib.crc32, 2**32), 2: ("sums", xxhash.xxh3_64_intdigest, 2**64)}


def block_sum(data: bytes | bytearray | memoryview) -> int:
    """The checksum recorded for a block written now (the current version's)."""
    return xxhash.xxh3_64_intdigest(data)


def block_summer() -> xxhash.xxh3_64:
    """A running :func:`block_sum`: fed a block piece by piece, ``intdigest()`` is the sum of what it was fed."""
    return xxhash.xxh3_64()


class BadState(ValueError):
    """The state file cannot be used (wrong file, wrong version, damaged)."""


@dataclass(frozen=True)
class PartState:
    size: int
    sha256: str
    block_size: int
    sums: tuple[int | None, ...]
    source: str = ""  # the source whose ETag is recorded
    etag: str | None = None
    version: int = STATE_VERSION  # which checksum ``sums`` hold (only parsing produces an older one)
    heads: tuple[tuple[int, int, int], ...] = ()  # (block, length, sum of its first length bytes), unfinished blocks

    def to_json(self) -> str:
        key = _SUMS[self.version][0]
        raw: dict[str, object] = {"version": self.version, "size": self.size, "sha256": self.sha256,
                                  "block_size": self.block_size, "source": self.source, "etag": self.etag,
                                  key: list(self.sums)}
        if self.heads:
            raw["heads"] = [list(h) for h in self.heads]
        return json.dumps(raw, separators=(",", ":"))

    @property
    def done_blocks(self) -> int:
        return sum(c is not None for c in self.sums)


def journal_line(block: int, checksum: int) -> bytes:
    return b"[%d,%d]\n" % (block, checksum)


def head_line(block: int, length: int, checksum: int) -> bytes:
    """Journal line: the first ``length`` bytes of ``block`` are written, with this running sum."""
    return b"[%d,%d,%d]\n" % (block, length, checksum)


def _valid_head(block: int, length: int, checksum: int, *, size: int, block_size: int, bound: int) -> bool:
    start, end = block_span(block, size, block_size) if 0 <= block < block_count(size, block_size) else (0, 0)
    return end > start and 0 < length < end - start and 0 <= checksum < bound


def parse_state(text: str, *, size: int, sha256: str, block_size: int) -> PartState:
    """Parse and validate a state file for the file ``(size, sha256)``, or raise :class:`BadState`.

    Journal lines after the snapshot are applied in order; a torn or invalid
    line ends the journal (what follows it is ignored, never trusted).  A head
    line replaces the block's earlier head; a block line finishes the block.
    """
    first, _, journal = text.partition("\n")
    snapshot = _parse_snapshot(first, size=size, sha256=sha256, block_size=block_size)
    bound = _SUMS[snapshot.version][2]
    sums = list(snapshot.sums)
    heads = {b: (n, c) for b, n, c in snapshot.heads}
    for line in journal.split("\n"):
        try:
            entry = json.loads(line)
        except ValueError:
            break
        if not (isinstance(entry, list) and all(type(x) is int for x in entry)):
            break
        if len(entry) == 2 and 0 <= entry[0] < len(sums) and 0 <= entry[1] < bound:
            sums[entry[0]] = entry[1]
            heads.pop(entry[0], None)
        elif (len(entry) == 3 and snapshot.version == STATE_VERSION
              and _valid_head(*entry, size=size, block_size=block_size, bound=bound)):
            if sums[entry[0]] is None:
                heads[entry[0]] = (entry[1], entry[2])
        else:
            break
    return PartState(size=size, sha256=sha256, block_size=block_size, sums=tuple(sums), source=snapshot.source,
                     etag=snapshot.etag, version=snapshot.version,
                     heads=tuple((b, n, c) for b, (n, c) in sorted(heads.items())))


def _parse_snapshot(text: str, *, size: int, sha256: str, block_size: int) -> PartState:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise BadState(f"not JSON ({exc.__class__.__name__})") from None
    version = raw.get("version") if isinstance(raw, dict) else None
    if type(version) is not int or version not in _SUMS:
        raise BadState("unknown state version")
    assert isinstance(raw, dict)
    key, _, bound = _SUMS[version]
    if raw.get("size") != size or not digest_matches(sha256, raw.get("sha256")):
        raise BadState("state belongs to another file")
    if raw.get("block_size") != block_size:
        raise BadState("state uses another block size")
    sums = raw.get(key)
    if not isinstance(sums, list) or len(sums) != block_count(size, block_size):
        raise BadState("block list has the wrong length")
    for c in sums:
        if c is not None and (type(c) is not int or not 0 <= c < bound):
            raise BadState("block checksum out of range")
    source, etag = raw.get("source", ""), raw.get("etag")
    if not isinstance(source, str) or not (etag is None or isinstance(etag, str)):
        raise BadState("bad source/etag")
    heads = raw.get("heads", [])
    if not isinstance(heads, list) or (heads and version != STATE_VERSION):
        raise BadState("bad block heads")
    for h in heads:
        if not (isinstance(h, list) and len(h) == 3 and all(type(x) is int for x in h)
                and _valid_head(*h, size=size, block_size=block_size, bound=bound) and sums[h[0]] is None):
            raise BadState("bad block head")
    if len({h[0] for h in heads}) != len(heads):
        raise BadState("two heads for one block")
    return PartState(size=size, sha256=sha256, block_size=block_size, sums=tuple(sums), source=source, etag=etag,
                     version=version, heads=tuple(sorted((h[0], h[1], h[2]) for h in heads)))


def state_path(partial: Path) -> Path:
    return Path(str(partial) + STATE_SUFFIX)


def blob_temporaries(partial: Path) -> list[Path]:
    """Temporaries a killed run left for this blob beside its partial: a state save's
    (``.<blob>.incomplete.parts.<hex>.tmp``) and a small file's write (``.<blob>.<hex>.tmp``)."""
    blob = partial.name.removesuffix(".incomplete")
    try:
        return sorted(partial.parent.glob(f".{glob_escape(blob)}.*.tmp"))
    except OSError:
        return []


def _temporary_of(name: str) -> str | None:
    """The blob whose temporary ``name`` is (``.<blob>.<anything>.tmp``, as :func:`blob_temporaries` globs)."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    blob, dot, rest = name[1:].partition(".")
    return blob if dot and blob and len(rest) >= len(".tmp") else None


class Leftovers:
    """What killed runs left in one folder, listed once: names grouped by the blob they belong to.

    Clearing a file's leftovers with :func:`blob_temporaries` lists the whole folder, once
    per file, which made a pull of many files quadratic; one :class:`Leftovers` per folder
    and pass lists it once.  A temporary a killed run leaves after the listing is only
    clutter: the next pull (or ``gc``) removes it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_blob: dict[str, list[str]] = {}
        try:
            names = os.listdir(folder)
        except OSError:
            names = []
        for name in names:
            blob = _temporary_of(name)
            if blob is None and name.endswith(".incomplete"):
                blob = name.removesuffix(".incomplete")
            elif blob is None and name.endswith(".incomplete" + STATE_SUFFIX):
                blob = name.removesuffix(".incomplete" + STATE_SUFFIX)
            if blob is not None and "." not in blob:
                self._by_blob.setdefault(blob, []).append(name)

    def of(self, partial: Path) -> list[Path]:
        """Everything listed for ``partial``'s blob: temporaries, the partial, its state."""
        blob = partial.name.removesuffix(".incomplete")
        if partial.parent != self.folder or "." in blob:
            return blob_temporaries(partial) + [partial, state_path(partial)]  # not what was listed
        return [self.folder / n for n in self._by_blob.get(blob, ())]

    def any_for(self, blob: str) -> bool:
        return blob in self._by_blob


def clear_leftovers(partial: Path, *, finished: bool, listed: Leftovers | None = None) -> None:
    """Remove what killed runs left for this file (caller holds its lock, so no live writer owns any of it).

    Always the temporaries; with ``finished`` (the blob is in place) also the partial and its state.
    ``listed``: the folder as listed once for the whole pass (else it is listed now, for this file).
    """
    if listed is not None:
        keep = () if finished else (partial.name, state_path(partial).name)
        paths = [p for p in listed.of(partial) if p.name not in keep]
    else:
        paths = blob_temporaries(partial)
        if finished:
            paths += [partial, state_path(partial)]
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            pass  # not ours to remove; the next open refuses it


def load_state(path: Path, *, size: int, sha256: str, block_size: int) -> PartState | None:
    """The state at ``path``; ``None`` when absent.  Raises :class:`BadState` when unusable."""
    try:
        fd = open_file(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except UnsafeEntryError:
        raise BadState("not a regular file") from None
    except OSError as exc:
        raise BadState(f"unreadable ({exc.__class__.__name__})") from None
    try:
        with os.fdopen(fd, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadState(f"unreadable ({exc.__class__.__name__})") from None
    return parse_state(text, size=size, sha256=sha256, block_size=block_size)


def save_state(path: Path, state: PartState) -> int:
    """Atomically replace the state with a snapshot; returns an append-only fd for journal lines.

    No fsync: every block is re-checked on resume, so a stale state is harmless.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = create_new(tmp, append=True)
        try:
            data = (state.to_json() + "\n").encode("utf-8")
            while data:
                data = data[os.write(fd, data):]
            os.replace(tmp, path)
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        # A full disk (or a ^C) must not leave the temporary beside the blobs for ever.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return fd


@dataclass
class Verified:
    """What a partial file really holds, after reading back every recorded block."""

    sums: list[int | None]  # current-version checksums of the intact blocks
    hashed_blocks: int  # leading blocks already fed to ``hasher``
    hasher: hashlib._Hash  # sha256 over the contiguous verified prefix
    bad_blocks: int  # recorded in the state but missing or damaged on disk
    heads: dict[int, tuple[int, int]]  # unfinished block -> (length, sum) of its intact first bytes


def verify_partial(fd: int, state: PartState, roots: ChunkRoots | None = None) -> Verified:
    """Read back every recorded block; keep those whose checksum matches, hash the leading run (into the
    sha256, and into ``roots`` when given).

    Blocks of an older-version state come back re-summed with the current checksum.
    """
    check = _SUMS[state.version][1]
    sums: list[int | None] = [None] * len(state.sums)
    hasher = hashlib.sha256()
    prefix = True
    hashed = 0
    bad = 0
    for i, want in enumerate(state.sums):
        if want is None:
            prefix = False
            continue
        start, end = block_span(i, state.size, state.block_size)
        data = os.pread(fd, end - start, start)
        if len(data) != end - start or check(data) != want:
            bad += 1
            prefix = False
            continue
        sums[i] = want if _SUMS[state.version][1] is _SUMS[STATE_VERSION][1] else block_sum(data)
        if prefix:
            hasher.update(data)
            if roots is not None:
                roots.update(data)
            hashed = i + 1
    heads: dict[int, tuple[int, int]] = {}
    for i, length, want in state.heads:
        data = os.pread(fd, length, i * state.block_size)
        if len(data) == length and block_sum(data) == want:
            heads[i] = (length, want)
        else:
            bad += 1
    return Verified(sums=sums, hashed_blocks=hashed, hasher=hasher, bad_blocks=bad, heads=heads)
