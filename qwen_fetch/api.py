"""The Python API: what ``qwen-fetch pull`` and ``verify`` do, for applications that check their model at start-up.

::

    import qwen_fetch

    model = qwen_fetch.pull("Qwen/Qwen3-VL-8B-Instruct", lock="qwen-fetch.lock", frozen=True)
    llm = load(model.path)          # the verified snapshot folder

    qwen_fetch.verify("Qwen/Qwen3-VL-8B-Instruct")   # re-hash offline; raises on any difference

Every function returns a frozen dataclass and raises the command line's errors:
:class:`~qwen_fetch.core.errors.QFError` subclasses whose ``exit_code`` is the CLI's
(``UsageError`` 2, ``IntegrityError`` 3, ``SourceError``/``NotFoundError`` 4),
with ``message``, ``hint`` and ``context``.  Nothing is printed unless asked
(``progress=True`` draws the CLI's progress bar on stderr).  The ``qwen-fetch``
commands ``pull`` and ``verify`` are built on the same functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qwen_fetch.core.errors import IntegrityError, Ref, UsageError
from qwen_fetch.core.lockfile import DEFAULT_LOCK_NAME

if TYPE_CHECKING:
    from qwen_fetch.core.progress import ProgressSink
    from qwen_fetch.core.verify import TargetReport
    from qwen_fetch.ops.pull import PullResult

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PulledModel:
    """A model pulled and verified: where it is and how it got there."""

    model_id: str
    revision: str  # the branch or tag the pin names (e.g. main; master on ModelScope)
    commit: str  # the pinned commit
    path: Path  # absolute: the snapshot folder in the HF cache, or the local_dir folder
    source: str  # the source (mirrors.yaml name) that resolved it
    files: tuple[str, ...]  # every pinned file's repository path, sorted
    downloaded_files: int  # fetched by this call (0 when everything was cached)
    cached_files: int  # already in place and re-verified
    bytes_downloaded: int
    seconds: float
    lock_written: bool  # this call added or moved the pin in the lockfile


@dataclass(frozen=True)
class VerifiedModel:
    """A snapshot or folder whose every file matched its pin."""

    model_id: str
    commit: str
    path: Path
    files_checked: int
    bytes_hashed: int


def check_pull_flags(*, update: bool, frozen: bool, cache_dir: PathLike | None, local_dir: PathLike | None) -> None:
    """Refuse contradictory requests before any work (no network, no disk)."""
    if update and frozen:
        raise UsageError("--update and --frozen contradict each other: --frozen never moves a pin",
                         hint="drop --frozen to move the pin, or --update to check against it")
    if local_dir is not None and cache_dir is not None:
        raise UsageError("--local-dir and --cache-dir exclude each other: --local-dir writes a plain folder, "
                         "not the Hugging Face cache",
                         hint="pass one of them (a --local-dir keeps its resume state in DIR/.cache/qwen-fetch)")


def run_pull(model_id: str, *, revision: str | None = None, source: str | None = None,
             config: PathLike | None = None, cache_dir: PathLike | None = None, local_dir: PathLike | None = None,
             lock: PathLike = DEFAULT_LOCK_NAME, include: Sequence[str] = (), exclude: Sequence[str] = (),
             update: bool = False, frozen: bool = False, connections: int | None = None, download: bool = True,
             progress: ProgressSink | None = None, reverify: bool = False, offline: bool = False) -> PullResult:
    """:func:`pull` with the full internal result (what the CLI prints and ``--json`` reports)."""
    check_pull_flags(update=update, frozen=frozen, cache_dir=cache_dir, local_dir=local_dir)
    from qwen_fetch.net.deadline import Deadlines
    from qwen_fetch.net.jobs import EngineOptions
    from qwen_fetch.ops.pull import Puller, PullOptions
    from qwen_fetch.sources.config import default_cache_dir, load_config
    from qwen_fetch.store.hfcache import check_repo_id

    check_repo_id(model_id)
    if connections is not None and connections < 1:
        raise UsageError("connections must be at least 1", hint="e.g. connections=16")
    cfg = load_config(Path(config) if config is not None else None)
    opts = PullOptions(model_id=model_id, revision=revision, source=source, include=tuple(include),
                       exclude=tuple(exclude), cache_dir=Path(cache_dir or default_cache_dir()).expanduser(),
                       local_dir=Path(local_dir).expanduser().absolute() if local_dir is not None else None,
                       lock_path=Path(lock), update=update, frozen=frozen, download=download,
                       reverify=reverify, offline=offline,
                       # QWEN_FETCH_TIMEOUT / QWEN_FETCH_MIN_RATE / QWEN_FETCH_RATE_WINDOW: see net/deadline.py
                       engine=EngineOptions.from_deadlines(Deadlines.from_env(), connections=connections))
    puller = Puller(cfg, opts, progress)
    try:
        return puller.run()
    finally:
        puller.close()


def pull(model_id: str, *, revision: str | None = None, source: str | None = None, config: PathLike | None = None,
         cache_dir: PathLike | None = None, local_dir: PathLike | None = None, lock: PathLike = DEFAULT_LOCK_NAME,
         include: Sequence[str] = (), exclude: Sequence[str] = (), update: bool = False, frozen: bool = False,
         connections: int | None = None, progress: bool = False, reverify: bool = False,
         offline: bool = False) -> PulledModel:
    """Download ``model_id``, pinned and verified, like ``qwen-fetch pull`` (without the smoke-load).

    Without a pin in ``lock`` the pull writes one; with a pin every file must match it.
    ``frozen=True`` (CI, start-up checks) never adds or moves a pin: a model missing from
    the lock raises :class:`IntegrityError`.  Files already in place are kept: a file whose
    verification stamp still matches is not read (``reverify=True`` re-hashes every one), so
    a warm call transfers nothing, and when all pinned files are there it makes no network
    request at all.  ``offline=True`` (or ``HF_HUB_OFFLINE=1`` / ``QWEN_FETCH_OFFLINE=1``)
    forbids the network: anything missing raises :class:`~qwen_fetch.net.offline.OfflineError`.  ``cache_dir`` defaults to the Hugging Face
    cache (``$HF_HUB_CACHE``...); ``local_dir`` writes a plain folder instead.

    Raises :class:`~qwen_fetch.core.errors.QFError` subclasses (``exit_code`` as the CLI's).
    """
    from qwen_fetch.cli.progress import make_progress

    sink = make_progress(f"pull {model_id}", json_mode=not progress)
    result = run_pull(model_id, revision=revision, source=source, config=config, cache_dir=cache_dir,
                      local_dir=local_dir, lock=lock, include=include, exclude=exclude, update=update,
                      frozen=frozen, connections=connections, progress=sink, reverify=reverify, offline=offline)
    return PulledModel(model_id=result.model_id, revision=result.revision, commit=result.commit,
                       path=Path(os.path.abspath(result.target)), source=result.source, files=tuple(f.path for f in result.files),
                       downloaded_files=result.downloaded_files,
                       cached_files=result.cached_files, bytes_downloaded=result.bytes_transferred(),
                       seconds=result.seconds, lock_written=result.lock_written)


def verify(model_id: str | None = None, *, path: PathLike | None = None, revision: str | None = None,
           lock: PathLike | Sequence[PathLike] = DEFAULT_LOCK_NAME, cache_dir: PathLike | None = None,
           workers: int | None = None, progress: bool = False) -> VerifiedModel:
    """Re-hash a model offline and compare it with its pin, like ``qwen-fetch verify``.

    ``model_id`` alone checks the cached snapshot of its current pin (``revision``: another
    pinned revision or commit); ``path`` checks a folder (a ``pull --local-dir`` download or
    a snapshot folder; ``model_id`` may then be left out when the folder or the lock tells).
    Raises :class:`IntegrityError` listing every missing, extra and mismatched file, and
    every snapshot link that does not point at its blob; ``reference`` ``not-cached`` when
    the pinned snapshot is not in the cache at all.
    """
    from qwen_fetch.cli.progress import make_progress
    from qwen_fetch.ops.verify_select import build_report, load_pins

    locks = [Path(lock)] if isinstance(lock, (str, os.PathLike)) else [Path(p) for p in lock]
    if model_id is None and path is None:
        raise UsageError("name a model_id or a path", hint="qwen_fetch.verify('Qwen/Qwen3-VL-8B-Instruct')")
    if path is None and revision is None:
        # The current pin only: the one a start-up check is about to load (the CLI checks every cached pin).
        pins = [p for mid, p in load_pins(locks, explicit=True) if mid == model_id]
        revision = pins[0].commit if pins else None
    sink = make_progress("verify", json_mode=not progress, count_files=False)
    report = build_report(None if path is not None else model_id, locks,
                          Path(cache_dir) if cache_dir is not None else None,
                          Path(path) if path is not None else None, model_id, revision, False, workers, sink)
    target = report.targets[0]
    if not report.ok:
        raise IntegrityError(f"{target.model}@{target.commit[:12]} does not match the lock ({target.location})",
                             context=problems(target), reference=Ref.VERIFY_FAILED,
                             hint=f"fetch the bad files again: qwen-fetch pull {target.model}")
    return VerifiedModel(model_id=target.model, commit=target.commit, path=Path(os.path.abspath(target.location)),
                         files_checked=target.files_checked, bytes_hashed=target.bytes_hashed)


def problems(t: TargetReport) -> list[str]:
    """One line per difference, sorted as ``qwen-fetch verify`` prints them."""
    out = [f"missing     {p}" for p in t.missing]
    out += [f"extra       {p}" for p in t.extra]
    out += [f"mismatched  {m.path} ({', '.join(m.fields) or 'unreadable'}): "
            + (f"expected root {m.expected.root}, actual {m.actual.root}" if m.expected.root is not None
               else f"expected sha256 {m.expected.sha256}, actual {m.actual.sha256}") for m in t.mismatched]
    out += [f"bad link    {b.path} ({b.problem})" for b in t.bad_links]
    return out
