"""``pull`` and ``lock``: resolve, plan against the pins, fetch, verify, lay out.

The flow is the same for both commands; ``lock`` stops after hashing.  The
decisions are a pure plan (:mod:`qwen_fetch.core.pullplan`); this module
resolves what the plan needs and hands it to the executors.

1. A pull whose pinned files are all in place and verified is answered from the
   cache, before any source is built (:meth:`Puller.from_cache`).
2. Resolve the revision on the sources (``--source`` or all, by priority) and
   list files.  The first source that answers is the *primary*; the others
   only provide fallback locations for the same content, and are contacted
   one by one, only when a file needs them (:mod:`qwen_fetch.sources.chain`).
3. Plan: with a pin, the pinned commit is used and every file must be in the
   allowlist with a matching size/sha256 (all-or-nothing, exit 3).  Without
   one, plain git files are fetched and hashed (their git blob id is checked)
   so that every file has a sha256 before anything enters the cache
   (:mod:`qwen_fetch.ops.pull_plain`, in the background).
4. Files already in the cache are re-hashed; the rest go to the engine, which
   verifies each byte before the atomic rename into ``blobs/``
   (:mod:`qwen_fetch.ops.pull_fetch`).
5. Only when every file is verified are the snapshot links and the ref written
   (:mod:`qwen_fetch.ops.pull_place`), and then the pin.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from qwen_fetch.core.errors import IntegrityError, QFError, Ref, SourceError, UsageError
from qwen_fetch.core.lockfile import Lock
from qwen_fetch.core.manifest import Pin, PinnedFile, RepoListing
from qwen_fetch.core.progress import NullProgress, ProgressSink
from qwen_fetch.core.pullplan import (
    PullPlan,
    PullRequest,
    check_pinned_commit,
    choose_pin,
    is_optional,
    new_pin,
    plan_fresh,
    plan_pinned,
    with_roots,
)
from qwen_fetch.core.revisions import is_commit_id, revision_problem
from qwen_fetch.net.jobs import EngineOptions, FetchOutcome
from qwen_fetch.net.location import FileLocation
from qwen_fetch.net.offline import OfflineError, offline_reason
from qwen_fetch.ops.pull_fetch import materialise
from qwen_fetch.ops.pull_place import InPlace
from qwen_fetch.ops.pull_plain import PlainFetch
from qwen_fetch.sources.base import RevisionContext, Source
from qwen_fetch.sources.chain import LazyListings
from qwen_fetch.sources.config import Config, SourceConfig
from qwen_fetch.sources.registry import default_revision, kind_of, make_source
from qwen_fetch.store.hfcache import RepoCache, check_repo_id
from qwen_fetch.store.lockio import read_lock, write_lock
from qwen_fetch.store.placement import Layout
from qwen_fetch.store.warm import already_linked

if TYPE_CHECKING:  # httpx: a pull served from the cache never imports it
    from qwen_fetch.net.pools import Pools


@dataclass(frozen=True)
class PullOptions:
    model_id: str
    revision: str | None = None
    source: str | None = None  # None/"auto": all sources by priority
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    cache_dir: Path = Path(".")
    local_dir: Path | None = None
    lock_path: Path = Path("qwen-fetch.lock")
    update: bool = False
    frozen: bool = False
    download: bool = True  # False for `qwen-fetch lock`
    write_lock: bool = True
    reverify: bool = False  # re-hash cached files even where a verification stamp vouches for them
    offline: bool = False  # forbid the network (as do HF_HUB_OFFLINE / QWEN_FETCH_OFFLINE)
    engine: EngineOptions = field(default_factory=EngineOptions)

    @property
    def request(self) -> PullRequest:
        """The options the plan depends on."""
        return PullRequest(model_id=self.model_id, revision=self.revision, include=self.include,
                           exclude=self.exclude, update=self.update, frozen=self.frozen)


@dataclass(frozen=True)
class PullResult:
    """What a pull did (the CLI shapes it for people and for ``--json``: :mod:`qwen_fetch.cli.pull_cmd`)."""

    model_id: str
    revision: str
    commit: str
    source: str
    target: Path  # snapshot dir, or the --local-dir folder
    files: tuple[PinnedFile, ...]
    outcomes: tuple[FetchOutcome, ...]
    cached_files: int
    seconds: float
    lock_written: bool
    source_failures: tuple[tuple[str, str], ...]
    skipped_extras: tuple[str, ...] = ()
    used_cache: bool = False  # answered from the cache alone: no network request at all
    stamp_trusted_files: int = 0  # cached files a verification stamp vouched for (not read)
    rehashed_files: int = 0  # cached files hashed by this run

    def bytes_transferred(self) -> int:
        return sum(o.bytes_transferred for o in self.outcomes)

    @property
    def downloaded_files(self) -> int:
        return sum(1 for o in self.outcomes if not o.reused)


# ---------------------------------------------------------------------------
# the flow


class Puller:
    def __init__(self, config: Config, opts: PullOptions, progress: ProgressSink | None = None) -> None:
        check_repo_id(opts.model_id)
        check_revision_option(opts.revision)
        self.config = config
        self.opts = opts
        self.progress = progress or NullProgress()
        self.sources: dict[str, Source] = {}
        self._sources_lock = threading.Lock()  # fallbacks are opened from the engine's and the plain files' threads
        self._pools: Pools | None = None  # the pull's connections, opened with the first source
        self.failures: list[tuple[str, str]] = []
        self.in_place = InPlace(self.progress, reverify=opts.reverify)
        self._not_cached: list[str] = []  # pinned files the cache lacked (named if no source answers)

    def close(self) -> None:
        for s in self.sources.values():
            s.close()
        if self._pools is not None:
            self._pools.close()

    def _http(self) -> Pools:
        """The pull's connections: the sources' API calls, the engine and the small files share them."""
        with self._sources_lock:
            if self._pools is None:
                from qwen_fetch.net.pools import Pools

                self._pools = Pools.for_engine(self.opts.engine)
            return self._pools

    @property
    def request(self) -> PullRequest:
        return self.opts.request

    # -- sources ------------------------------------------------------------
    def candidate_configs(self) -> list[SourceConfig]:
        if self.opts.source and self.opts.source != "auto":
            return [self.config.get(self.opts.source)]
        return list(self.config.ordered())

    def _source(self, sc: SourceConfig) -> Source:
        http = self._http()
        with self._sources_lock:
            if sc.name not in self.sources:
                self.sources[sc.name] = make_source(sc, http=http, deadlines=self.opts.engine.deadlines)
            return self.sources[sc.name]

    def _locate(self, listing: RepoListing, path: str) -> FileLocation:
        """Where ``listing``'s source serves ``path`` at the listed commit."""
        return self._source(self.config.get(listing.source)).locate(self.opts.model_id, listing.commit, path)

    def _revision_for(self, sc: SourceConfig, pin: Pin | None, primary: RepoListing | None) -> str:
        """The revision to ask ``sc`` for: its kind decides (see ``SourceKind.revision_for``)."""
        ctx = RevisionContext.within(self.config, pin=pin, primary=primary, requested=self.opts.revision)
        return kind_of(sc).revision_for(sc, ctx)

    def _optional_of(self, source: str) -> tuple[str, ...]:
        try:
            return self.config.get(source).optional_files
        except QFError:
            return ()

    def _resolve_one(self, sc: SourceConfig, revision: str) -> RepoListing:
        listing = self._source(sc).resolve(self.opts.model_id, revision)
        return listing

    def resolve_all(self, pin: Pin | None) -> tuple[RepoListing, LazyListings]:
        """The primary listing (the first source, by priority, that answers), and every listing lazily:
        the primary first, then each further source resolved only when a file needs it."""
        configs = self.candidate_configs()
        for sc in configs:
            sc.token()  # a token that cannot be sent is a configuration error (exit 2), before any request
        primary: RepoListing | None = None
        rest: list[SourceConfig] = []
        errors: list[QFError] = []
        for i, sc in enumerate(configs):
            try:
                primary = self._resolve_one(sc, self._revision_for(sc, pin, None))
            except QFError as exc:
                errors.append(exc)
                self.failures.append((sc.name, exc.message))
                self.progress.note(f"{sc.name}: {exc.message}")
                continue
            if pin is not None:
                check_pinned_commit(pin, sc.name, primary.commit, self.opts.model_id, kind_of(sc).commit_mismatch_hint)
            rest = configs[i + 1:]
            break
        if primary is None:
            if len(errors) == 1:
                raise errors[0]
            reasons = [f"{n}: {r}" for n, r in self.failures] or ["no source configured"]
            if any(isinstance(e, IntegrityError) for e in errors):
                raise IntegrityError(f"no source served a trustworthy listing of {self.opts.model_id}",
                                     context=reasons, hint="a mirror is broken or hostile; see each reason",
                                     reference=Ref.NO_TRUSTED_LISTING)
            raise SourceError(f"no source could resolve {self.opts.model_id}", context=reasons,
                              hint="check the network/proxy, the model id and --revision; `qwen-fetch mirrors --probe` tests each source",
                              reference=Ref.ALL_SOURCES_FAILED)
        first = primary

        def resolve(sc: SourceConfig) -> RepoListing:
            return self._resolve_one(sc, self._revision_for(sc, pin, first))

        def failed(sc: SourceConfig, exc: QFError) -> None:
            self.failures.append((sc.name, exc.message))
            self.progress.note(f"{sc.name}: {exc.message}")

        return primary, LazyListings(primary, rest, resolve, failed)

    # -- main -----------------------------------------------------------------
    def run(self) -> PullResult:
        t0 = time.monotonic()
        o = self.opts
        lock = read_lock(o.lock_path)
        pin = choose_pin(lock, self.request)
        self._check_ref_free(pin.revision if pin is not None else o.revision)  # before any request
        if pin is not None and o.download:
            cached = self.from_cache(pin, t0)  # before any source is built: no request when nothing is missing
            if cached is not None:
                return cached
        offline = offline_reason(o.offline)
        if offline is not None:
            raise self._offline_error(offline)
        try:
            primary, listings = self.resolve_all(pin)
        except SourceError as exc:
            if self._not_cached:  # what made the network necessary
                exc.context += [f"not in the cache: {p}" for p in self._not_cached[:20]]
            raise
        plan = self.plan(pin, primary, listings, lock)
        # Started now, finished while the engine fetches the files whose sha256 is listed (see pull_plain).
        plain = (PlainFetch(plan, listings, self._locate, self._http(), o.engine, self.progress,
                            Layout(o.cache_dir, o.model_id, o.local_dir) if o.download else None)
                 if pin is None else None)
        outcomes: list[FetchOutcome] = []
        cached_files = 0
        files = plan.known
        target: Path
        if o.engine.roots and (pin is not None or not o.write_lock):
            # Chunk roots are recorded only in a pin this pull writes: otherwise they would cost a core for nothing.
            o = self.opts = replace(o, engine=replace(o.engine, roots=False))
        try:
            if o.download:
                target, outcomes, cached_files, files = materialise(
                    Layout(o.cache_dir, o.model_id, o.local_dir), plan.known, plan.commit, plan.revision, listings,
                    plain, in_place=self.in_place, locate=self._locate, failures=self.failures, pools=self._http(),
                    options=o.engine, progress=self.progress)
            else:
                if plain is not None:
                    files = plain.files()
                target = o.local_dir or RepoCache(o.cache_dir, o.model_id).snapshot_dir(plan.commit)
        finally:
            if plain is not None:
                plain.close()

        lock_written = False
        if o.write_lock and pin is None:
            files = with_roots(files, {x.sha256: x.root for x in outcomes if x.root is not None}, lock.pins(o.model_id))
            pinned = new_pin(plan, files, listings.contacted(), lock.current(o.model_id), self.request)
            lock = read_lock(o.lock_path)  # re-read: another process may have written meanwhile
            write_lock(o.lock_path, lock.with_pin(o.model_id, pinned))
            lock_written = True
        return PullResult(model_id=o.model_id, revision=plan.revision, commit=plan.commit, source=primary.source,
                          target=target, files=files, outcomes=tuple(outcomes), cached_files=cached_files,
                          seconds=time.monotonic() - t0, lock_written=lock_written,
                          source_failures=tuple(self.failures), skipped_extras=plan.skipped,
                          stamp_trusted_files=self.in_place.trusted, rehashed_files=self.in_place.rehashed)

    def plan(self, pin: Pin | None, primary: RepoListing, listings: LazyListings, lock: Lock) -> PullPlan:
        """The plan for ``primary`` under ``pin`` (or afresh), checked before any file byte moves."""
        if pin is not None:
            # Files only the pin's own hub publishes (ModelScope's configuration.json): when no
            # reachable source has them, they are skipped and reported, not an integrity failure.
            return plan_pinned(self.request, pin, primary, listings,
                               primary_optional=self._optional_of(primary.source) if primary.source != pin.source
                               else (),
                               pin_optional=self._optional_of(pin.source))
        revision = self.opts.revision or default_revision(self.config.get(primary.source))
        self._check_ref_free(revision)
        # --update: files an earlier pin hashed (same git blob id) are not fetched to be hashed again.
        return plan_fresh(self.request, primary, revision, lock.pins(self.opts.model_id))

    # -- the cache alone ------------------------------------------------------
    def from_cache(self, pin: Pin, t0: float) -> PullResult | None:
        """The result when every pinned file is in place and verified (stamps trusted), else ``None``.

        Offline, a missing or damaged file is an :class:`OfflineError` listing them all.
        """
        o = self.opts
        offline = offline_reason(o.offline)
        wanted = self.request.wanted(pin)
        layout = Layout(o.cache_dir, o.model_id, o.local_dir)
        # Nothing in the cache changes here: a damaged file is replaced only once a source's listing
        # has been checked against the pin (a hand-edited pin must not cost a good blob).
        check = self.in_place.check(layout, wanted, quarantine_bad=False)
        gone = sorted({f.path for f in check.bad + check.missing})
        skipped: list[str] = []
        if offline is not None:
            # What only the pin's own hub publishes was skipped by the pull that filled the cache.
            optional = self._optional_of(pin.source)
            skipped = [p for p in gone if is_optional(p, optional)]
            gone = [p for p in gone if p not in skipped]
            if gone:
                damaged = {f.path for f in check.bad}
                raise OfflineError(
                    f"offline ({offline}): {len(gone)} pinned file(s) of {o.model_id} are not in the cache",
                    context=[f"{p}: {'does not match its pin' if p in damaged else 'missing'}" for p in gone[:50]]
                    + ([f"... and {len(gone) - 50} more"] if len(gone) > 50 else []),
                    hint=f"with network access run `qwen-fetch pull {o.model_id} --frozen`, then retry offline",
                    reference=Ref.OFFLINE_MISSING)
        elif gone:
            self._not_cached = gone
            return None
        files = tuple(f for f in wanted if f.path not in skipped)
        if already_linked(layout, files, pin.commit, pin.revision):
            layout.clear_stale(files)  # `finish` does this on the other branch
            target = o.local_dir or layout.repo.snapshot_dir(pin.commit)
        else:
            target = layout.finish(files, pin.commit, pin.revision)
        return PullResult(model_id=o.model_id, revision=pin.revision, commit=pin.commit, source="cache",
                          target=target, files=files, outcomes=(), cached_files=len(files),
                          seconds=time.monotonic() - t0, lock_written=False, source_failures=(),
                          skipped_extras=tuple(skipped), used_cache=True,
                          stamp_trusted_files=self.in_place.trusted, rehashed_files=self.in_place.rehashed)

    def _offline_error(self, reason: str) -> OfflineError:
        o = self.opts
        if not o.download:
            what = f"`qwen-fetch lock` resolves {o.model_id} on a source"
        elif o.update:
            what = f"--update resolves {o.model_id} on a source"
        else:
            what = f"{o.model_id} has no pin in {o.lock_path}, so it must be resolved on a source"
        return OfflineError(f"offline ({reason}): {what}", reference=Ref.OFFLINE,
                            hint=f"with network access run `qwen-fetch lock {o.model_id}` and commit the lockfile; "
                                 "offline, `pull` serves pinned models from the cache")

    def _check_ref_free(self, revision: str | None) -> None:
        """Refuse, before anything is fetched, a revision whose ref the cache cannot hold
        (``refs/a`` is a file and ``a/b`` is asked for, or the reverse)."""
        o = self.opts
        if revision is None or not o.download or o.local_dir is not None or is_commit_id(revision):
            return
        conflict = RepoCache(o.cache_dir, o.model_id).ref_conflict(revision)
        if conflict is not None:
            raise conflict


def check_revision_option(revision: str | None) -> None:
    """``--revision``: a name by git's ref-name rules, checked before any request (it names ``refs/<revision>``)."""
    problem = revision_problem(revision) if revision is not None else None
    if problem is not None:
        raise UsageError(f"--revision {str(revision)[:80]!r} is not a branch, tag or commit: {problem}",
                         hint="pass a name git accepts (`git check-ref-format --branch NAME`), "
                              "e.g. main, v1.0, refs/pr/1 or a 40-hex commit")
