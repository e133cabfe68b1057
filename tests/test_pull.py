"""The foundation: pull / lock against a loopback HF hub, pins enforced all-or-nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qwen_fetch.core.lockfile import dump_lock
from qwen_fetch.core.manifest import Pin
from qwen_fetch.store.hasher import hash_file
from qwen_fetch.store.hfcache import RepoCache
from qwen_fetch.store.lockio import read_lock, write_lock
from tests.conftest import write_mirrors
from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.hub import HubServer
from tests.support.repo import RepoStore

SHARD1 = "model-00001-of-00004.safetensors"


def _pull(cli, mirrors: Path, *extra: str, model: str = QWEN3_VL_8B):  # type: ignore[no-untyped-def]
    return cli("pull", model, "--config", str(mirrors), "--cache-dir", "cache", "--lock", "qwen-fetch.lock",
               "--no-smoke", "--json", *extra)


def _snapshot_bytes_equal(store: RepoStore, commit: str, snap: Path, model: str = QWEN3_VL_8B) -> None:
    files = store.files(model, commit)
    assert sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file()) == [f.path for f in files]
    for f in files:
        link = snap / f.path
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.read_bytes() == f.disk.read_bytes()


def test_fresh_pull_writes_cache_ref_and_lock(cli, store, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    r = _pull(cli, mirrors)
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["commit"] == sharded_repo and out["files"] == 15 and out["lock_written"]
    repo = RepoCache(Path("cache"), QWEN3_VL_8B)
    assert repo.read_ref("main") == sharded_repo
    _snapshot_bytes_equal(store, sharded_repo, repo.snapshot_dir(sharded_repo))
    pin = read_lock(Path("qwen-fetch.lock")).current(QWEN3_VL_8B)
    assert pin is not None and pin.commit == sharded_repo and pin.source == "local"
    for f in store.files(QWEN3_VL_8B, sharded_repo):
        pf = pin.by_path()[f.path]
        assert (pf.size, pf.sha256, pf.lfs) == (f.size, f.sha256, f.lfs)
        if not f.lfs:
            assert pf.git_oid == f.git_oid
    # blobs are content-addressed by sha256, nothing half-written is left behind
    blobs = sorted(p.name for p in repo.blobs_dir.iterdir())
    assert blobs == sorted({f.sha256 for f in store.files(QWEN3_VL_8B, sharded_repo)})


def test_a_killed_writers_temporary_is_cleared_when_the_blob_is_written(cli, store, sharded_repo, hub,  # type: ignore[no-untyped-def]
                                                                        mirrors) -> None:
    """A pull SIGKILLed while writing a small file leaves ``.<sha256>.<random>.tmp`` in blobs/; the rerun,
    writing that blob under its lock, removes it (the fault campaign's rerun must equal a clean pull)."""
    repo = RepoCache(Path("cache"), QWEN3_VL_8B)
    cfg = next(f for f in store.files(QWEN3_VL_8B, sharded_repo) if f.path == "config.json")
    repo.blobs_dir.mkdir(parents=True, exist_ok=True)
    stale = repo.blobs_dir / f".{cfg.sha256}.0badf00d.tmp"
    stale.write_bytes(b'{"half": ')
    other = repo.blobs_dir / ".not-ours.tmp"
    other.write_bytes(b"x")
    r = _pull(cli, mirrors)
    assert r.exit_code == 0, r.stderr
    assert not stale.exists() and other.exists()
    assert repo.blob_path(cfg.sha256).read_bytes() == cfg.disk.read_bytes()


def test_noop_pull_transfers_nothing(cli, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    assert _pull(cli, mirrors).exit_code == 0
    hub.reset_stats()
    r = _pull(cli, mirrors, "--frozen")
    assert r.exit_code == 0, r.stderr
    assert hub.total_bytes() == 0
    assert r.json()["downloaded_files"] == 0 and r.json()["bytes"] == 0
    assert not any("/resolve/" in e["path"] for e in hub.log if e["method"] == "GET")


def test_tampered_cached_blobs_are_fetched_again(cli, store, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    """A re-pull re-hashes what is cached: a flipped byte or a truncated blob is replaced, the rest reused."""
    assert _pull(cli, mirrors).exit_code == 0
    repo = RepoCache(Path("cache"), QWEN3_VL_8B)
    files = {f.path: f for f in store.files(QWEN3_VL_8B, sharded_repo)}
    shard = repo.blob_path(files[SHARD1].sha256)
    with open(shard, "r+b") as fh:  # same size, one byte different
        fh.seek(files[SHARD1].size // 2)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0x01]))
    cfg = repo.blob_path(files["config.json"].sha256)
    os.truncate(cfg, files["config.json"].size - 3)
    hub.reset_stats()
    r = _pull(cli, mirrors, "--frozen")
    assert r.exit_code == 0, r.stderr
    notes = r.json()["notes"]
    assert sum("cached copy does not match its pin" in n for n in notes) == 2, notes
    got = {e["path"].rsplit("/", 1)[-1] for e in hub.log if "/resolve/" in e["path"] and e["method"] == "GET"}
    assert got == {SHARD1, "config.json"}  # only the two damaged files
    _snapshot_bytes_equal(store, sharded_repo, repo.snapshot_dir(sharded_repo))


def test_lock_then_pull_with_pin(cli, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    r = cli("lock", QWEN3_VL_8B, "--config", str(mirrors), "--json")
    assert r.exit_code == 0, r.stderr
    # lock downloads only the small git files, never the LFS shards
    fetched = {e["path"].rsplit("/", 1)[-1] for e in hub.log if "/resolve/" in e["path"]}
    assert fetched and not any(p.endswith(".safetensors") for p in fetched)
    text = Path("qwen-fetch.lock").read_text()
    r = _pull(cli, mirrors, "--frozen")
    assert r.exit_code == 0, r.stderr
    assert not r.json()["lock_written"] and Path("qwen-fetch.lock").read_text() == text


def test_corrupt_shard_is_refused_and_not_promoted(cli, store, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    hub.faults.corrupt[SHARD1] = 12345
    r = _pull(cli, mirrors)
    assert r.exit_code == 3, r.stderr
    repo = RepoCache(Path("cache"), QWEN3_VL_8B)
    bad = {f.sha256 for f in store.files(QWEN3_VL_8B, sharded_repo) if f.path == SHARD1}.pop()
    assert not repo.blob_path(bad).exists()
    assert not repo.snapshot_dir(sharded_repo).exists()
    assert repo.read_ref("main") is None
    assert not Path("qwen-fetch.lock").exists()
    assert "sha256" in r.stdout + r.stderr


def test_file_not_in_lock_is_refused_before_download(cli, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    assert cli("lock", QWEN3_VL_8B, "--config", str(mirrors)).exit_code == 0
    lock = read_lock(Path("qwen-fetch.lock"))
    pin = lock.current(QWEN3_VL_8B)
    assert pin is not None
    trimmed = Pin(pin.revision, pin.commit, pin.source, tuple(f for f in pin.files if f.path != SHARD1))
    write_lock(Path("qwen-fetch.lock"), lock.with_pin(QWEN3_VL_8B, trimmed))
    hub.reset_stats()
    r = _pull(cli, mirrors)
    assert r.exit_code == 3
    assert SHARD1 in r.stdout and "not allowlisted" in r.stdout
    assert hub.total_bytes() == 0


def test_hand_edited_wrong_hash_is_refused(cli, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    assert cli("lock", QWEN3_VL_8B, "--config", str(mirrors)).exit_code == 0
    text = Path("qwen-fetch.lock").read_text()
    pin = read_lock(Path("qwen-fetch.lock")).current(QWEN3_VL_8B)
    assert pin is not None
    real = pin.by_path()["config.json"].sha256
    Path("qwen-fetch.lock").write_text(text.replace(real, "f" * 64))
    r = _pull(cli, mirrors)
    assert r.exit_code == 3
    assert not RepoCache(Path("cache"), QWEN3_VL_8B).snapshot_dir(sharded_repo).exists()


def test_frozen_without_pin(cli, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    r = _pull(cli, mirrors, "--frozen")
    assert r.exit_code == 3
    assert r.json()["error"] == "missing-pin"
    assert hub.total_bytes() == 0


def test_revision_change_needs_update_and_keeps_previous_pin(cli, store, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    assert _pull(cli, mirrors).exit_code == 0
    new = add_sharded_repo(store, QWEN3_VL_8B, shard_total=4 << 20, seed=7, revision="v2")
    r = _pull(cli, mirrors, "--revision", "v2")
    assert r.exit_code == 3 and "--update" in r.json()["hint"]
    r = _pull(cli, mirrors, "--revision", "v2", "--update")
    assert r.exit_code == 0, r.stderr
    pins = read_lock(Path("qwen-fetch.lock")).pins(QWEN3_VL_8B)
    assert [p.commit for p in pins] == [new, sharded_repo]
    repo = RepoCache(Path("cache"), QWEN3_VL_8B)
    assert repo.read_ref("v2") == new and repo.read_ref("main") == sharded_repo
    # rollback to the previous pin works without --update
    assert _pull(cli, mirrors, "--revision", sharded_repo).exit_code == 0


def test_include_exclude_and_local_dir(cli, store, sharded_repo, hub, mirrors, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--lock", "qwen-fetch.lock", "--no-smoke", "--json",
            "--include", "*.json", "--exclude", "video_*", "--local-dir", "plain")
    assert r.exit_code == 0, r.stderr
    got = sorted(p.relative_to("plain").as_posix() for p in Path("plain").rglob("*")
                 if p.is_file() and ".cache" not in p.parts)
    want = sorted(f.path for f in store.files(QWEN3_VL_8B, sharded_repo)
                  if f.path.endswith(".json") and not f.path.startswith("video_"))
    assert got == want
    for f in store.files(QWEN3_VL_8B, sharded_repo):
        if f.path in want:
            assert (Path("plain") / f.path).read_bytes() == f.disk.read_bytes()
            assert not (Path("plain") / f.path).is_symlink()


def test_hf_endpoint_env_is_used(cli, sharded_repo, hub) -> None:  # type: ignore[no-untyped-def]
    r = cli("pull", QWEN3_VL_8B, "--cache-dir", "cache", "--no-smoke", "--json", "--source", "env",
            env={"HF_ENDPOINT": hub.url})
    assert r.exit_code == 0, r.stderr
    assert r.json()["source"] == "env"


@pytest.mark.parametrize("model,code", [("Nope/missing", 4), ("bad id!", 2)])
def test_not_found_and_bad_id(cli, sharded_repo, hub, mirrors, model, code) -> None:  # type: ignore[no-untyped-def]
    r = _pull(cli, mirrors, model=model)
    assert r.exit_code == code
    assert "Traceback" not in r.stderr


def test_unknown_revision_is_exit_4(cli, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    r = _pull(cli, mirrors, "--revision", "does-not-exist")
    assert r.exit_code == 4 and "not found" in r.stdout


def test_all_sources_down_lists_every_reason(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_mirrors(tmp_path / "m.yaml", ("first", "http://127.0.0.1:9"), ("second", "http://127.0.0.1:1"))
    r = cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", "cache", "--no-smoke")
    assert r.exit_code == 4
    assert "first" in r.stderr and "second" in r.stderr and "Traceback" not in r.stderr


def test_malformed_config_is_exit_2(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - name: x\n    kind: hf\n    endpoint: http://x\n    typo: 1\n")
    r = cli("pull", QWEN3_VL_8B, "--config", str(bad))
    assert r.exit_code == 2 and f"{bad}:5" in r.stderr


def test_hostile_listing_writes_nothing_outside(cli, store, sharded_repo, hub, mirrors, tmp_path) -> None:  # type: ignore[no-untyped-def]
    hub.faults.listing[QWEN3_VL_8B] = [{"type": "file", "path": "../../escape.txt", "size": 3, "oid": "a" * 40}]
    r = _pull(cli, mirrors)
    assert r.exit_code == 3 and "refused file path" in r.stdout
    assert not (tmp_path / "escape.txt").exists() and not Path("cache").exists()


def test_pagination_link_to_foreign_host_is_rewritten(cli, store, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    hub.faults.page_size = 4
    hub.faults.page_origin = "http://127.0.0.1:9"  # an unrewritten mirror points page 2 at the origin
    r = _pull(cli, mirrors)
    assert r.exit_code == 0, r.stderr
    assert r.json()["files"] == 15


def test_token_reaches_endpoint_but_not_cdn(cli, store, sharded_repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with HubServer(store) as cdn, HubServer(store) as origin:
        origin.faults.redirect_base = cdn.url.replace("127.0.0.1", "localhost")  # another host
        cfg = tmp_path / "private.yaml"
        cfg.write_text(f"sources:\n  - name: private\n    kind: hf\n    endpoint: {origin.url}\n"
                       "    token_env: QF_TEST_TOKEN\n")
        r = cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", "cache", "--no-smoke", "--json",
                env={"QF_TEST_TOKEN": "sekrit-token-123"})
        assert r.exit_code == 0, r.stderr
        assert origin.log and all(e["headers"].get("Authorization") == "Bearer sekrit-token-123" for e in origin.log)
        assert cdn.log and not any("Authorization" in e["headers"] for e in cdn.log)
        assert "sekrit" not in r.stdout + r.stderr + Path("qwen-fetch.lock").read_text()


def test_huggingface_hub_reads_our_cache(cli, store, sharded_repo, hub, mirrors, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert _pull(cli, mirrors).exit_code == 0
    from huggingface_hub import scan_cache_dir, snapshot_download

    cache = Path("cache").absolute()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = snapshot_download(QWEN3_VL_8B, cache_dir=str(cache), local_files_only=True)
    assert Path(path) == RepoCache(cache, QWEN3_VL_8B).snapshot_dir(sharded_repo)
    info = scan_cache_dir(cache)
    assert not info.warnings
    (repo,) = info.repos
    assert repo.repo_id == QWEN3_VL_8B and repo.nb_files == 15
    (rev,) = repo.revisions
    assert rev.commit_hash == sharded_repo and rev.refs == frozenset({"main"})
    assert repo.size_on_disk == sum(f.size for f in store.files(QWEN3_VL_8B, sharded_repo))


def test_blob_names_are_sha256(cli, store, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    assert _pull(cli, mirrors).exit_code == 0
    blobs = RepoCache(Path("cache"), QWEN3_VL_8B).blobs_dir
    for b in blobs.iterdir():
        assert hash_file(b).sha256 == b.name
    assert dump_lock(read_lock(Path("qwen-fetch.lock"))) == Path("qwen-fetch.lock").read_text()


def test_auto_falls_back_from_a_blackholed_source(cli, sharded_repo, hub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as hole:  # accepts connections (kernel backlog) but never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        dead = f"http://127.0.0.1:{hole.getsockname()[1]}"
        cfg = write_mirrors(tmp_path / "m.yaml", ("blackhole", dead), ("good", hub.url))
        r = cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", "cache", "--no-smoke", "--json",
                env={"QWEN_FETCH_TIMEOUT": "2"})
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["source"] == "good"
    assert "timed out" in out["source_failures"]["blackhole"]
