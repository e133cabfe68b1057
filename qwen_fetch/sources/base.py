"""The one interface every hub kind answers (HF-compatible, ModelScope, stores)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from qwen_fetch.core.manifest import RepoListing
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.net.deadline import Deadlines
from qwen_fetch.sources.config import SourceConfig

if TYPE_CHECKING:  # httpx is imported by the sources themselves: a pull served from the cache never needs it
    import httpx


@dataclass(frozen=True)
class FileLocation:
    """Where one file's bytes can be fetched with GET (+ Range)."""

    source: str
    url: str
    client: httpx.Client  # carries the source's auth, bound to its own host


class Source(Protocol):
    config: SourceConfig

    @property
    def name(self) -> str: ...

    def default_revision(self) -> str:
        """The branch used when the user does not name one (``main``, ``master``)."""
        ...

    def resolve(self, repo_id: str, revision: str) -> RepoListing:
        """Resolve a branch/tag/commit to a commit and list its files (sizes, hashes)."""
        ...

    def locate(self, repo_id: str, commit: str, path: SafeRelPath) -> FileLocation:
        """A URL for one file at one commit."""
        ...

    def close(self) -> None: ...


def make_source(config: SourceConfig, *, timeout: float = 30.0, connections: int = 32,
                deadlines: Deadlines | None = None) -> Source:
    """The source for ``config``; ``deadlines`` (default: the built-in ones) bound its API calls."""
    if config.kind != "dir":  # a local folder store is no network
        from qwen_fetch.net.offline import require_network

        require_network(f"source {config.name!r}")
    if config.kind == "hf":
        from qwen_fetch.sources.hf import HFSource

        return HFSource(config, timeout=timeout, connections=connections, deadlines=deadlines)
    if config.kind == "modelscope":
        from qwen_fetch.sources.modelscope import ModelScopeSource

        return ModelScopeSource(config, timeout=timeout, connections=connections, deadlines=deadlines)
    if config.kind in ("dir", "s3"):
        from qwen_fetch.sources.store import StoreSource

        return StoreSource(config)
    from qwen_fetch.core.errors import ConfigError

    raise ConfigError(f"source {config.name!r}: kind {config.kind!r} is not supported by this build",
                      hint="use kind: hf, modelscope, dir or s3")
