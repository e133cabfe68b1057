"""Build HF-layout caches directly (no pull), the way ``pull`` lays them out, for verify/gc tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from qwen_fetch.core.lockfile import Lock
from qwen_fetch.core.manifest import Pin, PinnedFile
from qwen_fetch.core.paths import safe_relpath
from qwen_fetch.store.hfcache import RepoCache
from qwen_fetch.store.lockio import write_lock
from tests.support.repo import RepoStore


def pin_of(store: RepoStore, repo_id: str, commit: str, revision: str = "main") -> Pin:
    files = tuple(PinnedFile(path=safe_relpath(f.path), size=f.size, sha256=f.sha256, lfs=f.lfs,
                             git_oid=None if f.lfs else f.git_oid)
                  for f in store.files(repo_id, commit))
    return Pin(revision=revision, commit=commit, source="test", files=tuple(sorted(files, key=lambda f: f.path)))


def install(cache_dir: Path, store: RepoStore, repo_id: str, commit: str, *, ref: str | None = "main") -> Pin:
    """Copy one commit of ``store`` into the cache: blobs by sha256, relative snapshot links, a ref."""
    repo = RepoCache(cache_dir, repo_id)
    repo.ensure_dirs()
    pin = pin_of(store, repo_id, commit, ref or "main")
    for f in store.files(repo_id, commit):
        blob = repo.blob_path(f.sha256)
        if not blob.exists():
            shutil.copyfile(f.disk, blob)
        repo.link_snapshot(commit, safe_relpath(f.path), f.sha256)
    if ref:
        repo.write_ref(ref, commit)
    return pin


def write_pins(path: Path, pins: dict[str, list[Pin]]) -> Path:
    lock = Lock()
    for mid, ps in pins.items():
        for p in reversed(ps):  # with_pin makes the last one current
            lock = lock.with_pin(mid, p, keep=len(ps))
    write_lock(path, lock)
    return path


def disk_bytes(root: Path) -> int:
    """Bytes held by regular files under ``root`` (links count nothing)."""
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
