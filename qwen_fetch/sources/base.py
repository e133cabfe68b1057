"""The interfaces every source kind answers (HF-compatible, ModelScope, stores).

Two objects per kind, both defined in the kind's own module (``sources/<kind>.py``)
and found through :mod:`qwen_fetch.sources.registry`:

* a :class:`SourceKind`: what is known from ``mirrors.yaml`` alone, with no
  connection — its config keys, its default branch, which revision to ask it for;
* a :class:`Source`, opened from it: resolve a revision and list files, locate a
  file (a :class:`~qwen_fetch.net.location.FileLocation`: where, not a connection),
  check the endpoint's health.

Nothing here imports a concrete source, so a kind module may import this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from qwen_fetch.core.manifest import Pin, RepoListing
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.core.revisions import is_commit_id
from qwen_fetch.net.location import FileLocation

if TYPE_CHECKING:
    from qwen_fetch.core.errors import ConfigError
    from qwen_fetch.net.deadline import Deadlines
    from qwen_fetch.net.pools import Pools
    from qwen_fetch.sources.config import Config, SourceConfig
    from qwen_fetch.store.backends import ObjectStore


@dataclass(frozen=True)
class Reachability:
    """One cheap request to a source's endpoint: how long it took, and why it failed (None: reachable)."""

    latency_ms: float | None
    problem: str | None = None


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
        """Where one file at one commit is: URL, headers, route (no connection: the caller's pools read it)."""
        ...

    def reach(self) -> Reachability | None:
        """Health check of the endpoint (never raises for network trouble); None when there is none to check."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RevisionContext:
    """What a pull knows when it picks the revision to ask one source for."""

    pin: Pin | None  # the lock's pin, if any
    primary: RepoListing | None  # the listing of the first source that answered, once there is one
    requested: str | None  # ``--revision``
    kind_of: Callable[[str], str | None]  # a configured source's kind by name; None for one no longer configured

    @classmethod
    def within(cls, config: Config, *, pin: Pin | None, primary: RepoListing | None,
               requested: str | None) -> RevisionContext:
        """The context for the sources of ``config``."""
        return cls(pin=pin, primary=primary, requested=requested, kind_of=config.kind_of)


# How a kind reports a bad config key: ``fail(key, message)`` -> the error naming the key's line.
Fail = Callable[[str, str], "ConfigError"]


class SourceKind(Protocol):
    """Everything about one kind that needs no connection."""

    name: str  # the ``kind:`` value in mirrors.yaml
    keys: frozenset[str]  # config keys only this kind accepts (beyond the common ones)
    needs_network: bool  # False: opening it is allowed offline (a local folder)
    stores: bool  # ``qwen-fetch sync`` can write into it (see :meth:`open_store`)
    commit_mismatch_hint: str  # the hint when it resolves a pinned revision to another commit

    def configure(self, raw: Mapping[str, Any], config: SourceConfig, fail: Fail) -> SourceConfig:
        """Check the kind-specific parts of one ``sources:`` entry (``raw``) and fill in the kind's defaults."""
        ...

    def default_revision(self, config: SourceConfig) -> str:
        """The branch asked for when the user names none."""
        ...

    def revision_for(self, config: SourceConfig, ctx: RevisionContext) -> str:
        """The revision (branch/tag name or commit id) to ask a source of this kind for."""
        ...

    def open_store(self, config: SourceConfig, *, s3_endpoint_url: str | None = None) -> ObjectStore | None:
        """The store ``sync`` writes into for this source (None for a hub); ``s3_endpoint_url`` overrides the
        source's own."""
        ...

    def open(self, config: SourceConfig, *, http: Pools | None, timeout: float,
             deadlines: Deadlines | None) -> Source:
        """The source itself, making its API calls through ``http`` (None: a small pool of its own, closed
        with it).  May raise :class:`~qwen_fetch.core.errors.QFError` for an unusable setting."""
        ...


def hub_revision(config: SourceConfig, ctx: RevisionContext, *, default: str, by_name: bool,
                 same_family: Callable[[str | None], bool]) -> str:
    """The revision to ask a hub for (pure).

    Commit ids are only meaningful within one family of hubs (HF-compatible ones
    share commits; ModelScope has its own); ``by_name`` hubs are addressed by
    branch/tag name because they do not reliably accept a commit id.  With a pin,
    the pin's source, a revision the pin recorded for this source, or a hub of
    the pin's family get the pinned revision; any other hub its own default
    branch (the pinned content hashes decide what it may serve).  Without a pin,
    a fallback of the primary's family follows the primary; ``--revision main`` /
    ``master`` means each hub's own default branch.
    """
    def pick(name: str, commit: str) -> str:
        return name if by_name else commit

    pin, primary = ctx.pin, ctx.primary
    if pin is not None:
        if config.name == pin.source:
            return pick(pin.revision, pin.commit)
        recorded = pin.source_revision(config.name)
        if recorded is not None:
            return pick(recorded.revision, recorded.commit)
        if same_family(ctx.kind_of(pin.source)):
            return pick(pin.revision, pin.commit)
        return default
    if primary is not None and same_family(ctx.kind_of(primary.source)):
        return pick(primary.revision, primary.commit)
    rev = ctx.requested
    if rev is None or rev in ("main", "master") or (primary is not None and is_commit_id(rev)):
        return default
    return rev
