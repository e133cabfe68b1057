"""Offline mode: when set, no command opens a network connection.

Three switches, as users of ``hf`` and CI systems expect them:

* ``--offline`` (a global flag, and one on every command that can touch the network);
* ``QWEN_FETCH_OFFLINE=1``;
* ``HF_HUB_OFFLINE=1`` (huggingface_hub's switch), unless ``QWEN_FETCH_OFFLINE`` is set
  (``QWEN_FETCH_OFFLINE=0`` keeps qwen-fetch online while transformers stays offline).

Truthy values are huggingface_hub's: ``1``, ``ON``, ``YES``, ``TRUE`` (any case).
The checks sit where connections are made (:func:`qwen_fetch.net.http.make_client`,
:func:`qwen_fetch.sources.registry.make_source`, the S3 store), so nothing slips through;
``pull`` itself answers from the cache before it would build any source.
"""

from __future__ import annotations

import os

from qwen_fetch.core.errors import Ref, SourceError

_TRUE = frozenset({"1", "ON", "YES", "TRUE"})
_forced = False


class OfflineError(SourceError):
    """The network is needed but forbidden (exit 4, like any source that cannot be reached)."""

    ref = Ref.OFFLINE


def set_offline(on: bool = True) -> None:
    """The ``--offline`` flag: forbid the network for the rest of this process."""
    global _forced
    _forced = on


def offline_reason(flag: bool = False) -> str | None:
    """Why the network is forbidden (``"--offline"``, ``"HF_HUB_OFFLINE=1"``, ...), or ``None`` if it is not."""
    if flag or _forced:
        return "--offline"
    own = os.environ.get("QWEN_FETCH_OFFLINE", "").strip()
    if own:
        return f"QWEN_FETCH_OFFLINE={own}" if own.upper() in _TRUE else None
    hf = os.environ.get("HF_HUB_OFFLINE", "").strip()
    return f"HF_HUB_OFFLINE={hf}" if hf.upper() in _TRUE else None


ONLINE_HINT = "drop --offline and unset HF_HUB_OFFLINE / QWEN_FETCH_OFFLINE (or set QWEN_FETCH_OFFLINE=0) to allow it"


def require_network(what: str) -> None:
    """Raise :class:`OfflineError` if offline mode forbids ``what`` (e.g. "source 'hf-mirror'")."""
    reason = offline_reason()
    if reason is not None:
        raise OfflineError(f"offline ({reason}): {what} needs the network", hint=ONLINE_HINT)
