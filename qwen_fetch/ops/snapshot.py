"""``qwen-fetch path``: the verified snapshot folder of a pinned model, from the cache alone.

For scripts and services: ``vllm serve "$(qwen-fetch path Qwen/Qwen3-VL-8B-Instruct)"``.
No network, and no hashing beyond the warm path's rules: a file a verification
stamp vouches for is not read, any other is re-hashed (and stamped) as ``pull``
would.  Anything missing, damaged or extra in the snapshot is an
:class:`~qwen_fetch.core.errors.IntegrityError` (exit 3) whose hint is the pull that
fixes it.
"""

from __future__ import annotations

import os
from pathlib import Path

from qwen_fetch.core.errors import IntegrityError, Ref
from qwen_fetch.core.lockfile import DEFAULT_LOCK_NAME
from qwen_fetch.core.pins import pick_pin
from qwen_fetch.store.hfcache import RepoCache, check_repo_id
from qwen_fetch.store.lockio import read_lock
from qwen_fetch.store.placement import Layout
from qwen_fetch.store.verify_disk import list_entries
from qwen_fetch.store.warm import check_in_place


def path(model_id: str, revision: str | None = None, *, lock: Path | str = DEFAULT_LOCK_NAME,
         cache_dir: Path | str | None = None) -> Path:
    """The snapshot folder of ``model_id``'s pinned commit, once every pinned file in it is verified.

    ``revision`` picks among the lock's pins (branch, tag or commit prefix; default the
    current pin).  ``cache_dir`` defaults to the Hugging Face cache (``HF_HUB_CACHE``...).
    Raises :class:`IntegrityError` when the pin or any file is missing or does not match,
    :class:`~qwen_fetch.core.errors.UsageError` for a bad model id or an unreadable lockfile.
    """
    from qwen_fetch.sources.config import default_cache_dir

    check_repo_id(model_id)
    lock_path = Path(lock)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir().expanduser()
    fix = f"qwen-fetch pull {model_id} --frozen" + (f" --revision {revision}" if revision else "") + \
        (f" --lock {lock_path}" if lock_path != Path(DEFAULT_LOCK_NAME) else "") + \
        (f" --cache-dir {cache}" if cache_dir is not None else "")
    if not read_lock(lock_path).pins(model_id):
        raise IntegrityError(f"{model_id} has no pin in {lock_path}", reference=Ref.MISSING_PIN,
                             hint=f"pin it with `qwen-fetch lock {model_id}` (commit the lockfile), then run `{fix}`")
    pin = pick_pin(read_lock(lock_path), model_id, revision, update=False, frozen=True)
    assert pin is not None
    repo = RepoCache(cache, model_id)
    snap = repo.snapshot_dir(pin.commit)
    if not snap.is_dir():
        raise IntegrityError(f"{model_id}@{pin.commit[:12]} is not in the cache ({cache})", reference=Ref.NOT_IN_CACHE,
                             hint=f"run `{fix}`")
    check = check_in_place(Layout(cache, model_id, None), pin.files)
    problems = [f"{f.path}: missing" for f in check.missing] + \
        [f"{f.path}: does not match its pin" for f in check.bad]
    for f in check.trusted + check.rehashed:
        if not _links_to(repo.snapshot_file(pin.commit, f.path), repo.blob_path(f.blob_name)):
            problems.append(f"{f.path}: not linked to its blob")
    problems += [f"{rel}: not in the lock" for rel in sorted(set(list_entries(snap)) - {f.path for f in pin.files})]
    if problems:
        raise IntegrityError(f"{model_id}@{pin.commit[:12]} in {cache} is incomplete or does not match the lock",
                             context=sorted(problems)[:50], reference=Ref.NOT_VERIFIED, hint=f"run `{fix}`")
    return snap


def _links_to(link: Path, blob: Path) -> bool:
    """Is ``link`` a symlink whose target is exactly ``blob`` (never followed further)?"""
    try:
        raw = os.readlink(link)
    except OSError:
        return False
    return os.path.normpath(os.path.join(os.path.dirname(link), raw)) == os.path.normpath(blob)
