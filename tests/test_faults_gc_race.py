"""Fault campaign, gc beside a pull at the worst moment: between two snapshot links.

A first pull of a model has no pin yet (the lockfile is written at the end) and
no ref until its links are all made, so a ``gc --no-lock`` (or ``gc --lock``
with the project's lockfile) that runs right then sees an unpinned,
unreferenced revision.  Whatever gc does, the pull must not report success
with a snapshot that is incomplete or dangling: exit 0 means ``verify`` passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from qwen_fetch.cli.app import app
from qwen_fetch.store.hfcache import RepoCache
from tests.support.faultkit import run_qf
from tests.support.fixtures import QWEN3_VL_8B


@pytest.mark.parametrize("after_links,by_commit", [(1, False), (8, False), (3, True)])
def test_gc_between_snapshot_links_never_leaves_a_broken_success(after_links: int, by_commit: bool, store,  # type: ignore[no-untyped-def]
                                                                  sharded_repo, hub, mirrors: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``by_commit``: ``--revision <sha>`` writes no ref at all, so nothing but the final check protects it."""
    real = RepoCache.link_snapshot
    linked: list[str] = []
    gc_runs = []

    def link_then_gc(self: RepoCache, commit: str, path: str, blob: str) -> Path:
        out = real(self, commit, path, blob)  # type: ignore[arg-type]
        linked.append(path)
        if len(linked) == after_links:
            gc_runs.append(run_qf("gc", "--cache-dir", str(self.cache_dir), "--no-lock", "--yes", "--json"))
        return out

    monkeypatch.setattr(RepoCache, "link_snapshot", link_then_gc)
    extra = ["--revision", sharded_repo] if by_commit else []
    res = CliRunner().invoke(app, ["pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "cache",
                                   "--no-smoke", *extra])
    assert gc_runs and gc_runs[0].returncode == 0, gc_runs and gc_runs[0].stderr
    v = run_qf("verify", QWEN3_VL_8B, "--cache-dir", "cache", "--revision", sharded_repo)
    if res.exit_code == 0:
        assert v.returncode == 0, f"pull said ok but the cache fails verify:\n{v.stdout}{v.stderr}"
        snap = RepoCache(Path("cache"), QWEN3_VL_8B).snapshot_dir(sharded_repo)
        assert sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if not p.is_dir()) == \
            sorted(f.path for f in store.files(QWEN3_VL_8B, sharded_repo))
    else:
        assert res.exit_code in (3, 4) and "rerun" in res.output, res.output
    monkeypatch.setattr(RepoCache, "link_snapshot", real)
    r = run_qf("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "cache", "--no-smoke", *extra)
    assert r.returncode == 0, r.stderr
    assert run_qf("verify", QWEN3_VL_8B, "--cache-dir", "cache", "--revision", sharded_repo).returncode == 0
