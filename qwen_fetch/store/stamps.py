"""Verification stamps: remember that a file's bytes were hashed, so an unchanged file need not be.

A stamp records what ``lstat`` said about a file when its sha256 was checked:
device, inode, size, ``mtime_ns`` and ``ctime_ns``.  A later reader trusts the
file without re-hashing only when all five still match and the stamp names the
sha256 it needs.  ``mtime`` alone is not enough — ``os.utime``, ``touch -r``,
``cp -p`` and ``rsync -t`` put it back after changing the bytes — but no
unprivileged call sets ``ctime``: every write, ``chmod``, ``utime`` or rename
moves it to the current time.

Two rules keep a stamp from vouching for bytes it never saw:

* the ``stat`` is taken *before* the bytes are hashed, so a change during the
  hash leaves a stale stamp (re-hashed next time), never a wrong one;
* a stamp taken within :data:`RACY_NS` of the file's ``ctime`` is not trusted:
  ``ctime`` moves in clock ticks, and a change later in the same tick would not
  move it (git calls these entries "racily clean").  The next reader re-hashes
  and records a stamp that is trusted.

Stamps live beside the cache, one small file per blob (see :class:`StampStore`),
never in the lockfile.  They are an optimisation, not evidence: whoever can
write the cache can forge one, but could equally replace the blob.  A stamp
that cannot be read or parsed is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from qwen_fetch.core.digests import digest_matches, is_sha256

RACY_NS = 20_000_000  # two ticks of a 100 Hz kernel clock: a change in the same tick leaves ctime unchanged
STAMP_VERSION = 1


@dataclass(frozen=True)
class FileStat:
    """What identifies one state of one file's bytes (without reading them)."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_stat(path: Path) -> FileStat | None:
    """The file's :class:`FileStat`, or ``None`` when it is missing or not a regular file (links not followed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return FileStat.of(st) if stat.S_ISREG(st.st_mode) else None


def unchanged(then: FileStat, taken_ns: int, now: FileStat) -> bool:
    """Is a file whose ``stat`` was ``then`` (observed at ``taken_ns``) provably untouched if it is ``now``?

    The one rule every "already verified" cache uses (``pull``'s stamps, ``serve --lock``).
    """
    return taken_ns - then.ctime_ns >= RACY_NS and then == now


@dataclass(frozen=True)
class Stamp:
    """``sha256`` was checked against the bytes of the file in state ``stat``, observed at ``taken_ns``."""

    stat: FileStat
    sha256: str
    taken_ns: int


def take(st: FileStat, sha256: str, *, now_ns: int | None = None) -> Stamp:
    """A stamp for a ``stat`` observed just now (call before hashing, record only if the hash matched)."""
    return Stamp(st, sha256, time.time_ns() if now_ns is None else now_ns)


def vouches(stamp: Stamp | None, current: FileStat | None, sha256: str, size: int) -> bool:
    """May a file whose ``lstat`` is ``current`` be taken to hold ``size`` bytes with ``sha256``, unread?

    Both come from the pin: a pin whose size was edited must not be honoured by a stamp
    that only matches its digest.
    """
    return (stamp is not None and current is not None and digest_matches(sha256, stamp.sha256) and current.size == size
            and unchanged(stamp.stat, stamp.taken_ns, current))


def encode(stamp: Stamp) -> bytes:
    s = stamp.stat
    return json.dumps({"v": STAMP_VERSION, "sha256": stamp.sha256, "dev": s.dev, "ino": s.ino, "size": s.size,
                       "mtime_ns": s.mtime_ns, "ctime_ns": s.ctime_ns, "taken_ns": stamp.taken_ns},
                      sort_keys=True).encode() + b"\n"


def decode(data: bytes) -> Stamp | None:
    """The stamp in ``data``, or ``None`` for anything that is not exactly a stamp this version writes."""
    try:
        d = json.loads(data)
    except ValueError:
        return None
    ints = ("dev", "ino", "size", "mtime_ns", "ctime_ns", "taken_ns")
    if (not isinstance(d, dict) or d.get("v") != STAMP_VERSION or not isinstance(d.get("sha256"), str)
            or not is_sha256(d["sha256"])
            or not all(type(d.get(k)) is int and d[k] >= 0 for k in ints)):
        return None
    return Stamp(FileStat(d["dev"], d["ino"], d["size"], d["mtime_ns"], d["ctime_ns"]), d["sha256"], d["taken_ns"])


class StampStore:
    """One stamp file per key in one folder; writes are atomic, unreadable stamps count as absent.

    For the HF cache the folder is ``models--ORG--NAME/.qwen-fetch/stamps/`` (keys: blob
    names): huggingface_hub only reads ``blobs/``, ``snapshots/`` and ``refs/`` of a repo
    folder, ``gc`` and ``verify --all`` likewise, and deleting the repo folder deletes its
    stamps.  For a ``--local-dir`` it is ``.cache/qwen-fetch/stamps/`` (keys derived from
    the relative path), next to the partial downloads.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad stamp key {key!r}")
        return self.folder / key

    def read(self, key: str) -> Stamp | None:
        try:
            with open(self._path(key), "rb") as f:
                data = f.read(4096)
        except OSError:
            return None
        return decode(data)

    def write(self, key: str, stamp: Stamp) -> None:
        """Record a stamp (best effort: a stamp that cannot be written only costs a re-hash later)."""
        dest = self._path(key)
        tmp = self.folder / f".{key}.{secrets.token_hex(4)}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                os.write(fd, encode(stamp))
            finally:
                os.close(fd)
            os.replace(tmp, dest)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def forget(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except OSError:
            pass


def repo_stamps(repo_dir: Path) -> StampStore:
    """The stamps of a cache repo's blobs (keys: blob names): ``models--ORG--NAME/.qwen-fetch/stamps/``."""
    return StampStore(repo_dir / ".qwen-fetch" / "stamps")


def folder_stamps(meta_dir: Path) -> StampStore:
    """The stamps of a ``--local-dir`` folder's files, kept in its ``.cache/qwen-fetch/``."""
    return StampStore(meta_dir / "stamps")


def path_key(path: str) -> str:
    """A folder file's stamp key: a digest of its relative path (one stamp per path)."""
    return "path-" + hashlib.sha256(path.encode()).hexdigest()
