"""pull --update fetches only what changed: plain git files whose blob id is unchanged are reused."""

from __future__ import annotations

from pathlib import Path

from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer
from tests.support.repo import RepoStore


def _file_gets(hub: HubServer) -> list[str]:
    """Repository paths whose bytes were requested (GET .../resolve/<rev>/<path>)."""
    return sorted(e["path"].split("/resolve/", 1)[1].split("/", 1)[1] for e in hub.log
                  if e["method"] == "GET" and "/resolve/" in e["path"])


def test_update_fetches_only_the_changed_plain_file(cli, store: RepoStore, sharded_repo: str, hub: HubServer,
                                                    mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    common = ["--config", str(mirrors), "--cache-dir", "cache", "--no-smoke", "--json"]
    assert cli("pull", QWEN3_VL_8B, *common).exit_code == 0
    old = {f.path: f for f in store.files(QWEN3_VL_8B, sharded_repo)}
    plain = sorted(p for p, f in old.items() if not f.lfs)
    assert len(plain) >= 5 and "config.json" in plain
    # A new commit on main: config.json changed, every other file the same bytes.
    files: dict[str, bytes | Path] = {p: f.disk for p, f in old.items()}
    files["config.json"] = old["config.json"].disk.read_bytes().replace(b"{", b'{"changed": true, ', 1)
    new_commit = store.add_commit(QWEN3_VL_8B, files)
    hub.reset_stats()

    r = cli("pull", QWEN3_VL_8B, *common, "--update")
    assert r.exit_code == 0, r.stdout + r.stderr
    doc = r.json()
    assert doc["commit"] == new_commit and doc["lock_written"]
    assert _file_gets(hub) == ["config.json"]
    assert doc["downloaded_files"] == 1
    assert cli("verify", QWEN3_VL_8B, "--cache-dir", "cache", "--revision", new_commit).exit_code == 0


def test_update_fetches_a_reused_file_whose_blob_is_gone(cli, store: RepoStore, sharded_repo: str, hub: HubServer,
                                                         mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    """The old pin names the content; the bytes still come from the hub and are verified when not cached."""
    common = ["--config", str(mirrors), "--cache-dir", "cache", "--no-smoke", "--json"]
    assert cli("pull", QWEN3_VL_8B, *common).exit_code == 0
    old = {f.path: f for f in store.files(QWEN3_VL_8B, sharded_repo)}
    files: dict[str, bytes | Path] = {p: f.disk for p, f in old.items()}
    files["config.json"] = old["config.json"].disk.read_bytes() + b"\n"
    new_commit = store.add_commit(QWEN3_VL_8B, files)
    import hashlib

    gone = hashlib.sha256(old["generation_config.json"].disk.read_bytes()).hexdigest()
    for blob in Path("cache").glob(f"models--*/blobs/{gone}"):
        blob.unlink()
    hub.reset_stats()
    r = cli("pull", QWEN3_VL_8B, *common, "--update")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert _file_gets(hub) == ["config.json", "generation_config.json"]
    assert cli("verify", QWEN3_VL_8B, "--cache-dir", "cache", "--revision", new_commit).exit_code == 0
