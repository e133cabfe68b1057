"""What a repository revision holds: pure, frozen data."""

from __future__ import annotations

from dataclasses import dataclass

from qwen_fetch.paths import SafeRelPath


@dataclass(frozen=True)
class RemoteFile:
    """A file as a source lists it.  Nothing here is trusted yet."""

    path: SafeRelPath
    size: int
    sha256: str | None  # content sha256: HF gives it for LFS files, ModelScope for every file
    git_oid: str | None  # git blob id of the content (HF plain files only)
    lfs: bool


@dataclass(frozen=True)
class RepoListing:
    """A revision resolved on one source: its commit and its files, sorted by path."""

    source: str
    repo_id: str  # the id as the user wrote it (before any per-source mapping)
    revision: str
    commit: str
    files: tuple[RemoteFile, ...]

    def by_path(self) -> dict[str, RemoteFile]:
        return {f.path: f for f in self.files}


@dataclass(frozen=True)
class PinnedFile:
    """A file as the lock pins it: the allowlist entry."""

    path: SafeRelPath
    size: int
    sha256: str
    lfs: bool = False
    git_oid: str | None = None  # plain git files: the blob id, which names the cache blob

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
