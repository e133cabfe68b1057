from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_fetch.core.digests import ROOT_ALGORITHM, Digest
from qwen_fetch.core.errors import ConfigError
from qwen_fetch.core.lockfile import Lock, dump_lock, parse_lock
from qwen_fetch.core.manifest import Pin, PinnedFile, SourceRevision
from qwen_fetch.core.paths import SafeRelPath, UnsafePathError, safe_relpath
from qwen_fetch.core.revisions import revision_problem

SHA = "a" * 64


def _pin(commit: str = "c" * 40, **kw: object) -> Pin:
    files = (PinnedFile(SafeRelPath("config.json"), 10, "b" * 64, git_oid="d" * 40),
             PinnedFile(SafeRelPath("model.safetensors"), 1 << 33, SHA, lfs=True))
    return Pin(revision="main", commit=commit, source="hf-mirror", files=files, **kw)  # type: ignore[arg-type]


def test_dump_is_sorted_and_stable() -> None:
    lock = Lock().with_pin("Z/z", _pin()).with_pin("A/a", _pin(sources=(("modelscope", SourceRevision("master", "e" * 40)),)))
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


# Any name git accepts, including ones YAML 1.1 would read as something else (true, 1.0, 0x1, 24:22).
_revisions = (st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FFF), min_size=1, max_size=12)
              | st.sampled_from(["true", "no", "1.0", "0x1", "24:22", "1_000", "0123", "null", "1e3", "~x"])
              ).filter(lambda r: revision_problem(r) is None)


@st.composite
def _locks(draw: st.DrawFn) -> Lock:
    lock = Lock()
    for mid in draw(st.lists(st.sampled_from(["Qwen/A", "org/b-c", "x/y.z"]), min_size=1, max_size=3, unique=True)):
        paths = draw(st.lists(_paths, min_size=1, max_size=5, unique_by=lambda p: p.casefold()))
        # a path may not also be a directory of another path
        paths = [p for p in paths if not any(q.startswith(p + "/") or p.startswith(q + "/") for q in paths if q != p)]
        sizes: dict[str, int] = {}  # one sha256, one size (a lock that says otherwise is refused)
        files = tuple(PinnedFile(SafeRelPath(p), sizes.setdefault(sha, draw(st.integers(0, 1 << 40))), sha,
                                 lfs=draw(st.booleans()), git_oid=draw(st.none() | _hex40),
                                 root=draw(st.none() | _hex64.map(lambda v: Digest(ROOT_ALGORITHM, v))))
                      for p, sha in ((p, draw(_hex64)) for p in paths))
        files = tuple(sorted(files, key=lambda f: f.path))
        lock = lock.with_pin(mid, Pin(revision=draw(st.sampled_from(["main", "v1.0", "dev/x"]) | _revisions),
                                      commit=draw(_hex40), source="s", files=files))
    return lock


@settings(max_examples=60, deadline=None)
@given(_locks())
def test_roundtrip_property(lock: Lock) -> None:
    text = dump_lock(lock)
    assert parse_lock(text) == lock
    assert dump_lock(parse_lock(text)) == text
    rooted = any(f.root for _, pins in lock.models for p in pins for f in p.files)
    assert text.count("\nversion: 2\n" if rooted else "\nversion: 1\n") == 1


ROOT = Digest(ROOT_ALGORITHM, "f" * 64)


def test_a_lock_without_roots_stays_version_1() -> None:
    """Roots are the only thing version 2 adds: a lock without them is written as a release that knows only
    version 1 reads it."""
    text = dump_lock(Lock().with_pin("A/a", _pin()))
    assert "\nversion: 1\n" in text and "root" not in text


