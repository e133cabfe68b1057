"""What a repository revision holds: pure, frozen data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from qwen_fetch.core.digests import Digest, digest_matches, sha256_digest
from qwen_fetch.core.errors import IntegrityError, Ref
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.core.revisions import is_commit_id


class ListingError(IntegrityError):
    """A listing (from a hub, a store or a lock) that contradicts itself or names an unusable commit."""

    ref = Ref.BAD_LISTING


def digest_size_conflicts(files: Iterable[tuple[str, str | None, int]]) -> list[str]:
    """Every sha256 given two different sizes among ``(path, sha256, size)`` entries, one line each.

    Content is addressed by its sha256 (one blob, one download per digest), so a listing that
    gives one digest two sizes cannot be right for both paths: one of them would be served the
    other's bytes.  Entries without a sha256 (plain git files before hashing) are skipped.
    """
    first: dict[str, tuple[str, int]] = {}
    out: list[str] = []
    for path, sha, size in files:
        if sha is None:
            continue
        seen = first.setdefault(sha, (path, size))
        if seen[1] != size:
            out.append(f"sha256 {sha} is listed with two sizes: {seen[1]} for {seen[0]!r}, {size} for {path!r}")
    return sorted(out)


@dataclass(frozen=True)
class RemoteFile:
    """A file as a source lists it.  Nothing here is trusted yet."""

    path: SafeRelPath
    size: int
    sha256: str | None  # content sha256: HF gives it for LFS files, ModelScope for every file
    git_oid: str | None  # git blob id of the content (HF plain files only)
    lfs: bool

    @property
    def digest(self) -> Digest | None:
        """The content digest the source lists, if it lists one."""
        return sha256_digest(self.sha256) if self.sha256 is not None else None


@dataclass(frozen=True)
class RepoListing:
    """A revision resolved on one source: its commit and its files, sorted by path."""

    source: str
    repo_id: str  # the id as the user wrote it (before any per-source mapping)
    revision: str
    commit: str
    files: tuple[RemoteFile, ...]

    def __post_init__(self) -> None:
        # Checked here so that no source can hand the downloader a listing that breaks either rule.
        if not is_commit_id(self.commit):
            raise ListingError(f"source {self.source!r} named commit {str(self.commit)[:80]!r} for "
                               f"{self.repo_id}@{self.revision}: not a commit id (40 lowercase hex digits)",
                               hint="the mirror is broken or hostile; use another --source")
        conflicts = digest_size_conflicts((f.path, f.sha256, f.size) for f in self.files)
        if conflicts:
            raise ListingError(f"source {self.source!r}: the listing of {self.repo_id}@{self.revision} gives "
                               f"one sha256 two sizes", context=conflicts[:20],
                               hint="the mirror is broken or hostile; nothing was downloaded; use another --source",
                               reference=Ref.DIGEST_SIZE_CONFLICT)

    def by_path(self) -> Mapping[str, RemoteFile]:
        """The files by path, built once: a pull looks each of its files up here."""
        table = self.__dict__.get("_by_path")
        if table is None:
            table = MappingProxyType({f.path: f for f in self.files})
            object.__setattr__(self, "_by_path", table)  # a cache beside the fields (not one of them)
        return table


@dataclass(frozen=True)
class PinnedFile:
    """A file as the lock pins it: the allowlist entry."""

    path: SafeRelPath
    size: int
    sha256: str
    lfs: bool = False
    git_oid: str | None = None  # plain git files: the blob id, which names the cache blob
    # The chunk root (``core.digests.ROOT_ALGORITHM``) of the bytes whose sha256 matched, recorded when a pull
    # verified them: ``verify`` checks it on every core instead of the sha256's one sequential stream.  Files
    # of one chunk have none.  The sha256 stays the pin: it ties the lock to the hub's published digest.
    root: Digest | None = None

    @property
    def digest(self) -> Digest:
        """The pinned content digest (the lockfile's ``sha256`` field)."""
        return sha256_digest(self.sha256)

    def matches(self, size: int | None, digest: Digest | str | None) -> bool:
        """Do ``size`` bytes with ``digest`` (observed, listed, stamped or stored) hold this pinned content?

        ``digest`` is compared with the pinned digest of its algorithm: the sha256, or the chunk root
        when the pin records one; a digest of an algorithm the pin lacks never matches.
        """
        if size != self.size:
            return False
        if isinstance(digest, Digest) and self.root is not None and digest.algorithm == self.root.algorithm:
            return digest_matches(self.root, digest)
        return digest_matches(self.digest, digest)

    @property
    def blob_name(self) -> str:
        """Name of the blob in our cache: always the content sha256 (even for plain git
        files, where huggingface_hub would use the git blob id), so that ``verify`` and
        ``gc`` can check a blob against its name and the lock without any remote."""
        return self.sha256


@dataclass(frozen=True)
class SourceRevision:
    """How one source names a pinned revision (commits differ per hub)."""

    revision: str
    commit: str


@dataclass(frozen=True)
class Pin:
    """One pinned revision of a model: commit plus the allowlist of files."""

    revision: str
    commit: str
    source: str
    files: tuple[PinnedFile, ...]
    sources: tuple[tuple[str, SourceRevision], ...] = ()  # per-source revisions, sorted by name

    def by_path(self) -> dict[str, PinnedFile]:
        return {f.path: f for f in self.files}

    def source_revision(self, source: str) -> SourceRevision | None:
        for name, rev in self.sources:
            if name == source:
                return rev
        return None
