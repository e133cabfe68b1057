"""Helpers shared by the engine tests (no tests here): a repo on a loopback hub, jobs into a cache."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from qwen_fetch.core.paths import safe_relpath
from qwen_fetch.net.jobs import EngineOptions, FetchJob
from qwen_fetch.net.location import FileLocation, OriginToken, auth_headers
from qwen_fetch.store.hfcache import RepoCache
from tests.support.repo import RepoStore

REPO = "org/model"

# Small everything, so a few MB exercise splitting, stealing and many blocks.
FAST = EngineOptions(connections=4, part_size=256 << 10, single_stream_below=128 << 10, block_size=64 << 10,
                     step_size=16 << 10, min_split=64 << 10, tail_piece=64 << 10, max_attempts=4, backoff_base=0.01, backoff_max=0.05,
                     stall_timeout=1.0, request_timeout=5.0)


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def make_repo(root: Path, files: dict[str, int], seed: int = 0) -> tuple[RepoStore, str, dict[str, bytes]]:
    store = RepoStore(root / "store")
    data = {p: payload(n, seed + i) for i, (p, n) in enumerate(sorted(files.items()))}
    commit = store.add_commit(REPO, dict(data))
    return store, commit, data


def make_jobs(cache_dir: Path, commit: str, data: dict[str, bytes], bases: list[tuple[str, str]],
              token: OriginToken | None = None) -> list[FetchJob]:
    """One job per file; ``bases`` are (source name, hub base URL) tried in order."""
    pins = {p: (len(b), hashlib.sha256(b).hexdigest()) for p, b in data.items()}
    return jobs_for(cache_dir, commit, pins, bases, token)


def jobs_for(cache_dir: Path, commit: str, pins: dict[str, tuple[int, str]], bases: list[tuple[str, str]],
             token: OriginToken | None = None) -> list[FetchJob]:
    """Jobs for files pinned as ``path -> (size, sha256)``, in the HF cache layout under ``cache_dir``;
    ``token``: the auth a source would add for its own origin."""
    rc = RepoCache(cache_dir, REPO)
    jobs = []
    for path, (size, sha) in sorted(pins.items()):
        urls = [(name, f"{base}/{REPO}/resolve/{commit}/{quote(path)}") for name, base in bases]
        locs = tuple(FileLocation(name, url, headers=auth_headers(token, url)) for name, url in urls)
        jobs.append(FetchJob(path=safe_relpath(path), size=size, sha256=sha, dest=rc.blob_path(sha),
                             partial=rc.partial_path(sha), lock=rc.lock_path(sha), locations=locs))
    return jobs


def options(**kw: object) -> EngineOptions:
    return replace(FAST, **kw)  # type: ignore[arg-type]
