"""Helpers for the serve/sync tests: a cache filled by a real (in-process) pull."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from qwen_fetch.core.lockfile import Lock
from qwen_fetch.ops.pull import Puller, PullOptions
from qwen_fetch.sources.config import Config, SourceConfig
from qwen_fetch.store.hasher import hash_file
from qwen_fetch.store.lockio import read_lock

HF_BIN = str(Path(sys.executable).with_name("hf"))


def pull_into(cache: Path, lock: Path, model: str, endpoint: str, revision: str | None = None) -> Lock:
    """Pull ``model`` from an HF endpoint into ``cache``, pinning it in ``lock``; returns the lock."""
    cfg = Config(sources=(SourceConfig(name="origin", kind="hf", endpoint=endpoint),), origin="test")
    p = Puller(cfg, PullOptions(model_id=model, revision=revision, cache_dir=cache, lock_path=lock,
                                update=revision is not None and lock.exists()))
    try:
        p.run()
    finally:
        p.close()
    return read_lock(lock)


def snapshot_hashes(snapshot: Path) -> dict[str, str]:
    """path -> sha256 of every file under a snapshot or folder (links followed)."""
    out = {}
    for p in sorted(snapshot.rglob("*")):
        if p.is_file() and ".cache" not in p.relative_to(snapshot).parts:
            out[p.relative_to(snapshot).as_posix()] = hash_file(p).sha256
    return out


def run_hf(*args: str, endpoint: str, home: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The stock ``hf`` CLI with ``HF_ENDPOINT`` pointed at our server."""
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="127.0.0.1,localhost")
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([HF_BIN, *args], capture_output=True, text=True, env=env, timeout=timeout)
