"""The demo's origin: a folder of model files laid out as a Hugging Face cache, for ``serve`` to publish.

``qwen-fetch serve`` publishes what a cache holds; a fleet seeds one machine's cache and points
every other node at it.  The demo does the same on one machine: the bundled model goes into a
fresh cache here, ``serve`` publishes it on loopback, and the real ``pull`` fetches it from there.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from qwen_fetch.core.paths import safe_relpath
from qwen_fetch.serve.catalog import guess_lfs
from qwen_fetch.store.hasher import hash_file
from qwen_fetch.store.hfcache import RepoCache, check_repo_id


def seed_cache(cache_dir: Path, repo_id: str, files: dict[str, Path], *, revision: str = "main") -> str:
    """Copy ``files`` (``{repo path: local file}``) into ``cache_dir`` as one snapshot of ``repo_id``.

    Blobs are named as ``huggingface_hub`` names them (sha256 for LFS files, the git blob id for
    the rest), so ``serve`` tells LFS from plain files exactly as it does in any user's cache.
    The commit id is derived from the files' paths and digests: the same files give the same
    commit, so a rerun pins what the previous run pinned.  Returns the commit.
    """
    repo = RepoCache(cache_dir, check_repo_id(repo_id))
    repo.ensure_dirs()
    commit_hash = hashlib.sha1(usedforsecurity=False)
    blobs: dict[str, str] = {}
    for path in sorted(files):
        src = files[path]
        digests = hash_file(src, with_git_oid=True)
        assert digests.git_oid is not None
        name = digests.sha256 if guess_lfs(path, digests.size) else digests.git_oid
        shutil.copyfile(src, repo.blob_path(name))
        blobs[path] = name
        commit_hash.update(path.encode() + b"\0" + digests.sha256.encode() + b"\n")
    commit = commit_hash.hexdigest()
    for path, name in blobs.items():
        repo.link_snapshot(commit, safe_relpath(path), name)
    repo.write_ref(revision, commit)
    return commit