def test_version_1_lock_is_read_and_upgraded_when_roots_are_recorded() -> None:
    v1 = dump_lock(Lock().with_pin("A/a", _pin()))
    lock = parse_lock(v1)
    pin = lock.current("A/a")
    assert pin is not None and all(f.root is None for f in pin.files)
    big = next(f for f in pin.files if f.lfs)
    rooted = Pin(pin.revision, pin.commit, pin.source,
                 tuple(PinnedFile(f.path, f.size, f.sha256, f.lfs, f.git_oid, ROOT if f is big else None)
                       for f in pin.files))
    v2 = dump_lock(lock.with_pin("A/a", rooted))
    assert "\nversion: 2\n" in v2
    assert f"      root: {ROOT_ALGORITHM}:{'f' * 64}\n" in v2
    assert v2.count("root:") == 1  # one line per rooted file: the diff of an upgrade stays small
    assert parse_lock(v2).current("A/a") == rooted
    # The only other change is the version line.
    assert [ln for ln in v2.splitlines() if "root:" not in ln] == v1.replace("version: 1", "version: 2").splitlines()


@pytest.mark.parametrize("value", ["f" * 64, f"sha256:{'f' * 64}", f"{ROOT_ALGORITHM}:{'F' * 64}",
                                   f"{ROOT_ALGORITHM}:{'f' * 63}", "1"])
def test_bad_root_is_a_clear_error(value: str) -> None:
    text = dump_lock(Lock().with_pin("A/a", _pin())).replace("version: 1", "version: 2")
    text = text.replace("      lfs: true\n", f"      lfs: true\n      root: '{value}'\n")
    with pytest.raises(ConfigError, match=r"qwen-fetch.lock:\d+: root must be") as ei:
        parse_lock(text)
    assert "remove the line" in ei.value.hint


def test_root_needs_version_2() -> None:
    text = dump_lock(Lock().with_pin("A/a", _pin()))
    text = text.replace("      lfs: true\n", f"      lfs: true\n      root: {ROOT}\n")
    with pytest.raises(ConfigError, match="unknown key 'root'"):
        parse_lock(text)


@pytest.mark.parametrize("text,needle", [
    ("version: 3\n", "unsupported lockfile version"),
    ("version: 1\nmodels:\n  A/a:\n  - revision: main\n    commit: " + "c" * 40 + "\n    source: s\n    files:\n    - path: x\n      size: 1\n      sha256: nothex\n", ":10:"),
    ("version: 1\nmodels:\n  A/a:\n  - revision: main\n    commit: abc\n    source: s\n    surprise: 1\n    files: []\n", "unknown key 'surprise'"),
    ("version: 1\nmodels:\n  A/a:\n  - revision: main\n    commit: " + "c" * 40 + "\n    source: s\n    files:\n    - path: ../etc/passwd\n      size: 1\n      sha256: " + SHA + "\n", "'..'"),
    ("version: [1\n", "malformed YAML"),
    ("version: 1\nmodels: !!python/object/apply:os.system ['true']\n", "unsupported YAML tag"),
])
def test_bad_lockfiles_are_clear_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_lock(text, "qwen-fetch.lock")
    assert needle in ei.value.message
    assert ei.value.message.startswith("qwen-fetch.lock")


def _entry(*, size: str = "1462", lfs: str = "true", commit: str = "c" * 40, revision: str = "main",
           extra: str = "", version: str = "1") -> str:
    return (f"version: {version}\nmodels:\n  A/a:\n  - revision: {revision}\n    commit: {commit}\n    source: s\n"
            f"    files:\n    - path: model.safetensors\n      size: {size}\n      sha256: {SHA}\n      lfs: {lfs}\n"
            f"{extra}")


