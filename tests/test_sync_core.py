"""Pure parts of `sync` and the store: plan, manifest codec, S3 ETag, the file:// transport."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from qwen_fetch.core.manifest import Pin, PinnedFile
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.ops.sync import plan_sync
from qwen_fetch.store.backends import ObjectInfo
from qwen_fetch.store.bucket import Manifest, StoreError, is_md5_etag, manifest_key, parse_manifest, ref_key, s3_etag
from qwen_fetch.store.transport import FileTransport

A, B, C = "a" * 64, "b" * 64, "c" * 64
PIN = Pin(revision="main", commit="1" * 40, source="hf", files=(
    PinnedFile(SafeRelPath("x.safetensors"), 100, A, lfs=True),
    PinnedFile(SafeRelPath("copy.safetensors"), 100, A, lfs=True),  # same content twice: one blob
    PinnedFile(SafeRelPath("config.json"), 10, B, git_oid="2" * 40),
    PinnedFile(SafeRelPath("tok.json"), 20, C, git_oid="3" * 40),
))


def test_plan_uploads_only_what_is_missing_or_wrong() -> None:
    existing = {A: ObjectInfo(100, A, None), B: ObjectInfo(9, None, None), C: None}
    plan = plan_sync("Qwen/M", PIN, "/store", existing, None, None)
    assert {(s.sha256, s.reason) for s in plan.upload} == {(B, "size differs (9 stored)"), (C, "missing")}
    assert [s.sha256 for s in plan.present] == [A]  # deduplicated
    assert plan.upload_bytes == 30 and plan.write_manifest and plan.write_ref
    same = plan_sync("Qwen/M", PIN, "/store", {A: ObjectInfo(100, None, None), B: ObjectInfo(10, B, None),
                                                C: ObjectInfo(20, "d" * 64, None)},
                     plan.manifest, "1" * 40 + "\n")
    assert [(s.sha256, s.reason) for s in same.upload] == [(C, "sha256 metadata differs")]
    assert not same.write_manifest and not same.write_ref
    rechecked = plan_sync("Qwen/M", PIN, "/store", {s: ObjectInfo(n, None, None) for s, n in ((A, 100), (B, 10), (C, 20))},
                          plan.manifest, "1" * 40, rechecked={A: "read back other bytes", B: None, C: None})
    assert [s.sha256 for s in rechecked.upload] == [A]


def test_manifest_round_trip_is_canonical() -> None:
    m = Manifest.from_pin("Qwen/M", PIN)
    data = m.encode()
    back = parse_manifest(data, "test")
    assert back == m and back.encode() == data


@pytest.mark.parametrize("mutate", [
    lambda d: d.replace(b'"path": "config.json"', b'"path": "../../etc/passwd"'),
    lambda d: d.replace(b'"size": 10', b'"size": -1'),
    lambda d: d.replace(B.encode(), b"z" * 64),
    lambda d: d.replace(b"qwen-fetch-store/1", b"other/1"),
    lambda d: b"not json",
])
def test_hostile_manifest_is_refused(mutate) -> None:  # type: ignore[no-untyped-def]
    data = mutate(Manifest.from_pin("Qwen/M", PIN).encode())
    with pytest.raises(StoreError):
        parse_manifest(data, "store")


def test_keys_refuse_traversal() -> None:
    assert manifest_key("Qwen/M", "1" * 40) == f"models/Qwen/M/commits/{'1' * 40}.json"
    assert ref_key("Qwen/M", "main") == "models/Qwen/M/refs/main"
    with pytest.raises(StoreError):
        ref_key("Qwen/M", "../../blobs/x")
    with pytest.raises(StoreError):
        manifest_key("Qwen/M", "../x")


def test_s3_etag_single_and_multipart() -> None:
    assert s3_etag([b""], 0) == "d41d8cd98f00b204e9800998ecf8427e"  # md5("")
    data = b"abcdefghij"
    assert s3_etag([data], 10, part_size=11) == hashlib.md5(data).hexdigest()
    # 4-byte parts "abcd" "efgh" "ij", fed in odd chunks
    parts = [hashlib.md5(p).digest() for p in (b"abcd", b"efgh", b"ij")]
    want = hashlib.md5(b"".join(parts)).hexdigest() + "-3"
    assert s3_etag([b"abc", b"defghi", b"j"], 10, part_size=4) == want
    assert is_md5_etag('"' + want + '"') and is_md5_etag(hashlib.md5(data).hexdigest())
    assert not is_md5_etag('"kms-opaque-etag"')


def test_file_transport_ranges_and_confinement(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "blobs").mkdir(parents=True)
    data = bytes(range(256)) * 40
    sha = hashlib.sha256(data).hexdigest()
    (root / "blobs" / sha).write_bytes(data)
    (tmp_path / "secret").write_bytes(b"no")
    (root / "blobs" / "escape").symlink_to(tmp_path / "secret")
    with httpx.Client(transport=FileTransport(root)) as c:
        url = f"file://localhost{root}/blobs/{sha}"
        r = c.get(url)
        assert r.status_code == 200 and r.content == data and r.headers["ETag"] == f'"{sha}"'
        r = c.get(url, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == data[10:20]
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        r = c.get(url, headers={"Range": "bytes=10-19", "If-Range": '"other"'})
        assert r.status_code == 200 and r.content == data
        assert c.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
        assert c.head(url).headers["Content-Length"] == str(len(data))
        assert c.get(f"file://localhost{root}/blobs/escape").status_code == 404  # symlink out of the store
        assert c.get(f"file://localhost{tmp_path}/secret").status_code == 404
        assert c.get(f"file://localhost{root}/blobs/{sha}/../../../secret").status_code == 404
