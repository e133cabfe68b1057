"""Model ids the cache can hold and read back; odd folders in a cache are reported, never fatal, never deleted."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwen_fetch.core.errors import UsageError
from qwen_fetch.store.hfcache import check_repo_id, repo_folder_name, repo_id_from_folder
from tests.support.repo import RepoStore

MODEL = "Org/tiny"


@pytest.mark.parametrize("bad", ["Qwen/Ti--ny", "a/b/c", "x y", "Org/-x", "Org/x-", "Org/.x", "Org/x.git", "Org/a..b",
                                 "a" * 97 + "/b", "Org/", "/x", ""])
def test_ids_the_cache_cannot_round_trip_are_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        check_repo_id(bad)


@given(st.from_regex(r"\A(?:[a_][a_.-]{0,6}/)?[aB_][aB_.-]{0,6}\Z"))  # a small alphabet: "--" and ".." come up
def test_every_accepted_id_maps_to_a_folder_and_back(rid: str) -> None:
    try:
        check_repo_id(rid)
    except UsageError:
        return
    assert repo_id_from_folder(repo_folder_name(rid)) == rid


def test_pull_refuses_a_double_dash_id_before_any_request(cli, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    r = cli("pull", "Qwen/Ti--ny", "--config", str(mirrors), "--cache-dir", "cache", "--no-smoke", "--json")
    assert r.exit_code == 2, r.stdout + r.stderr
    assert r.json()["error"] == "usage-error" and hub.log == []
    assert not Path("cache").exists() or not any(Path("cache").iterdir())


ODD = ["models--a--b--c", "models--x y", "models--Qwen--Ti--ny"]


def test_odd_folders_do_not_block_gc_or_verify_all(cli, store: RepoStore, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    store.add_commit(MODEL, {"model.safetensors": hashlib.shake_256(b"s").digest(1 << 20), "config.json": b"{}"})
    assert cli("pull", MODEL, "--config", str(mirrors), "--cache-dir", "cache", "--lock", "qwen-fetch.lock",
               "--no-smoke").exit_code == 0
    for name in ODD:
        (Path("cache") / name / "snapshots" / ("c" * 40)).mkdir(parents=True)
        (Path("cache") / name / "snapshots" / ("c" * 40) / "f").write_text("x")
    v = cli("verify", "--all", "--cache-dir", "cache", "--lock", "qwen-fetch.lock", "--json")
    assert v.exit_code == 0, v.stdout + v.stderr
    assert v.json()["targets"][0]["ok"] and {Path(s["path"]).name for s in v.json()["skipped"]} == set(ODD)
    text = cli("verify", "--all", "--cache-dir", "cache", "--lock", "qwen-fetch.lock")
    assert text.exit_code == 0 and all(name in text.stdout for name in ODD), text.stdout
    for extra in (["--dry-run", "--json"], ["--yes", "--json"], ["--yes"]):
        g = cli("gc", "--cache-dir", "cache", "--lock", "qwen-fetch.lock", *extra)
        assert g.exit_code == 0, (extra, g.stdout, g.stderr)
        if "--json" in extra:
            skipped = g.json()["plan"]["skipped"]
            assert all(any(name in s for s in skipped) for name in ODD), skipped
    assert all((Path("cache") / name / "snapshots" / ("c" * 40) / "f").exists() for name in ODD)
