"""Source kinds by name: the one table to extend when a new kind of hub is added.

Each kind lives in its own module under ``qwen_fetch/sources/`` and exposes a
:class:`~qwen_fetch.sources.base.SourceKind` (config keys, default branch,
revision policy, how to open it).  A module is imported the first time its kind
is asked for, so ``import qwen_fetch.sources`` and parsing a mirrors.yaml that
names only some kinds stay cheap.  Adding a kind: a module and a line below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from qwen_fetch.core.errors import ConfigError

if TYPE_CHECKING:
    from qwen_fetch.net.deadline import Deadlines
    from qwen_fetch.net.pools import Pools
    from qwen_fetch.sources.base import Source, SourceKind
    from qwen_fetch.sources.config import SourceConfig

# kind name -> (module, attribute holding its SourceKind)
_KINDS: dict[str, tuple[str, str]] = {
    "hf": ("qwen_fetch.sources.hf", "KIND"),
    "modelscope": ("qwen_fetch.sources.modelscope", "KIND"),
    "dir": ("qwen_fetch.sources.store", "DIR"),
    "s3": ("qwen_fetch.sources.store", "S3"),
}
KIND_NAMES: tuple[str, ...] = tuple(_KINDS)


def unknown_kind(kind: str, source: str) -> ConfigError:
    return ConfigError(f"source {source!r}: kind {kind!r} is not supported by this build",
                       hint="use kind: " + ", ".join(KIND_NAMES[:-1]) + " or " + KIND_NAMES[-1])


def source_kind(kind: str, source: str = "?") -> SourceKind:
    """The :class:`SourceKind` named ``kind`` (``source`` names the source for the error)."""
    entry = _KINDS.get(kind)
    if entry is None:
        raise unknown_kind(kind, source)
    module, attr = entry
    found: SourceKind = getattr(importlib.import_module(module), attr)
    return found


def kind_of(config: SourceConfig) -> SourceKind:
    return source_kind(config.kind, config.name)


def store_kinds() -> tuple[str, ...]:
    """The kinds ``qwen-fetch sync`` can write into."""
    return tuple(k for k in KIND_NAMES if source_kind(k).stores)


def default_revision(config: SourceConfig) -> str:
    """The branch ``config``'s source is asked for when the user names none (no connection made)."""
    return kind_of(config).default_revision(config)


def make_source(config: SourceConfig, *, http: Pools | None = None, timeout: float = 30.0,
                deadlines: Deadlines | None = None) -> Source:
    """The source for ``config``, making its API calls through ``http`` (a pull's :class:`Pools`; None: a
    small pool of its own, with ``timeout``); ``deadlines`` (default: the built-in ones) bound those calls."""
    kind = kind_of(config)
    if kind.needs_network:
        from qwen_fetch.net.offline import require_network

        require_network(f"source {config.name!r}")
    return kind.open(config, http=http, timeout=timeout, deadlines=deadlines)
