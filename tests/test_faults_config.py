"""Fault campaign, hostile configuration: mirrors.yaml and the lockfile are loaded safely.

Safe loading only (no object construction, no alias expansion, bounded depth),
every problem is exit 2 with the file (and line), and a hand-edited hash is
caught by ``verify`` and refused by ``pull``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_fetch.store.hfcache import RepoCache
from qwen_fetch.store.lockio import read_lock
from tests.support.faultkit import HOSTILE_LOCKS, HOSTILE_MIRRORS, cache_digest
from tests.support.fixtures import QWEN3_VL_8B

SHARD2 = "model-00002-of-00004.safetensors"


@pytest.mark.parametrize("case", sorted(HOSTILE_MIRRORS))
def test_hostile_mirrors_yaml_is_exit_2(case: str, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text, needle = HOSTILE_MIRRORS[case]
    cfg = tmp_path / "mirrors.yaml"
    cfg.write_text(text)
    r = cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", "cache", "--no-smoke", timeout=60)
    assert r.exit_code == 2, r.stderr
    assert needle in r.stderr and str(cfg) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not Path("PWNED").exists() and not Path("cache").exists()


def test_non_utf8_mirrors_yaml(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "mirrors.yaml"
    cfg.write_bytes(b"sources:\n  - name: \xff\xfe\n")
    r = cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--no-smoke")
    assert r.exit_code == 2 and str(cfg) in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("case", sorted(HOSTILE_LOCKS))
def test_hostile_lockfile_is_exit_2_for_every_command(case: str, cli, sharded_repo, hub, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    lock = Path("qwen-fetch.lock")
    if HOSTILE_LOCKS[case] is None:
        assert cli("lock", QWEN3_VL_8B, "--config", str(mirrors)).exit_code == 0
        text = lock.read_text()
        if case == "truncated":
            cut = text.index("sha256:", len(text) // 2) + 20
            text, needle = text[:cut] + "\n", str(lock)
        else:
            text, needle = text.replace("  - revision:", "  - mirror_note: hi\n    revision:", 1), "unknown key 'mirror_note'"
    else:
        text, needle = HOSTILE_LOCKS[case]  # type: ignore[misc]
    lock.write_text(text)
    hub.reset_stats()
    for args in (("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "cache", "--no-smoke"),
                 ("verify", QWEN3_VL_8B, "--cache-dir", "cache"),
                 ("gc", "--cache-dir", "cache", "--yes"),
                 ("lock", QWEN3_VL_8B, "--config", str(mirrors))):
        r = cli(*args, timeout=60)
        assert r.exit_code == 2, (args, r.stdout, r.stderr)
        assert needle in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert not Path("PWNED").exists()
    assert lock.read_text() == text  # never rewritten over
    assert hub.total_bytes() == 0


def _pull(cli, mirrors: Path, *extra: str):  # type: ignore[no-untyped-def]
    return cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "cache", "--no-smoke", *extra)


@pytest.mark.parametrize("field,target", [("sha256", SHARD2), ("size", SHARD2), ("sha256", "config.json")])
def test_hand_edited_pin_after_a_pull_is_caught(field: str, target: str, cli, store, sharded_repo, hub,  # type: ignore[no-untyped-def]
                                                mirrors: Path) -> None:
    """A pulled, verified cache; then someone edits the pin of one file.  verify reports that file with
    expected/actual, pull refuses (exit 3) without touching the snapshot, the blobs or the lockfile.

    A shard's pin is checked against the listing's sha256 before any download; a small git file has
    only a git blob id in the listing, so its bytes are fetched and refused (a reset partial may stay).
    """
    assert _pull(cli, mirrors).exit_code == 0
    lock = Path("qwen-fetch.lock")
    pin = read_lock(lock).current(QWEN3_VL_8B)
    assert pin is not None
    real = pin.by_path()[target]
    text = lock.read_text()
    if field == "sha256":
        edited = text.replace(real.sha256, "d" * 64)
    else:
        edited = text.replace(f"path: {target}\n      size: {real.size}\n", f"path: {target}\n      size: {real.size + 1}\n")
    assert edited != text
    lock.write_text(edited)
    before = cache_digest(Path("cache"))

    r = cli("verify", QWEN3_VL_8B, "--cache-dir", "cache", "--json")
    assert r.exit_code == 3, r.stdout
    assert target in r.stdout and (real.sha256 in r.stdout or str(real.size) in r.stdout)
    others = [f.path for f in pin.files if f.path != target]
    assert not any(f'"{p}"' in r.stdout for p in others), "only the edited file is reported"

    hub.reset_stats()
    for extra in ((), ("--frozen",)):
        r = _pull(cli, mirrors, *extra)
        assert r.exit_code == 3, r.stderr
        assert target in r.stderr
    if target == SHARD2:
        assert hub.total_bytes() == 0
    after = {k: v for k, v in cache_digest(Path("cache")).items() if ".incomplete" not in k}
    assert after == before
    assert lock.read_text() == edited
    repo = RepoCache(Path("cache"), QWEN3_VL_8B)
    assert repo.read_ref("main") == sharded_repo
