from __future__ import annotations

import pytest

from qwen_fetch.paths import UnsafePathError, check_collisions, safe_relpath
from qwen_fetch.paths import SafeRelPath as P


@pytest.mark.parametrize("raw", ["../x", "a/../../x", "/etc/passwd", "C:/x", "a\\b", "a\x00b", "a\nb", "a\x85b", "a\u2028b", "a\u202eb", "a//b", "./a",
                                 "", "x" * 300, "a/" * 600 + "b", ".git/config", None, 5])
def test_refused(raw: object) -> None:
    with pytest.raises(UnsafePathError):
        safe_relpath(raw)


@pytest.mark.parametrize("raw", ["config.json", "a/b/c.safetensors", "中文/模型.bin", "x..y", ".gitattributes"])
def test_accepted(raw: str) -> None:
    assert safe_relpath(raw) == raw


@pytest.mark.parametrize("paths", [["A.json", "a.json"], ["caf\u00e9", "cafe\u0301"], ["a", "a/b"], ["x", "x"]])
def test_collisions(paths: list[str]) -> None:
    with pytest.raises(UnsafePathError):
        check_collisions([P(p) for p in paths])
