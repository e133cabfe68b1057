from __future__ import annotations

import pytest

from qwen_fetch.core.paths import SafeRelPath as P
from qwen_fetch.core.paths import UnsafePathError, check_collisions, safe_relpath


@pytest.mark.parametrize("raw", ["../x", "a/../../x", "/etc/passwd", "C:/x", "a\\b", "a\x00b", "a\nb", "a\x85b", "a\u2028b", "a\u202eb", "a//b", "./a",
                                 "", "x" * 300, "a/" * 600 + "b", ".git/config", None, 5])
def test_refused(raw: object) -> None:
    with pytest.raises(UnsafePathError):
        safe_relpath(raw)


# Git refuses these at any depth, in any ASCII case, and in the spellings that name ".git" on
# HFS+ (ignored code points) and NTFS (trailing dots/spaces, streams, the 8.3 alias); ".hg" alike.
VCS_SPELLINGS = ["sub/.git/HEAD", "sub/.git/config", "a/b/.git", ".GIT/config", "x/.Git/hooks/post-checkout",
                 "x/.git./config", "x/.git /config", "x/.git. . /config", "x/.git::$INDEX_ALLOCATION/config",
                 "x/git~1/config", "x/GIT~1/config", "x/.g\u200cit/config", "x/\ufeff.git/config",
                 "x/.gi\u206at/config", "x/.git\u200d/config", "sub/.hg/hgrc", "x/.HG/hgrc", "x/.hg./hgrc",
                 "x/hg~1/hgrc", "x/.h\u200cg/hgrc"]


@pytest.mark.parametrize("raw", VCS_SPELLINGS)
def test_version_control_folders_refused_at_any_depth(raw: str) -> None:
    with pytest.raises(UnsafePathError, match="version-control folder"):
        safe_relpath(raw)


@pytest.mark.parametrize("raw", ["config.json", "a/b/c.safetensors", "中文/模型.bin", "x..y", ".gitattributes",
                                 "sub/.gitattributes", "sub/.gitignore", "a/.git-blame-ignore-revs", "a/git/b",
                                 "a/.gitx/b", "a/git~2/b", "a/.hgignore", "a/hg/b", "a/.gıt/b", "a/.svn/entries"])
def test_accepted(raw: str) -> None:
    assert safe_relpath(raw) == raw


@pytest.mark.parametrize("paths", [["A.json", "a.json"], ["caf\u00e9", "cafe\u0301"], ["a", "a/b"], ["x", "x"]])
def test_collisions(paths: list[str]) -> None:
    with pytest.raises(UnsafePathError):
        check_collisions([P(p) for p in paths])
