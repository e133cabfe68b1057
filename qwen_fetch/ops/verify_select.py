"""Which pins and which folders ``verify`` checks: lockfiles, model ids, paths, snapshot folders.

Shared by the ``verify``, ``gc`` and ``smoke`` commands and by :func:`qwen_fetch.verify`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from qwen_fetch.core.errors import IntegrityError, Ref, UsageError
from qwen_fetch.core.lockfile import DEFAULT_LOCK_NAME, Lock
from qwen_fetch.core.manifest import Pin
from qwen_fetch.core.progress import ProgressSink
from qwen_fetch.core.verify import VerifyReport
from qwen_fetch.store.lockio import read_lock


def existing_cache(cache: Path, *, explicit: bool) -> Path:
    """``cache`` when it is a folder; a missing one is a usage error, never an empty cache.

    A typo in ``--cache-dir`` (or an unset ``HF_HUB_CACHE`` in a container) would otherwise
    read as "nothing to collect" or "verified: 0 targets".
    """
    if not cache.is_dir():
        where = "" if explicit else " (the default: $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub)"
        raise UsageError(f"cache folder {cache}{where} does not exist", reference=Ref.NO_CACHE,
                         hint="pass the --cache-dir your pulls used" + ("" if explicit else ", or set HF_HUB_CACHE"))
    return cache


def load_pins(lock_paths: list[Path], *, explicit: bool) -> list[tuple[str, Pin]]:
    """(model id, pin) for every pin of every lockfile, in lock order (current pin first)."""
    out: list[tuple[str, Pin]] = []
    seen: set[tuple[str, str]] = set()
    for path in lock_paths:
        if not path.is_file():
            if explicit:
                raise UsageError(f"lockfile {path} does not exist",
                                 hint="pass the right --lock, or create one with `qwen-fetch lock MODEL`")
            continue
        lock: Lock = read_lock(path)
        for mid, pins in lock.models:
            for pin in pins:
                if (mid, pin.commit) not in seen:
                    seen.add((mid, pin.commit))
                    out.append((mid, pin))
    return out


def looks_like_path(arg: str) -> bool:
    """A positional argument is a PATH when it is clearly one; ``org/name`` stays a model id."""
    from qwen_fetch.store.hfcache import check_repo_id

    if arg.startswith(("/", "./", "../", "~")) or arg in (".", ".."):
        return True
    try:
        check_repo_id(arg)
    except UsageError:
        return Path(arg).is_dir()
    return False


def select_pins(model: str, pins: list[tuple[str, Pin]], revision: str | None, cache_dir: Path | None,
                locks: str) -> list[Pin]:
    """The pins of ``model`` to check: the one naming ``revision`` (commit, revision or cached ref), or all."""
    mine = [p for mid, p in pins if mid == model]
    if not mine:
        raise UsageError(f"{model} is not pinned in {locks}",
                         hint=f"pin it first: qwen-fetch lock {model}  (or pass --lock FILE)")
    if revision is None:
        return mine
    commit = revision
    if cache_dir is not None:
        from qwen_fetch.store.hfcache import RepoCache

        commit = RepoCache(cache_dir, model).read_ref(revision) or revision
    chosen = [p for p in mine if p.commit in (revision, commit) or p.revision == revision]
    if not chosen:
        pinned = ", ".join(f"{p.revision}@{p.commit[:12]}" for p in mine)
        raise UsageError(f"revision {revision!r} of {model} is not pinned (pinned: {pinned})",
                         hint=f"pin it with: qwen-fetch lock {model} --revision {revision} --update")
    return chosen[:1]


def infer_from_snapshot(folder: Path) -> tuple[str, str] | None:
    """``.../models--org--name/snapshots/<commit>`` -> (model id, commit)."""
    from qwen_fetch.store.hfcache import repo_id_from_folder

    parts = folder.resolve().parts
    if len(parts) >= 3 and parts[-2] == "snapshots":
        rid = repo_id_from_folder(parts[-3])
        if rid:
            return rid, parts[-1]
    return None


def build_report(target: str | None, lock: Sequence[Path] | None, cache_dir: Path | None, local_dir: Path | None,
                 model_opt: str | None, revision: str | None, all_: bool, workers: int | None,
                 progress: ProgressSink | None = None) -> VerifyReport:
    """What ``qwen-fetch verify`` checks, as a report: a model's cached snapshots, a folder, or ``--all``.

    ``target`` is a model id or a folder (told apart by :func:`looks_like_path`); ``lock`` the
    lockfiles (default ``./qwen-fetch.lock``).  Raises :class:`UsageError` for a request that
    names nothing checkable and :class:`IntegrityError` (``not-cached``) when a pinned model
    is not in the cache; mismatches are in the report, not raised.
    """
    from qwen_fetch.sources.config import default_cache_dir
    from qwen_fetch.store.verify_disk import Target, verify_all, verify_targets


    lock_paths = list(lock or [Path(DEFAULT_LOCK_NAME)])
    locks_shown = ", ".join(str(p) for p in lock_paths)
    pins = load_pins(lock_paths, explicit=bool(lock))
    cache = Path(os.path.abspath(cache_dir or default_cache_dir()))
    if all_:
        existing_cache(cache, explicit=cache_dir is not None)
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1", hint="e.g. --workers 4")

    if all_:
        if target or local_dir:
            raise UsageError("--all checks the whole cache; it takes no MODEL_ID, PATH or --local-dir",
                             hint="qwen-fetch verify --all --cache-dir DIR")
        if not pins:
            raise UsageError(f"no pins in {locks_shown}", hint="pin models with `qwen-fetch lock MODEL`, or pass --lock")
        return verify_all(cache, pins, workers=workers, progress=progress)

    folder: Path | None = local_dir
    model = model_opt
    if target is not None and local_dir is None and looks_like_path(target):
        folder = Path(target).expanduser()
    elif target is not None:
        if model and model != target:
            raise UsageError(f"MODEL_ID {target} and --model {model} disagree", hint="pass only one")
        model = target

    if folder is not None:
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a directory", hint="pass the folder that `pull --local-dir` wrote")
        inferred = infer_from_snapshot(folder)
        if model is None and inferred:
            model = inferred[0]
        if model is None:
            ids = sorted({mid for mid, _ in pins})
            if len(ids) != 1:
                raise UsageError(f"cannot tell which model {folder} holds",
                                 hint="name it: qwen-fetch verify --local-dir DIR MODEL_ID  (or --model MODEL_ID)")
            model = ids[0]
        rev = revision or (inferred[1] if inferred and inferred[0] == model else None)
        pin = select_pins(model, pins, rev, None, locks_shown)[0]
        snap = inferred is not None and inferred[0] == model
        blobs = folder.resolve().parent.parent / "blobs" if snap else None
        root = folder.resolve() if snap else Path(os.path.abspath(folder))
        t = Target(model, pin, root, snapshot=snap, blobs_dir=blobs)
        return VerifyReport(targets=verify_targets([t], workers=workers, progress=progress))

    if model is None:
        raise UsageError("name a MODEL_ID or a PATH, or pass --all", hint="qwen-fetch verify Qwen/Qwen3-VL-8B-Instruct")
    from qwen_fetch.store.hfcache import RepoCache

    chosen = select_pins(model, pins, revision, cache, locks_shown)
    repo = RepoCache(cache, model)
    present = [p for p in chosen if repo.snapshot_dir(p.commit).is_dir()]
    if not present:
        wanted = ", ".join(p.commit[:12] for p in chosen)
        gone = "" if cache.is_dir() else " (that folder does not exist)"
        raise IntegrityError(f"{model} (pinned {wanted}) is not in the cache {cache}{gone}",
                             hint=f"download it: qwen-fetch pull {model} --cache-dir {cache}",
                             reference=Ref.NOT_CACHED)
    targets = [Target(model, p, repo.snapshot_dir(p.commit), snapshot=True, blobs_dir=repo.blobs_dir)
               for p in present]
    return VerifyReport(targets=verify_targets(targets, workers=workers, progress=progress))
