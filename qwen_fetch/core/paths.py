"""Turning a path that came from the network into something safe to join.

A mirror is untrusted: its file listing may contain ``..``, absolute paths,
backslashes, control characters or names that collide on a case-insensitive
file system.  :func:`safe_relpath` is the only way to obtain a
:data:`SafeRelPath`, and only a ``SafeRelPath`` is ever joined to a directory.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import NewType

from qwen_fetch.core.errors import IntegrityError, Ref

SafeRelPath = NewType("SafeRelPath", str)

MAX_PATH_BYTES = 1024
MAX_COMPONENT_BYTES = 255


class UnsafePathError(IntegrityError):
    ref = Ref.UNSAFE_PATH


_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _is_control(c: str) -> bool:
    """C0/C1 controls, line/paragraph separators (YAML line breaks), surrogates, bidi overrides."""
    return unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs") or c in _BIDI


def safe_relpath(raw: object) -> SafeRelPath:
    """Validate a repository-relative POSIX path from a listing, or raise."""
    if not isinstance(raw, str) or not raw:
        raise UnsafePathError(f"refused file path {raw!r}: not a non-empty string",
                              hint="the source's file listing is malformed; try another --source")
    shown = repr(raw[:120])
    if any(_is_control(c) for c in raw):
        raise UnsafePathError(f"refused file path {shown}: control character in name",
                              hint="the source's file listing is hostile or corrupt")
    if "\\" in raw:
        raise UnsafePathError(f"refused file path {shown}: backslash in name",
                              hint="the source's file listing is hostile or corrupt")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafePathError(f"refused file path {shown}: absolute path",
                              hint="the source's file listing is hostile or corrupt")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise UnsafePathError(f"refused file path {shown}...: longer than {MAX_PATH_BYTES} bytes",
                              hint="the source's file listing is hostile or corrupt")
    parts = raw.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(f"refused file path {shown}: empty, '.' or '..' component",
                                  hint="the source's file listing is hostile or corrupt")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            raise UnsafePathError(f"refused file path {shown}: a name longer than "
                                  f"{MAX_COMPONENT_BYTES} bytes",
                                  hint="the source's file listing is hostile or corrupt")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError(f"refused file path {shown}: not valid UTF-8",
                              hint="the source's file listing is hostile or corrupt") from None
    vcs = next((part for part in parts if is_vcs_dir_name(part)), None)
    if vcs is not None:
        raise UnsafePathError(f"refused file path {shown}: version-control folder {ascii(vcs)} "
                              "(a hub cannot hold one; written to disk, its config would run commands)",
                              hint="the source's file listing is hostile or corrupt")
    if parts[0].casefold() == ".cache" or ".qwen-fetch" in parts:
        raise UnsafePathError(f"refused file path {shown}: reserved directory",
                              hint="the source's file listing is hostile or corrupt")
    return SafeRelPath(str(PurePosixPath(raw)))


# Code points HFS+ ignores in names, so ".g\u200cit" opens ".git" on macOS (git's next_hfs_char).
_HFS_IGNORED = frozenset("\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                         "\u206a\u206b\u206c\u206d\u206e\u206f\ufeff")
# Folders whose config a version-control tool executes from (git: core.fsmonitor, hooks;
# Mercurial: [hooks] and [extensions] in .hg/hgrc) when run anywhere below them.
_VCS_DIRS = (".git", ".hg")


def is_vcs_dir_name(component: str) -> bool:
    """Whether one path component names a git or Mercurial folder on some file system.

    Git's own rules (``is_hfs_dotgit``, ``is_ntfs_dotgit``, ``verify_dotfile``), applied to
    ``.hg`` as well: any ASCII case; HFS+-ignored code points anywhere (macOS); trailing dots
    and spaces, an NTFS stream suffix (``:...``) and the 8.3 short name (``GIT~1``) on Windows.
    """
    hfs = "".join(c for c in component if c not in _HFS_IGNORED)
    ntfs = component.split(":", 1)[0].rstrip(" .")
    for name in _VCS_DIRS:
        short = name[1:7] + "~1"  # the 8.3 alias Windows gives ".git": "GIT~1"
        if hfs.isascii() and hfs.lower() == name:
            return True
        if ntfs.isascii() and ntfs.lower() in (name, short):
            return True
    return False


def check_collisions(paths: Iterable[SafeRelPath]) -> None:
    """Refuse listings whose names collide once written to disk.

    Two names that differ only by case or by Unicode normalisation land on the
    same file on macOS/Windows file systems, and a file that is also used as a
    directory (``a`` and ``a/b``) cannot be laid out at all.
    """
    seen: dict[str, str] = {}
    all_paths = sorted(paths)
    as_set = set(all_paths)
    for p in all_paths:
        key = unicodedata.normalize("NFC", p).casefold()
        if key in seen and seen[key] != p:
            a, b = seen[key], p
            # NFC and NFD spellings print identically: show the code points so the user sees why.
            shown = (ascii(a), ascii(b)) if not (a.isascii() and b.isascii()) else (repr(a), repr(b))
            raise UnsafePathError(
                f"refused file listing: {shown[0]} and {shown[1]} collide (case or Unicode normalisation)",
                hint="the source's file listing is hostile or corrupt")
        if key in seen:
            raise UnsafePathError(f"refused file listing: {p!r} is listed twice",
                                  hint="the source's file listing is hostile or corrupt")
        seen[key] = p
        parent = PurePosixPath(p).parent
        while str(parent) != ".":
            if str(parent) in as_set:
                raise UnsafePathError(
                    f"refused file listing: {str(parent)!r} is both a file and a directory",
                    hint="the source's file listing is hostile or corrupt")
            parent = parent.parent
