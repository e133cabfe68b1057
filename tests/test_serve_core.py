"""Pure parts of `serve`: range selection, routing, LFS pointers, tree and repo-info documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_fetch.core.byteranges import select_span
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.serve.catalog import ServedFile, Snapshot, git_oid_of, guess_lfs, lfs_pointer
from qwen_fetch.serve.server import repo_info_doc, resolve_headers, route, tree_doc
from qwen_fetch.store.stamps import FileStat

SHA = "d88b0d6a6ff9c3f8151f9d3228f57092aaea997f09af009eefd7373a77b5abb9"


@pytest.mark.parametrize(("header", "if_range", "expect"), [
    (None, None, (200, 0, 99)),
    ("bytes=0-9", None, (206, 0, 9)),
    ("bytes=90-", None, (206, 90, 99)),
    ("bytes=90-500", None, (206, 90, 99)),  # end clamped to the size
    ("bytes=-10", None, (206, 90, 99)),  # suffix
    ("bytes=-500", None, (206, 0, 99)),
    ("bytes=100-", None, (416, 0, -1)),  # starts at the end
    ("bytes=-0", None, (416, 0, -1)),
    ("bytes=5-2", None, (200, 0, 99)),  # invalid: ignored
    ("bytes=0-1,5-6", None, (200, 0, 99)),  # multi-range: ignored
    ("items=0-1", None, (200, 0, 99)),
    ("bytes=0-9", '"etag1"', (206, 0, 9)),  # If-Range matches
    ("bytes=0-9", '"other"', (200, 0, 99)),  # changed: whole file
    ("bytes=0-9", 'W/"etag1"', (200, 0, 99)),  # weak never matches
    ("bytes=0-9", "Sat, 01 Jan 2000 00:00:00 GMT", (200, 0, 99)),  # dates never match
])
def test_select_span(header: str | None, if_range: str | None, expect: tuple[int, int, int]) -> None:
    s = select_span(header, 100, if_range=if_range, etag="etag1")
    assert (s.status, s.start, s.end) == expect
    if s.status == 206:
        assert s.content_range() == f"bytes {s.start}-{s.end}/100"
        assert s.length == s.end - s.start + 1
    if s.status == 416:
        assert s.content_range() == "bytes */100" and s.length == 0


def test_routes_unquote_after_splitting() -> None:
    assert route("/api/models/Qwen/M/revision/refs%2Fpr%2F1") == ("info", {"repo": "Qwen/M", "rev": "refs/pr/1"})
    assert route("/api/models/Qwen/M") == ("info", {"repo": "Qwen/M", "rev": "main"})
    assert route("/api/models/Qwen/M/tree/main/sub/dir") == ("tree", {"repo": "Qwen/M", "rev": "main", "path": "sub/dir"})
    assert route("/Qwen/M/resolve/v1%2F2/a/b%20c.json") == (
        "resolve", {"repo": "Qwen/M", "rev": "v1/2", "path": "a/b c.json"})
    assert route("/api/datasets/x/y/revision/main") == ("other-type", {"repo": "x/y"})
    assert route("/healthz") == ("health", {})
    assert route("/Qwen/M/blob/main/x") is None
    assert route("/api/models/Qwen/M/discussions") is None


def test_git_oid_and_lfs_pointer_match_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_oid_of(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    ptr = lfs_pointer(SHA, 497764107)
    assert ptr == (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + SHA.encode() + b"\nsize 497764107\n")
    assert len(ptr) == 134  # the pointerSize the Hub lists for such a file


def _file(path: str, size: int, lfs: bool) -> ServedFile:
    sha = SHA if lfs else None
    oid = git_oid_of(lfs_pointer(SHA, size)) if lfs else "1" * 40
    return ServedFile(SafeRelPath(path), Path("/nonexistent"), size, sha, oid, lfs, (FileStat(0, 0, size, 0, 0), 0))


SNAP = Snapshot("Qwen/M", "c" * 40, (
    _file("config.json", 10, False),
    _file("model.safetensors", 1000, True),
    _file("sub/a.json", 3, False),
    _file("sub/deep/b.bin", 5, True),
))


def test_tree_doc_recursive_and_not() -> None:
    rec = tree_doc(SNAP, "", True)
    assert rec is not None
    assert [(e["type"], e["path"]) for e in rec] == [
        ("file", "config.json"), ("file", "model.safetensors"), ("directory", "sub"), ("file", "sub/a.json"),
        ("directory", "sub/deep"), ("file", "sub/deep/b.bin")]
    lfs = next(e for e in rec if e["path"] == "model.safetensors")
    assert lfs["lfs"] == {"oid": SHA, "size": 1000, "pointerSize": len(lfs_pointer(SHA, 1000))}
    assert lfs["oid"] == git_oid_of(lfs_pointer(SHA, 1000))
    assert "lfs" not in next(e for e in rec if e["path"] == "config.json")
    top = tree_doc(SNAP, "", False)
    assert top is not None and [e["path"] for e in top] == ["config.json", "model.safetensors", "sub"]
    sub = tree_doc(SNAP, "sub", False)
    assert sub is not None and [e["path"] for e in sub] == ["sub/a.json", "sub/deep"]
    assert tree_doc(SNAP, "nope", True) is None


def test_repo_info_doc_blobs_and_expand() -> None:
    doc = repo_info_doc(SNAP, blobs=True, expand=[], modified=0.0)
    assert doc["sha"] == "c" * 40 and doc["id"] == "Qwen/M"
    sib = {s["rfilename"]: s for s in doc["siblings"]}
    assert sib["model.safetensors"]["lfs"] == {"sha256": SHA, "size": 1000, "pointerSize": len(lfs_pointer(SHA, 1000))}
    assert sib["config.json"] == {"rfilename": "config.json", "size": 10, "blobId": "1" * 40}
    plain = repo_info_doc(SNAP, blobs=False, expand=[], modified=0.0)
    assert plain["siblings"][0] == {"rfilename": "config.json"}
    only = repo_info_doc(SNAP, blobs=False, expand=["sha"], modified=0.0)
    assert set(only) == {"_id", "id", "sha"}


def test_resolve_headers_lfs_vs_plain() -> None:
    lfs = resolve_headers(SNAP.files[1], "c" * 40, "main")
    assert lfs["ETag"] == f'"{SHA}"' and lfs["X-Linked-Etag"] == f'"{SHA}"' and lfs["X-Linked-Size"] == "1000"
    assert lfs["Cache-Control"] == "no-cache"  # a branch moves
    plain = resolve_headers(SNAP.files[0], "c" * 40, "c" * 40)
    assert plain["ETag"] == f'"{"1" * 40}"' and "X-Linked-Etag" not in plain
    assert "immutable" in plain["Cache-Control"]


def test_guess_lfs() -> None:
    assert guess_lfs("model-00001-of-00004.safetensors", 10)
    assert guess_lfs("tokenizer.json", 11 << 20)
    assert not guess_lfs("tokenizer.json", 7 << 20)
