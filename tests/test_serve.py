"""`qwen-fetch serve` against stock clients: hf download, snapshot_download, hf cache verify,
qwen-fetch itself; headers, ranges and the --lock gate."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qwen_fetch.core.lockfile import Lock
from qwen_fetch.serve.server import ServeServer
from qwen_fetch.store.lockio import read_lock
from tests.conftest import write_mirrors
from tests.serve_helpers import pull_into, run_hf, snapshot_hashes
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer
from tests.support.repo import RepoStore

SHARD = "model-00001-of-00004.safetensors"


@pytest.fixture
def pulled(tmp_path: Path, store: RepoStore, sharded_repo: str, hub: HubServer) -> tuple[Path, Path, Lock]:
    """A cache filled by a real pull from the test hub, and its lockfile."""
    cache, lock = tmp_path / "cache", tmp_path / "q.lock"
    return cache, lock, pull_into(cache, lock, QWEN3_VL_8B, hub.url)


@pytest.fixture
def served(pulled: tuple[Path, Path, Lock]) -> Iterator[ServeServer]:
    cache, _, lock = pulled
    with ServeServer(cache, lock) as s:
        yield s


def _blob(cache: Path, lock: Lock, path: str) -> Path:
    pf = next(f for f in lock.pins(QWEN3_VL_8B)[0].files if f.path == path)
    return cache / "models--Qwen--Qwen3-VL-8B-Instruct" / "blobs" / pf.sha256


def test_hf_download_and_cache_verify_against_serve(tmp_path: Path, pulled, served: ServeServer,
                                                    sharded_repo: str) -> None:
    cache, _, lock = pulled
    r = run_hf("download", QWEN3_VL_8B, endpoint=served.url, home=tmp_path / "hf")
    assert r.returncode == 0, r.stderr[-2000:]
    got = Path(r.stdout.strip().splitlines()[-1].split("path:")[-1].strip()) if "path:" in r.stdout else None
    snap = tmp_path / "hf" / "hub" / "models--Qwen--Qwen3-VL-8B-Instruct" / "snapshots" / sharded_repo
    assert got is None or got == snap
    pin = lock.pins(QWEN3_VL_8B)[0]
    assert snapshot_hashes(snap) == {f.path: f.sha256 for f in pin.files}
    # huggingface_hub names plain blobs by the ETag we sent (git blob id), LFS blobs by sha256:
    blobs = {p.name for p in (snap.parent.parent / "blobs").iterdir()}
    assert {f.sha256 if f.lfs else f.git_oid for f in pin.files} == blobs
    v = run_hf("cache", "verify", QWEN3_VL_8B, endpoint=served.url, home=tmp_path / "hf")
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"Verified {len(pin.files)} file(s)" in v.stdout


def test_snapshot_download_in_process(tmp_path: Path, pulled, served: ServeServer) -> None:
    from huggingface_hub import snapshot_download

    _, _, lock = pulled
    out = snapshot_download(QWEN3_VL_8B, endpoint=served.url, cache_dir=str(tmp_path / "sd"), max_workers=4)
    pin = lock.pins(QWEN3_VL_8B)[0]
    assert Path(out).name == pin.commit
    assert snapshot_hashes(Path(out)) == {f.path: f.sha256 for f in pin.files}
    # a second call is a no-op on the network side for file bodies
    before = served.stats.bytes_sent
    snapshot_download(QWEN3_VL_8B, endpoint=served.url, cache_dir=str(tmp_path / "sd"))
    assert served.stats.bytes_sent - before < 20_000  # JSON only, no file body again
    # A cache written by huggingface_hub (plain blobs named by git blob id) served without a lock:
    # a second hop gets the same bytes, and the same ETags as the first.
    with ServeServer(tmp_path / "sd") as hop, httpx.Client() as c:
        out2 = snapshot_download(QWEN3_VL_8B, endpoint=hop.url, cache_dir=str(tmp_path / "sd2"))
        assert snapshot_hashes(Path(out2)) == {f.path: f.sha256 for f in pin.files}
        for name in ("config.json", SHARD):
            a = c.head(f"{served.url}/{QWEN3_VL_8B}/resolve/main/{name}").headers
            b = c.head(f"{hop.url}/{QWEN3_VL_8B}/resolve/main/{name}").headers
            assert (a["ETag"], a.get("X-Linked-Size")) == (b["ETag"], b.get("X-Linked-Size"))


def test_qwen_fetch_pulls_from_serve_as_hf_source(tmp_path: Path, cli, pulled, served: ServeServer) -> None:
    _, lock_path, lock = pulled
    mirrors = write_mirrors(tmp_path / "serve.yaml", ("lan", served.url))
    r = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "node", "--lock", str(lock_path),
            "--frozen", "--no-smoke", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["bytes"] == sum(f.size for f in lock.pins(QWEN3_VL_8B)[0].files)
    v = cli("verify", QWEN3_VL_8B, "--cache-dir", "node", "--lock", str(lock_path))
    assert v.exit_code == 0, v.stdout + v.stderr


def test_resolve_headers_ranges_and_errors(pulled, served: ServeServer, sharded_repo: str) -> None:
    cache, _, lock = pulled
    pin = lock.pins(QWEN3_VL_8B)[0]
    shard = next(f for f in pin.files if f.path == SHARD)
    cfg = next(f for f in pin.files if f.path == "config.json")
    data = _blob(cache, lock, SHARD).read_bytes()
    base = f"{served.url}/{QWEN3_VL_8B}/resolve/main"
    with httpx.Client() as c:
        h = c.head(f"{base}/{SHARD}", headers={"Accept-Encoding": "identity"})
        assert h.status_code == 200
        assert h.headers["ETag"] == f'"{shard.sha256}"' and h.headers["X-Linked-Etag"] == f'"{shard.sha256}"'
        assert h.headers["X-Linked-Size"] == str(shard.size) and h.headers["Content-Length"] == str(shard.size)
        assert h.headers["X-Repo-Commit"] == sharded_repo and h.headers["Accept-Ranges"] == "bytes"
        assert h.content == b""
        p = c.head(f"{base}/config.json")
        assert p.headers["ETag"] == f'"{cfg.git_oid}"' and "X-Linked-Etag" not in p.headers
        r = c.get(f"{base}/{SHARD}", headers={"Range": "bytes=100-1123"})
        assert r.status_code == 206 and r.content == data[100:1124]
        assert r.headers["Content-Range"] == f"bytes 100-1123/{shard.size}"
        r = c.get(f"{base}/{SHARD}", headers={"Range": "bytes=-7"})
        assert r.status_code == 206 and r.content == data[-7:]
        r = c.get(f"{base}/{SHARD}", headers={"Range": "bytes=0-9", "If-Range": '"stale-etag"'})
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == shard.sha256
        r = c.get(f"{base}/{SHARD}", headers={"Range": f"bytes={shard.size}-"})
        assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{shard.size}"
        r = c.get(f"{served.url}/{QWEN3_VL_8B}/resolve/main/nope.json")
        assert (r.status_code, r.headers["X-Error-Code"], r.headers["X-Repo-Commit"]) == (404, "EntryNotFound",
                                                                                          sharded_repo)
        r = c.get(f"{served.url}/{QWEN3_VL_8B}/resolve/v9/config.json")
        assert (r.status_code, r.headers["X-Error-Code"]) == (404, "RevisionNotFound")
        r = c.get(f"{served.url}/api/models/Other/Model/revision/main")
        assert (r.status_code, r.headers["X-Error-Code"]) == (404, "RepoNotFound")
        r = c.get(f"{served.url}/{QWEN3_VL_8B}/resolve/main/..%2F..%2Fq.lock")
        assert r.status_code == 404
        assert c.post(f"{base}/config.json").status_code == 405
        r = c.get(f"{base}/x%0d%0aSet-Cookie:%20pwned=1")  # a path that would split the response
        assert r.status_code == 404 and "set-cookie" not in r.headers and "\r" not in r.headers["X-Error-Message"]


def test_many_concurrent_range_clients_get_exact_bytes(pulled, served: ServeServer) -> None:
    cache, _, lock = pulled
    data = _blob(cache, lock, SHARD).read_bytes()
    url = f"{served.url}/{QWEN3_VL_8B}/resolve/main/{SHARD}"
    errors: list[str] = []

    def worker(i: int) -> None:
        with httpx.Client() as c:
            for j in range(4):
                a = (i * 4 + j) * 997 % (len(data) - 5000)
                r = c.get(url, headers={"Range": f"bytes={a}-{a + 4999}"})
                if r.status_code != 206 or r.content != data[a:a + 5000]:
                    errors.append(f"{i}/{j}: {r.status_code}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_lock_refuses_unpinned_revision_and_repo(tmp_path: Path, store: RepoStore, hub: HubServer, pulled) -> None:
    cache, lock_path, lock = pulled
    # A second revision lands in the cache without a pin in the lock being served.
    from tests.support.fixtures import add_sharded_repo

    other = add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20, seed=7, revision="v2")
    pull_into(cache, tmp_path / "other.lock", QWEN3_VL_8B, hub.url, revision="v2")
    with ServeServer(cache, None) as open_server, ServeServer(cache, lock) as locked, httpx.Client() as c:
        assert c.get(f"{open_server.url}/api/models/{QWEN3_VL_8B}/revision/v2").json()["sha"] == other
        evil = cache / "models--Qwen--Qwen3-VL-8B-Instruct" / "evil"
        evil.write_text(other)  # a "ref" outside refs/: never readable through a revision
        from urllib.parse import quote

        for rev in ("..%2Fevil", quote(str(evil), safe=""), "main%2F..%2F..%2Fevil"):
            r = c.get(f"{open_server.url}/api/models/{QWEN3_VL_8B}/revision/{rev}")
            assert (r.status_code, r.headers["X-Error-Code"]) == (404, "RevisionNotFound"), rev
        r = c.get(f"{locked.url}/api/models/{QWEN3_VL_8B}/revision/v2")
        assert (r.status_code, r.headers["X-Error-Code"]) == (404, "RevisionNotFound")
        r = c.head(f"{locked.url}/{QWEN3_VL_8B}/resolve/{other}/config.json")
        assert (r.status_code, r.headers["X-Error-Code"]) == (404, "RevisionNotFound")
        assert c.get(f"{locked.url}/api/models/{QWEN3_VL_8B}/revision/main").json()["sha"] == lock.pins(QWEN3_VL_8B)[0].commit


def test_lock_refuses_corrupted_snapshot_at_start_and_while_serving(tmp_path: Path, pulled) -> None:
    cache, _, lock = pulled
    blob = _blob(cache, lock, SHARD)
    good = blob.read_bytes()
    url_of = lambda s: f"{s.url}/{QWEN3_VL_8B}/resolve/main/config.json"  # noqa: E731
    # 1. corrupted before start: the whole snapshot is refused, even its intact files.
    blob.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with ServeServer(cache, lock) as s, httpx.Client() as c:
        (_, _, why), = s.catalog.verify_all()
        assert "mismatched" in why and SHARD in why
        r = c.get(url_of(s))
        assert (r.status_code, r.headers["X-Error-Code"]) == (404, "RevisionNotFound")
        assert "failed verification" in r.json()["error"]
    # 2. corrupted after verification: the next request for it re-hashes and refuses.
    blob.write_bytes(good)
    with ServeServer(cache, lock) as s, httpx.Client() as c:
        assert c.get(url_of(s)).status_code == 200
        os.utime(blob, ns=(1, 1))  # same bytes, new mtime: re-hashed, still served
        assert c.get(f"{s.url}/{QWEN3_VL_8B}/resolve/main/{SHARD}").status_code == 200
        blob.write_bytes(b"\0" * len(good))
        r = c.get(f"{s.url}/{QWEN3_VL_8B}/resolve/main/{SHARD}")
        assert (r.status_code, r.headers["X-Error-Code"]) == (404, "RevisionNotFound")
        assert c.get(url_of(s)).status_code == 404  # and the rest of that snapshot with it


def test_lock_catches_a_byte_changed_in_place_with_its_mtime_put_back(pulled) -> None:
    """Same inode, size and mtime (``os.utime`` restores it) but new bytes: ctime moved, so it is re-hashed."""
    cache, _, lock = pulled
    blob = _blob(cache, lock, SHARD)
    with ServeServer(cache, lock) as s, httpx.Client() as c:
        url = f"{s.url}/{QWEN3_VL_8B}/resolve/main/{SHARD}"
        assert c.get(url).status_code == 200
        before = os.stat(blob)
        with open(blob, "r+b") as fh:
            fh.seek(before.st_size // 2)
            b = fh.read(1)
            fh.seek(-1, os.SEEK_CUR)
            fh.write(bytes([b[0] ^ 0x01]))
        os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(blob)
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
        r = c.get(url)
        assert (r.status_code, r.headers["X-Error-Code"]) == (404, "RevisionNotFound")
        assert "no longer matches the lock" in r.json()["error"]


def test_serve_cli_prints_url_and_serves(tmp_path: Path, pulled) -> None:
    cache, lock_path, lock = pulled
    proc = subprocess.Popen([sys.executable, "-m", "qwen_fetch", "serve", "--cache-dir", str(cache), "--port", "0",
                             "--lock", str(lock_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        r = httpx.get(f"{url}/api/models/{QWEN3_VL_8B}/revision/main?blobs=true")
        assert r.status_code == 200 and r.json()["sha"] == lock.pins(QWEN3_VL_8B)[0].commit
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "verified" in err and "serving 1 of 1 pinned revision(s)" in err


def test_transformers_from_pretrained_through_serve(tmp_path: Path, store: RepoStore, hub: HubServer) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from qwen_fetch.cli.demo_cmd import bundled_model_dir

    model = "qwen-fetch-demo/Qwen3-VL-tiny"
    src = bundled_model_dir()
    commit = store.add_commit(model, {p.name: p for p in src.iterdir() if p.is_file()})
    cache, lock_path = tmp_path / "cache", tmp_path / "q.lock"
    lock = pull_into(cache, lock_path, model, hub.url)
    code = (
        "import sys\n"
        "from transformers import AutoModelForImageTextToText, AutoTokenizer\n"
        f"m = AutoModelForImageTextToText.from_pretrained('{model}', cache_dir=sys.argv[1])\n"
        f"t = AutoTokenizer.from_pretrained('{model}', cache_dir=sys.argv[1])\n"
        "assert t('hello').input_ids\n"
        "print(type(m).__name__)\n"
    )
    with ServeServer(cache, lock) as s:
        env = dict(os.environ, HF_ENDPOINT=s.url, HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1")
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "tf")], capture_output=True, text=True,
                              env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "Qwen3VLForConditionalGeneration"
    snap = tmp_path / "tf" / "models--qwen-fetch-demo--Qwen3-VL-tiny" / "snapshots" / commit
    assert snapshot_hashes(snap)["model-00001-of-00002.safetensors"] == read_lock(lock_path).pins(model)[0].by_path()[
        "model-00001-of-00002.safetensors"].sha256


def test_small_fleet_gets_identical_verified_bytes(tmp_path: Path, pulled, served: ServeServer) -> None:
    """bench/fleet.py in miniature: qwen-fetch pulls and an hf download at once, one serve."""
    _, lock_path, lock = pulled
    pin = lock.pins(QWEN3_VL_8B)[0]
    mirrors = write_mirrors(tmp_path / "lan.yaml", ("lan", served.url))
    env = dict(os.environ, NO_PROXY="127.0.0.1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "qwen_fetch", "pull", QWEN3_VL_8B, "--config", str(mirrors),
                               "--cache-dir", str(tmp_path / f"node{i}"), "--lock", str(lock_path), "--frozen",
                               "--no-smoke", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(3)]
    procs.append(subprocess.Popen([str(Path(sys.executable).with_name("hf")), "download", QWEN3_VL_8B, "--cache-dir",
                                   str(tmp_path / "hfnode")], env=dict(env, HF_ENDPOINT=served.url),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-2000:]
    want = {f.path: f.sha256 for f in pin.files}
    for node in ("node0", "node1", "node2", "hfnode"):
        snap = tmp_path / node / "models--Qwen--Qwen3-VL-8B-Instruct" / "snapshots" / pin.commit
        assert snapshot_hashes(snap) == want, node
    assert served.stats.by_status.get(200, 0) + served.stats.by_status.get(206, 0) > 0
    assert set(served.stats.by_status) <= {200, 206, 404}  # 404: hf's optional probes only
