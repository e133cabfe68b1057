"""Flags are checked before any work: no request reaches a hub, nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer


@pytest.mark.parametrize("extra, needle", [
    (["--frozen", "--update"], "--update and --frozen"),
    (["--device", "tpu"], "unknown --device 'tpu'"),
    (["--local-dir", "plain", "--cache-dir", "cache"], "--local-dir and --cache-dir"),
    (["--smoke", "sometimes"], "--smoke must be"),
])
def test_pull_refuses_bad_flags_before_the_network(cli, sharded_repo, hub: HubServer, mirrors: Path, tmp_path: Path,
                                                   extra: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    before = sorted(p.name for p in tmp_path.iterdir())
    r = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), *extra)
    assert r.exit_code == 2, r.stderr
    assert needle in r.stderr and "hint:" in r.stderr
    assert hub.log == []  # not even a resolve
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_frozen_update_is_a_usage_error_even_with_a_pin(cli, sharded_repo, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("lock", QWEN3_VL_8B, "--config", str(mirrors)).exit_code == 0
    hub.reset_stats()
    r = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--frozen", "--update", "--json")
    assert r.exit_code == 2 and r.json()["error"] == "usage-error"
    assert hub.log == []


@pytest.mark.parametrize("args", [
    ["gc", "--no-lock"],
    ["gc", "--no-lock", "--dry-run"],
    ["verify", "--all"],
])
def test_missing_cache_folder_is_an_error_not_an_empty_cache(cli, args: list[str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from qwen_fetch.core.lockfile import Lock
    from qwen_fetch.store.lockio import write_lock

    write_lock(Path("qwen-fetch.lock"), Lock())
    r = cli(*args, "--cache-dir", str(tmp_path / "typo-cache"))
    assert r.exit_code == 2, r.stdout + r.stderr
    assert f"cache folder {tmp_path / 'typo-cache'} does not exist" in r.stderr
    assert "nothing to collect" not in r.stdout
    assert not (tmp_path / "typo-cache").exists()


def test_verify_of_a_model_in_a_missing_cache_says_the_folder_is_missing(cli, sharded_repo, hub: HubServer,
                                                                         mirrors: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Not in the cache stays exit 3 (what a deploy check tests for), and names the missing folder."""
    assert cli("lock", QWEN3_VL_8B, "--config", str(mirrors)).exit_code == 0
    r = cli("verify", QWEN3_VL_8B, "--cache-dir", str(tmp_path / "typo-cache"))
    assert r.exit_code == 3, r.stderr
    assert "(that folder does not exist)" in r.stderr and "qwen-fetch pull" in r.stderr