# YAML 1.1 reads each of these as a number or a boolean; this parser reads them as text and says so.
@pytest.mark.parametrize("text,line,needle", [
    (_entry(size="24:22"), 9, "got '24:22'"),  # sexagesimal: 1462 in YAML 1.1
    (_entry(size="0x5b6"), 9, "got '0x5b6'"),
    (_entry(size="0o2666"), 9, "got '0o2666'"),
    (_entry(size="1_462"), 9, "got '1_462'"),
    (_entry(size="01462"), 9, "got '01462'"),  # octal 818 in YAML 1.1
    (_entry(size="!!int 0x5b6"), 9, "'0x5b6' is not a plain YAML 1.2 int"),
    (_entry(size="1462.0"), 9, "got 1462.0"),
    (_entry(lfs="yes"), 11, "got 'yes'"),
    (_entry(lfs="on"), 11, "got 'on'"),
    (_entry(lfs="True"), 11, "got 'True'"),
    (_entry(lfs="!!bool yes"), 11, "'yes' is not a plain YAML 1.2 bool"),
    (_entry(version="true"), 1, "unsupported lockfile version True"),
    (_entry(version="1.0"), 1, "unsupported lockfile version 1.0"),
    (_entry(version="0x1"), 1, "unsupported lockfile version '0x1'"),
])
def test_yaml_1_1_scalars_are_refused_with_their_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_lock(text, "qwen-fetch.lock")
    assert ei.value.message.startswith(f"qwen-fetch.lock:{line}: "), ei.value.message
    assert needle in ei.value.message
    assert "--update" not in (ei.value.hint or "")  # `lock --update` reads the same file and fails the same way


def test_plain_scalars_still_read() -> None:
    lock = parse_lock(_entry(size="1462", lfs="false"))
    f = lock.pins("A/a")[0].files[0]
    assert (f.size, f.lfs) == (1462, False)


@pytest.mark.parametrize("commit", ["'..'", "..", "abc", "C" * 40, "c" * 39, "c" * 41, "'../../../x'", "g" * 40,
                                    "'cccccccccccccccccccccccccccccccccccccccc/'", "12345678"])
def test_commit_must_be_a_full_hex_id(commit: str) -> None:
    with pytest.raises(ConfigError, match=r"qwen-fetch.lock:5: commit .* is not a commit id"):
        parse_lock(_entry(commit=commit), "qwen-fetch.lock")


def test_sha256_object_format_commit_is_accepted() -> None:
    assert parse_lock(_entry(commit="d" * 64)).pins("A/a")[0].commit == "d" * 64


def test_source_commit_and_revision_are_checked() -> None:
    extra = "    sources:\n      ms:\n        revision: master\n        commit: '..'\n"
    text = _entry().replace("    files:\n", extra + "    files:\n", 1)
    with pytest.raises(ConfigError, match="qwen-fetch.lock:10: commit '..' is not a commit id"):
        parse_lock(text, "qwen-fetch.lock")
    with pytest.raises(ConfigError, match="qwen-fetch.lock:9: revision 'x/' is not"):
        parse_lock(text.replace("revision: master", "revision: x/"), "qwen-fetch.lock")


@pytest.mark.parametrize("revision", ["x/", "/x", "a//b", "a..b", "-x", "'a b'", ".hidden", "a/.b", "x.lock", "'@'",
                                      "a@{1}", "'a:b'", "'a*'", "a?", "'[a]'", "'a~1'", "a^", "x.", "'a\\b'"])
def test_revision_names_follow_git_rules(revision: str) -> None:
    with pytest.raises(ConfigError, match="qwen-fetch.lock:4: revision .* is not a branch or tag name"):
        parse_lock(_entry(revision=revision), "qwen-fetch.lock")


def test_one_sha256_pinned_with_two_sizes_is_refused() -> None:
    extra = f"    - path: copy.safetensors\n      size: 1463\n      sha256: {SHA}\n      lfs: true\n"
    with pytest.raises(ConfigError) as ei:
        parse_lock(_entry(extra=extra), "qwen-fetch.lock")
    assert ei.value.message.startswith("qwen-fetch.lock:13: ")
    assert "two sizes (1462 for 'model.safetensors', 1463 for 'copy.safetensors')" in ei.value.message
