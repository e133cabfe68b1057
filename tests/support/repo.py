"""On-disk test repositories that the loopback hub serves.

Layout (a "repo store")::

    <root>/<org>/<name>/refs.json            {"main": "<commit>", "v1.0": "<commit>"}
    <root>/<org>/<name>/commits/<commit>/... the files of that commit

Commits are deterministic: sha1 over the sorted (path, sha256) pairs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qwen_fetch.store.hasher import hash_file

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".msgpack", ".h5", ".npz")
LFS_MIN_SIZE = 10 * 1024 * 1024


def is_lfs(path: str, size: int) -> bool:
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


@dataclass(frozen=True)
class StoredFile:
    path: str
    disk: Path
    size: int
    sha256: str
    git_oid: str
    lfs: bool

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@lru_cache(maxsize=4096)
def _hash_cached(disk: str, mtime_ns: int, size: int) -> tuple[str, str]:
    h = hash_file(Path(disk), with_git_oid=True)
    assert h.git_oid is not None
    return h.sha256, h.git_oid


def stored_file(path: str, disk: Path) -> StoredFile:
    st = disk.stat()
    sha, oid = _hash_cached(str(disk), st.st_mtime_ns, st.st_size)
    return StoredFile(path=path, disk=disk, size=st.st_size, sha256=sha, git_oid=oid, lfs=is_lfs(path, st.st_size))


class RepoStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / repo_id

    def refs(self, repo_id: str) -> dict[str, str]:
        p = self.repo_dir(repo_id) / "refs.json"
        if not p.is_file():
            return {}
        return dict(json.loads(p.read_text()))

    def set_ref(self, repo_id: str, name: str, commit: str) -> None:
        refs = self.refs(repo_id)
        refs[name] = commit
        (self.repo_dir(repo_id) / "refs.json").write_text(json.dumps(refs, indent=1, sort_keys=True))

    def has_repo(self, repo_id: str) -> bool:
        return (self.repo_dir(repo_id) / "refs.json").is_file()

    def resolve(self, repo_id: str, revision: str) -> str | None:
        refs = self.refs(repo_id)
        if revision in refs:
            return refs[revision]
        if (self.repo_dir(repo_id) / "commits" / revision).is_dir():
            return revision
        return None

    def files(self, repo_id: str, commit: str) -> list[StoredFile]:
        base = self.repo_dir(repo_id) / "commits" / commit
        out = []
        for p in sorted(base.rglob("*")):
            if p.is_file():
                out.append(stored_file(p.relative_to(base).as_posix(), p))
        return out

    def file(self, repo_id: str, commit: str, path: str) -> StoredFile | None:
        base = (self.repo_dir(repo_id) / "commits" / commit).resolve()
        p = (base / path).resolve()
        if not str(p).startswith(str(base) + os.sep) or not p.is_file():
            return None
        return stored_file(path, p)

    def add_commit(self, repo_id: str, files: dict[str, bytes | Path], *, revision: str = "main",
                   link: bool = True) -> str:
        """Add a commit holding ``files`` (bytes, or paths hard-linked/copied in); point ``revision`` at it."""
        h = hashlib.sha1()
        staged = self.repo_dir(repo_id) / "staging"
        if staged.exists():
            shutil.rmtree(staged)
        staged.mkdir(parents=True)
        for path in sorted(files):
            src = files[path]
            dst = staged / path
            dst.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, bytes):
                dst.write_bytes(src)
            elif link:
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            else:
                shutil.copyfile(src, dst)
            h.update(path.encode() + b"\0" + hash_file(dst).sha256.encode() + b"\n")
        commit = h.hexdigest()
        final = self.repo_dir(repo_id) / "commits" / commit
        if final.exists():
            shutil.rmtree(staged)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            staged.rename(final)
        self.set_ref(repo_id, revision, commit)
        return commit
