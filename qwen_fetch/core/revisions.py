"""Commit ids and revision names: checked before they reach a request or a path (pure).

Both end up on disk: a commit names a snapshot folder (``snapshots/<commit>``), a
branch or tag names a ref file (``refs/<revision>``, as huggingface_hub writes it).
So a commit is only ever hex of a git object id's length, and a revision name
follows git's own ref-name rules (``git check-ref-format``), which already keep
out ``..``, a leading or trailing ``/``, control characters and ``.lock``.
"""

from __future__ import annotations

import unicodedata

from qwen_fetch.core.digests import is_lower_hex

# Git object ids: SHA-1 (every hub today: Hugging Face, ModelScope) and SHA-256 repositories.
COMMIT_ID_LENGTHS = (40, 64)
MAX_REVISION_BYTES = 255  # one ref file name's worth; real branch and tag names are far shorter
_REF_FORBIDDEN = set(" ~^:?*[\\")


def is_commit_id(value: object) -> bool:
    """A full commit id: 40 (or 64) lowercase hex digits.  Nothing else names a snapshot folder."""
    return is_lower_hex(value, *COMMIT_ID_LENGTHS)


def revision_problem(name: object) -> str | None:
    """Why ``name`` is not a valid branch, tag or commit name, or None when it is.

    Git's rules for a ref name, as ``git check-ref-format --allow-onelevel --branch`` applies them:
    no component starts with ``.`` or ends with ``.lock``; no ``..``, ``@{``, control character,
    space, ``~ ^ : ? * [ \\``; no leading, trailing or doubled ``/``; no trailing ``.``; not ``@``;
    no leading ``-``.  Unicode line separators and bidi controls are refused as well (they would
    garble every message that shows the name).
    """
    if not isinstance(name, str) or not name:
        return "empty"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_REVISION_BYTES:
        return f"longer than {MAX_REVISION_BYTES} bytes"
    if name == "@":
        return "'@' alone is not a name"
    if name.startswith("-"):
        return "starts with '-'"
    for c in name:
        if ord(c) < 0x20 or ord(c) == 0x7F or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            return "contains a control or format character"
        if c in _REF_FORBIDDEN:
            return f"contains {c!r}"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "has an empty component (a leading, trailing or doubled '/')"
    if ".." in name:
        return "contains '..'"
    if "@{" in name:
        return "contains '@{'"
    if name.endswith("."):
        return "ends with '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return f"component {part!r} starts with '.'"
        if part.endswith(".lock"):
            return f"component {part!r} ends with '.lock'"
    return None
