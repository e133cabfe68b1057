from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_fetch.errors import ConfigError
from qwen_fetch.lockfile import Lock, dump_lock, parse_lock
from qwen_fetch.manifest import Pin, PinnedFile, SourceRevision
from qwen_fetch.paths import SafeRelPath, UnsafePathError, safe_relpath

SHA = "a" * 64


def _pin(commit: str = "c" * 40, **kw: object) -> Pin:
    files = (PinnedFile(SafeRelPath("config.json"), 10, "b" * 64, git_oid="d" * 40),
             PinnedFile(SafeRelPath("model.safetensors"), 1 << 33, SHA, lfs=True))
    return Pin(revision="main", commit=commit, source="hf-mirror", files=files, **kw)  # type: ignore[arg-type]


def test_dump_is_sorted_and_stable() -> None:
    lock = Lock().with_pin("Z/z", _pin()).with_pin("A/a", _pin(sources=(("modelscope", SourceRevision("master", "x" * 40)),)))
    text = dump_lock(lock)
    assert text.index("A/a") < text.index("Z/z")
    assert "version: 1" in text
    assert parse_lock(text) == lock
    assert dump_lock(parse_lock(text)) == text


def test_update_keeps_previous_pin_for_rollback() -> None:
    lock = Lock().with_pin("A/a", _pin("1" * 40)).with_pin("A/a", _pin("2" * 40)).with_pin("A/a", _pin("3" * 40))
    assert [p.commit[0] for p in lock.pins("A/a")] == ["3", "2"]
    assert lock.current("A/a").commit == "3" * 40  # type: ignore[union-attr]


def _ok(s: str) -> bool:
    try:
        safe_relpath(s)
        return True
    except UnsafePathError:
        return False


_names = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, blacklist_characters="/"),
                 min_size=1, max_size=20).filter(_ok)
_paths = st.lists(_names, min_size=1, max_size=3).map("/".join)
_hex64 = st.binary(min_size=1, max_size=8).map(lambda b: hashlib.sha256(b).hexdigest())
_hex40 = st.binary(min_size=1, max_size=8).map(lambda b: hashlib.sha1(b).hexdigest())


@st.composite
def _locks(draw: st.DrawFn) -> Lock:
    lock = Lock()
    for mid in draw(st.lists(st.sampled_from(["Qwen/A", "org/b-c", "x/y.z"]), min_size=1, max_size=3, unique=True)):
        paths = draw(st.lists(_paths, min_size=1, max_size=5, unique_by=lambda p: p.casefold()))
        # a path may not also be a directory of another path
        paths = [p for p in paths if not any(q.startswith(p + "/") or p.startswith(q + "/") for q in paths if q != p)]
        files = tuple(PinnedFile(SafeRelPath(p), draw(st.integers(0, 1 << 40)), draw(_hex64),
                                 lfs=draw(st.booleans()), git_oid=draw(st.none() | _hex40)) for p in paths)
        files = tuple(sorted(files, key=lambda f: f.path))
        lock = lock.with_pin(mid, Pin(revision=draw(st.sampled_from(["main", "v1.0", "dev/x"])),
                                      commit=draw(_hex40), source="s", files=files))
    return lock


@settings(max_examples=60, deadline=None)
@given(_locks())
def test_roundtrip_property(lock: Lock) -> None:
    text = dump_lock(lock)
    assert parse_lock(text) == lock
    assert dump_lock(parse_lock(text)) == text


@pytest.mark.parametrize("text,needle", [
    ("version: 2\n", "unsupported lockfile version"),
    ("version: 1\nmodels:\n  A/a:\n  - revision: main\n    commit: abc\n    source: s\n    files:\n    - path: x\n      size: 1\n      sha256: nothex\n", ":10:"),
    ("version: 1\nmodels:\n  A/a:\n  - revision: main\n    commit: abc\n    source: s\n    surprise: 1\n    files: []\n", "unknown key 'surprise'"),
    ("version: 1\nmodels:\n  A/a:\n  - revision: main\n    commit: abc\n    source: s\n    files:\n    - path: ../etc/passwd\n      size: 1\n      sha256: " + SHA + "\n", "'..'"),
    ("version: [1\n", "malformed YAML"),
    ("version: 1\nmodels: !!python/object/apply:os.system ['true']\n", "unsupported YAML tag"),
])
def test_bad_lockfiles_are_clear_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_lock(text, "qwen-fetch.lock")
    assert needle in ei.value.message
    assert ei.value.message.startswith("qwen-fetch.lock")
