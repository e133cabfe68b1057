"""A fresh pull streams plain (non-LFS) files to disk: its peak memory does not grow with their size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qwen_fetch.store.hasher import hash_file
from qwen_fetch.store.hfcache import RepoCache
from tests.support import repo as repo_mod
from tests.support.fixtures import _random_file
from tests.support.repo import RepoStore

MODEL = "Org/big-plain"
FILES = 8
SIZE = 48 << 20  # below the 64 MiB a plain file may have; 8 of them are 384 MiB
PEAK_LIMIT = 300 << 20


# Runs the command and reports its exit code and peak RSS (kB) from wait4.  The launcher is a fresh, small
# process on purpose: Linux counts the memory a process had before exec in its ru_maxrss, so the command
# must not be forked from the test runner itself (hundreds of MB after other tests have run).
_LAUNCHER = ("import os, subprocess, sys\n"
             "p = subprocess.Popen(sys.argv[2:], stdout=open(sys.argv[1], 'wb'), stderr=subprocess.STDOUT)\n"
             "_pid, status, usage = os.wait4(p.pid, 0)\n"
             "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n")


def _peak_rss(argv: list[str], log: Path) -> tuple[int, int]:
    """Run ``argv``; (exit code, its own peak resident memory in bytes)."""
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, str(log), *argv], capture_output=True, text=True,
                         check=True, timeout=600)
    code, kb = out.stdout.split()
    return int(code), int(kb) * 1024  # kilobytes on Linux


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units differ")
def test_fresh_pull_of_large_plain_files_stays_under_300_mb(tmp_path, store: RepoStore, hub, mirrors,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repo_mod, "LFS_MIN_SIZE", 1 << 40)  # the hub lists these as plain git files
    files: dict[str, bytes | Path] = {"config.json": b"{}"}
    for i in range(FILES):
        p = tmp_path / "src" / f"data-{i}.txt"
        _random_file(p, SIZE, 1000 + i)
        files[p.name] = p
    commit = store.add_commit(MODEL, files)
    assert not any(f.lfs for f in store.files(MODEL, commit))
    code, peak = _peak_rss([sys.executable, "-m", "qwen_fetch", "pull", MODEL, "--config", str(mirrors),
                            "--cache-dir", "cache", "--lock", "qwen-fetch.lock", "--no-smoke", "--json"],
                           tmp_path / "pull.log")
    assert code == 0, (tmp_path / "pull.log").read_text()[-2000:]
    assert peak < PEAK_LIMIT, f"peak RSS {peak >> 20} MiB"
    snap = RepoCache(Path("cache"), MODEL).snapshot_dir(commit)
    for f in store.files(MODEL, commit):
        assert hash_file(snap / f.path).sha256 == f.sha256
