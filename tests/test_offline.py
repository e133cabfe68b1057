"""Offline-first pinned pulls, verification stamps and `qwen-fetch path`, against a loopback hub that counts requests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from qwen_fetch.core.errors import IntegrityError
from qwen_fetch.ops.snapshot import path as snapshot_path
from qwen_fetch.store.hfcache import RepoCache
from qwen_fetch.store.lockio import read_lock
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer
from tests.support.repo import RepoStore

SHARD1 = "model-00001-of-00004.safetensors"
NFILES = 15


def _pull(cli, mirrors: Path, *extra: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "cache", "--lock", "qwen-fetch.lock",
               "--no-smoke", "--json", *extra, env=env)


def _blob(store: RepoStore, commit: str, path: str) -> Path:
    f = next(f for f in store.files(QWEN3_VL_8B, commit) if f.path == path)
    return RepoCache(Path("cache"), QWEN3_VL_8B).blob_path(f.sha256)


def _flip_byte_keep_mtime(path: Path) -> None:
    """Change one byte in place, then put atime/mtime back: only ctime shows the change."""
    before = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(before.st_size // 2)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0x01]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def _file_gets(hub: HubServer) -> set[str]:
    return {e["path"].rsplit("/", 1)[-1] for e in hub.log if "/resolve/" in e["path"] and e["method"] == "GET"}


@pytest.fixture
def warm(cli, sharded_repo: str, hub: HubServer, mirrors: Path) -> str:  # type: ignore[no-untyped-def]
    """A pinned model fully in the cache, hashed once more since its download (every stamp trusted)."""
    assert _pull(cli, mirrors).exit_code == 0
    r = _pull(cli, mirrors, "--frozen")
    assert r.exit_code == 0, r.stderr
    hub.reset_stats()
    return sharded_repo


# -- no network when nothing is missing -------------------------------------------------------


def test_frozen_pull_of_a_complete_cache_sends_no_request(cli, warm, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    r = _pull(cli, mirrors, "--frozen")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert hub.log == []  # not even a health check or a resolve
    assert out["used_cache"] is True and out["source"] == "cache" and out["downloaded_files"] == 0
    assert (out["stamp_trusted_files"], out["rehashed_files"]) == (NFILES, 0)
    assert out["target"] == str(RepoCache(Path("cache"), QWEN3_VL_8B).snapshot_dir(warm))
    # and with the hub gone altogether, the same pull still succeeds (without --frozen too)
    hub.stop()
    for extra in (("--frozen",), ()):
        r = _pull(cli, mirrors, *extra)
        assert r.exit_code == 0, r.stderr
        assert r.json()["used_cache"] is True


def test_terminal_pull_prints_the_folder_last_on_stdout_and_says_it_used_the_cache(cli, warm, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    r = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "cache", "--frozen", "--no-smoke")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{RepoCache(Path('cache'), QWEN3_VL_8B).snapshot_dir(warm)}\n"
    assert "from the cache, no network" in r.stderr and hub.log == []


def test_missing_pinned_file_with_the_hub_down_is_named(cli, store, warm, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    _blob(store, warm, SHARD1).unlink()
    hub.stop()
    r = _pull(cli, mirrors, "--frozen")
    assert r.exit_code == 4, r.stderr
    assert r.json()["ok"] is False and any(SHARD1 in line for line in r.json()["context"])


@pytest.mark.parametrize("how", [("env", "HF_HUB_OFFLINE", "1"), ("env", "QWEN_FETCH_OFFLINE", "yes"),
                                 ("flag", "--offline", ""), ("global", "--offline", "")])
def test_offline_lists_what_is_missing_and_exits_4(cli, store, warm, hub, mirrors, how) -> None:  # type: ignore[no-untyped-def]
    kind, name, value = how
    _blob(store, warm, SHARD1).unlink()
    _blob(store, warm, "config.json").write_bytes(b"{}")  # damaged: listed too, left for an online pull to replace
    args = ["pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "cache", "--no-smoke", "--json", "--frozen"]
    env = None
    if kind == "env":
        env = {name: value}
    elif kind == "flag":
        args.append(name)
    else:
        args.insert(0, name)
    r = cli(*args, env=env)
    assert r.exit_code == 4, r.stderr
    out = r.json()
    assert out["error"] == "offline-missing" and "offline" in out["message"]
    assert out["context"] == ["config.json: does not match its pin", f"{SHARD1}: missing"]
    assert "qwen-fetch pull" in out["hint"]
    assert hub.log == []


def test_offline_complete_cache_succeeds_without_a_request(cli, warm, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    r = _pull(cli, mirrors, "--frozen", env={"HF_HUB_OFFLINE": "1"})
    assert r.exit_code == 0, r.stderr
    assert r.json()["used_cache"] is True and hub.log == []


def test_offline_without_a_pin_fails_clearly(cli, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    r = _pull(cli, mirrors, "--offline")
    assert r.exit_code == 4, r.stderr
    out = r.json()
    assert out["error"] == "offline" and "has no pin" in out["message"] and "qwen-fetch lock" in out["hint"]
    r = cli("lock", QWEN3_VL_8B, "--config", str(mirrors), "--json", env={"QWEN_FETCH_OFFLINE": "1"})
    assert r.exit_code == 4 and r.json()["error"] == "offline"
    assert hub.log == [] and not Path("qwen-fetch.lock").exists()


def test_qwen_fetch_offline_0_overrides_hf_hub_offline(cli, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    """HF_HUB_OFFLINE=1 keeps transformers offline; QWEN_FETCH_OFFLINE=0 still lets qwen-fetch fetch."""
    r = _pull(cli, mirrors, env={"HF_HUB_OFFLINE": "1", "QWEN_FETCH_OFFLINE": "0"})
    assert r.exit_code == 0, r.stderr
    assert r.json()["downloaded_files"] == NFILES


def test_offline_forbids_every_connection(cli, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    r = cli("mirrors", "--config", str(mirrors), "--probe", "--json", env={"HF_HUB_OFFLINE": "1"})
    assert hub.log == []
    assert "offline" in r.stdout + r.stderr


# -- verification stamps ------------------------------------------------------------------------


def test_stamps_spare_the_rehash_and_reverify_forces_it(cli, warm, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    r = _pull(cli, mirrors, "--frozen", "--reverify")
    assert r.exit_code == 0, r.stderr
    assert (r.json()["stamp_trusted_files"], r.json()["rehashed_files"]) == (0, NFILES)
    assert hub.log == []


def test_a_byte_flipped_in_place_with_mtime_put_back_is_fetched_again(cli, store, warm, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    blob = _blob(store, warm, SHARD1)
    _flip_byte_keep_mtime(blob)
    r = _pull(cli, mirrors, "--frozen")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["stamp_trusted_files"] == NFILES - 1 and out["used_cache"] is False
    assert any(f"{SHARD1}: cached copy does not match its pin" in n for n in out["notes"])
    assert _file_gets(hub) == {SHARD1}
    want = next(f for f in store.files(QWEN3_VL_8B, warm) if f.path == SHARD1).disk.read_bytes()
    assert blob.read_bytes() == want


def test_a_stamp_never_honours_a_pin_whose_size_was_edited(cli, store, warm, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    """The stamp matches the file and the digest, but the pin now says another size: the pin wins (exit 3)."""
    lock = Path("qwen-fetch.lock")
    real = next(f for f in store.files(QWEN3_VL_8B, warm) if f.path == SHARD1)
    text = lock.read_text()
    edited = text.replace(f"path: {SHARD1}\n      size: {real.size}\n", f"path: {SHARD1}\n      size: {real.size + 1}\n")
    assert edited != text
    lock.write_text(edited)
    r = _pull(cli, mirrors, "--frozen")
    assert r.exit_code == 3, r.stdout
    assert SHARD1 in r.stdout


def test_verify_rehashes_regardless_of_stamps_and_refreshes_them(cli, store, warm, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    blob = _blob(store, warm, SHARD1)
    _flip_byte_keep_mtime(blob)
    v = cli("verify", QWEN3_VL_8B, "--cache-dir", "cache", "--json")
    assert v.exit_code == 3, v.stderr
    assert [m["path"] for m in v.json()["targets"][0]["mismatched"]] == [SHARD1]
    # verify's own re-hash stamps what matched: with every stamp gone, the next pull still reads nothing
    assert _pull(cli, mirrors, "--frozen").exit_code == 0  # repairs the shard
    shutil.rmtree(RepoCache(Path("cache"), QWEN3_VL_8B).repo_dir / ".qwen-fetch")
    assert cli("verify", QWEN3_VL_8B, "--cache-dir", "cache").exit_code == 0
    r = _pull(cli, mirrors, "--frozen")
    assert (r.json()["stamp_trusted_files"], r.json()["rehashed_files"]) == (NFILES, 0)


def test_stamps_confuse_neither_hf_nor_gc_nor_verify_all(cli, warm, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(Path("cache"))
    assert not info.warnings and [r.repo_id for r in info.repos] == [QWEN3_VL_8B]
    v = cli("verify", "--all", "--cache-dir", "cache", "--json")
    assert v.exit_code == 0, v.stdout
    g = cli("gc", "--cache-dir", "cache", "--json")
    assert g.exit_code == 0, g.stdout + g.stderr
    assert g.json()["plan"]["actions"] == [] and g.json()["plan"]["skipped"] == []


def test_corrupt_stamps_are_ignored(cli, warm, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    stamps = RepoCache(Path("cache"), QWEN3_VL_8B).repo_dir / ".qwen-fetch" / "stamps"
    for p in stamps.iterdir():
        p.write_bytes(p.read_bytes()[:20])
    r = _pull(cli, mirrors, "--frozen")
    assert r.exit_code == 0, r.stderr
    assert (r.json()["stamp_trusted_files"], r.json()["rehashed_files"]) == (0, NFILES)


def test_local_dir_gets_stamps_too(cli, sharded_repo, hub, mirrors, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "model"

    def pull(*extra: str):  # type: ignore[no-untyped-def]
        return cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--local-dir", str(d), "--no-smoke", "--json",
                   *extra)

    for _ in range(2):
        assert pull().exit_code == 0
    hub.reset_stats()
    r = pull("--frozen")
    assert r.exit_code == 0, r.stderr
    assert r.json()["stamp_trusted_files"] == NFILES and hub.log == []
    assert r.json()["target"] == str(d)
    _flip_byte_keep_mtime(d / SHARD1)
    r = pull("--frozen")
    assert r.exit_code == 0 and _file_gets(hub) == {SHARD1}


# -- qwen-fetch path ---------------------------------------------------------------------------


def test_path_prints_only_the_verified_snapshot(cli, warm, hub) -> None:  # type: ignore[no-untyped-def]
    r = cli("path", QWEN3_VL_8B, "--cache-dir", "cache")
    assert r.exit_code == 0, r.stderr
    snap = RepoCache(Path("cache"), QWEN3_VL_8B).snapshot_dir(warm)
    assert r.stdout == f"{snap}\n" and r.stderr == ""
    assert snapshot_path(QWEN3_VL_8B, cache_dir="cache") == snap
    assert snapshot_path(QWEN3_VL_8B, "main", lock=Path("qwen-fetch.lock"), cache_dir=Path("cache")) == snap
    assert hub.log == []


@pytest.mark.parametrize("damage", ["delete", "flip", "extra", "unpinned"])
def test_path_exits_3_with_the_pull_to_run(cli, store, warm, hub, damage) -> None:  # type: ignore[no-untyped-def]
    snap = RepoCache(Path("cache"), QWEN3_VL_8B).snapshot_dir(warm)
    if damage == "delete":
        _blob(store, warm, SHARD1).unlink()
    elif damage == "flip":
        _flip_byte_keep_mtime(_blob(store, warm, SHARD1))
    elif damage == "extra":
        (snap / "evil.py").write_text("import os\n")
    else:
        Path("qwen-fetch.lock").unlink()
    r = cli("path", QWEN3_VL_8B, "--cache-dir", "cache")
    assert r.exit_code == 3 and r.stdout == ""
    assert ("qwen-fetch lock" if damage == "unpinned" else f"qwen-fetch pull {QWEN3_VL_8B} --frozen") in r.stderr
    if damage in ("delete", "flip"):
        assert SHARD1 in r.stderr
    with pytest.raises(IntegrityError):
        snapshot_path(QWEN3_VL_8B, cache_dir="cache")


def test_path_of_an_unpulled_pin_is_exit_3(cli, sharded_repo, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    assert cli("lock", QWEN3_VL_8B, "--config", str(mirrors)).exit_code == 0
    r = cli("path", QWEN3_VL_8B, "--cache-dir", "cache")
    assert r.exit_code == 3 and "not in the cache" in r.stderr and "qwen-fetch pull" in r.stderr
    assert read_lock(Path("qwen-fetch.lock")).current(QWEN3_VL_8B) is not None


def test_offline_guards_sit_where_connections_are_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qwen_fetch.net.http import make_client
    from qwen_fetch.net.offline import OfflineError
    from qwen_fetch.sources.config import SourceConfig
    from qwen_fetch.sources.registry import make_source
    from qwen_fetch.store.backends import S3Store

    monkeypatch.setenv("QWEN_FETCH_OFFLINE", "1")
    with pytest.raises(OfflineError):
        make_client(endpoint="https://huggingface.co")
    for kind in ("hf", "modelscope", "s3"):
        with pytest.raises(OfflineError, match="offline \\(QWEN_FETCH_OFFLINE=1\\)"):
            make_source(SourceConfig(name="x", kind=kind, endpoint="s3://b/p" if kind == "s3" else "https://h"))
    with pytest.raises(OfflineError):
        S3Store("s3://bucket/prefix")
    make_source(SourceConfig(name="nfs", kind="dir", endpoint=str(tmp_path))).close()  # a folder is no network
    monkeypatch.setenv("QWEN_FETCH_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_client(endpoint="https://huggingface.co").close()  # QWEN_FETCH_OFFLINE decides when set
