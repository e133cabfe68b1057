"""``pull`` and ``lock``: resolve, check against the pins, fetch, verify, lay out.

The flow is the same for both commands; ``lock`` stops after hashing.

1. Resolve the revision on the sources (``--source`` or all, by priority) and
   list files.  The first source that answers is the *primary*; the others
   only provide fallback locations for the same content, and are contacted
   one by one, only when a file needs them (``sourcechain.py``).
2. With a pin: the pinned commit is used and every file must be in the
   allowlist with a matching size/sha256 (all-or-nothing, exit 3).  Without
   one: plain git files are fetched in memory and hashed (their git blob id is
   checked) so that every file has a sha256 before anything enters the cache.
3. Files already in the cache are re-hashed; the rest go to the engine, which
   verifies each byte before the atomic rename into ``blobs/``.
4. Only when every file is verified are the snapshot links and the ref written.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from qwen_fetch.core.errors import IntegrityError, QFError, Ref, SourceError, UsageError
from qwen_fetch.core.manifest import Pin, PinnedFile, RemoteFile, RepoListing, SourceRevision
from qwen_fetch.core.pins import check_against_pin, content_matches, known_plain_contents, matches, pick_pin
from qwen_fetch.core.progress import NullProgress, ProgressSink
from qwen_fetch.core.revisions import is_commit_id, revision_problem
from qwen_fetch.core.units import format_bytes
from qwen_fetch.net.jobs import EngineOptions, FetchJob, FetchOutcome
from qwen_fetch.net.offline import OfflineError, offline_reason
from qwen_fetch.net.plainfile import FetchedPlain, PlainSink
from qwen_fetch.sources.base import FileLocation, RevisionContext, Source
from qwen_fetch.sources.chain import LazyListings, first_and_more
from qwen_fetch.sources.config import Config, SourceConfig
from qwen_fetch.sources.registry import default_revision, kind_of, make_source
from qwen_fetch.store.hfcache import RepoCache, check_repo_id
from qwen_fetch.store.lockio import read_lock, write_lock
from qwen_fetch.store.placement import Layout, quarantine
from qwen_fetch.store.warm import CacheCheck, already_linked, check_in_place, stamp_promoted

MAX_PLAIN_FILE = 64 * 1024 * 1024  # git (non-LFS) files are small; refuse a huge one


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


@dataclass(frozen=True)
class PullResult:
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

    def to_dict(self) -> dict[str, object]:
        served: dict[str, str] = {o.path: o.source for o in self.outcomes if o.source}
        return {
            "ok": True,
            "model": self.model_id,
            "revision": self.revision,
            "commit": self.commit,
            "source": self.source,
            "target": str(self.target),
            "files": len(self.files),
            "downloaded_files": sum(1 for o in self.outcomes if not o.reused),
            "cached_files": self.cached_files,
            "bytes": self.bytes_transferred(),
            "total_size": sum(f.size for f in self.files),
            "seconds": round(self.seconds, 3),
            "retries": sum(o.retries for o in self.outcomes),
            "served_by": dict(sorted(served.items())),
            "fallbacks": sorted({f"{p}: {s} ({r})" for o in self.outcomes for s, r in o.failed_sources
                                 for p in [o.path]}),
            "source_failures": {s: r for s, r in self.source_failures},
            "skipped_extras": list(self.skipped_extras),
            "lock_written": self.lock_written,
            "used_cache": self.used_cache,
            "stamp_trusted_files": self.stamp_trusted_files,
            "rehashed_files": self.rehashed_files,
        }


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
        self.failures: list[tuple[str, str]] = []
        self._verified: set[Path] = set()  # destinations this run found (or made) verified
        self._damaged: set[Path] = set()  # destinations found not to hold their pinned bytes, still in place
        self._trusted = 0
        self._rehashed = 0
        self._not_cached: list[str] = []  # pinned files the cache lacked (named if no source answers)

    def close(self) -> None:
        for s in self.sources.values():
            s.close()

    # -- sources ------------------------------------------------------------
    def candidate_configs(self) -> list[SourceConfig]:
        if self.opts.source and self.opts.source != "auto":
            return [self.config.get(self.opts.source)]
        return list(self.config.ordered())

    def _source(self, sc: SourceConfig) -> Source:
        with self._sources_lock:
            if sc.name not in self.sources:
                self.sources[sc.name] = make_source(sc, timeout=self.opts.engine.request_timeout,
                                                    connections=self.opts.engine.connections,
                                                    deadlines=self.opts.engine.deadlines)
            return self.sources[sc.name]

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
            if pin is not None and primary.commit != pin.commit and sc.name == pin.source:
                raise IntegrityError(f"source {sc.name!r} resolved {self.opts.model_id} to commit {primary.commit}, "
                                     f"but the lock pins {pin.commit}",
                                     hint=kind_of(sc).commit_mismatch_hint,
                                     reference=Ref.COMMIT_MISMATCH)
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

    # -- hashing plain files (no sha256 in the hub metadata) ------------------
    def fetch_plain(self, listings: Iterable[RepoListing], rf: RemoteFile, folder: Path | None
                    ) -> tuple[PlainSink, str]:
        """Download a small git file from the first source that serves matching bytes: an open sink (an
        unnamed file in ``folder``, hashed on the way, that the caller closes) and the source's name.

        Each source gets the engine's retry policy; the next source is contacted only
        when this one failed.  Wrong bytes anywhere make it an integrity error (exit 3);
        sources that could not serve at all (HTTP errors, timeouts) a source error (exit 4).
        """
        from qwen_fetch.net.smallget import SmallGetError, get_small

        errors: list[str] = []
        wrong_bytes = False
        sink = PlainSink(folder, rf.size)
        try:
            for lst in listings:
                other = lst.by_path().get(rf.path)
                if other is None or other.size != rf.size:
                    continue
                loc = self._source(self.config.get(lst.source)).locate(self.opts.model_id, lst.commit, rf.path)
                try:
                    get_small(loc, rf.size, self.opts.engine, sink, note=self.progress.note)
                except SmallGetError as exc:
                    errors.append(f"{lst.source}: {exc.reason}")
                    wrong_bytes = wrong_bytes or exc.integrity
                    continue
                problem = _plain_mismatch(rf, sink)
                if problem is not None:
                    errors.append(f"{lst.source}: {problem}")
                    wrong_bytes = True
                    continue
                self.progress.advance(sink.written)
                return sink, lst.source
        except BaseException:
            sink.close()
            raise
        sink.close()
        if wrong_bytes:
            raise IntegrityError(f"{rf.path}: no source served bytes matching its listing", context=errors,
                                 hint="the mirror is broken or hostile; try another --source")
        raise SourceError(f"{rf.path} could not be fetched from any source", context=errors, reference=Ref.FETCH_FAILED,
                          hint="the sources may be down or overloaded: rerun later, or add another source in "
                               "mirrors.yaml / pick one with --source")

    # -- main -----------------------------------------------------------------
    def run(self) -> PullResult:
        t0 = time.monotonic()
        o = self.opts
        lock = read_lock(o.lock_path)
        pin = pick_pin(lock, o.model_id, o.revision, o.update, o.frozen)
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
        src_cfg = self.config.get(primary.source)
        skipped: list[str] = []
        plain: PlainFetch | None = None
        files: tuple[PinnedFile, ...]

        if pin is not None:
            wanted = [f for f in pin.files if matches(f.path, o.include, o.exclude)]
            optional = src_cfg.optional_files if primary.source != pin.source else ()
            problems, skipped = check_against_pin(primary, pin, wanted, optional)
            if problems:
                raise IntegrityError(f"source {primary.source!r} does not match the lock for {o.model_id}",
                                     context=problems[:50] + ([f"... and {len(problems) - 50} more"] if len(problems) > 50 else []),
                                     hint="nothing was downloaded; if the change is intended run with --update and review the lockfile diff",
                                     reference=Ref.NOT_ALLOWLISTED)
            # Files only the pin's own hub publishes (ModelScope's configuration.json): when no
            # reachable source has them, they are skipped and reported, not an integrity failure.
            pin_optional = self._optional_of(pin.source)
            unavailable = [f for f in wanted if any(fnmatch.fnmatchcase(f.path, g) for g in pin_optional)
                           and not any((rf := lst.by_path().get(f.path)) is not None and content_matches(rf, f)
                                       for lst in listings)]
            skipped = sorted(set(skipped) | {f.path for f in unavailable})
            files = tuple(f for f in wanted if f not in unavailable)
            revision, commit = pin.revision, pin.commit
        else:
            revision = o.revision or default_revision(src_cfg)
            self._check_ref_free(revision)
            commit = primary.commit
            chosen = [rf for rf in primary.files if matches(rf.path, o.include, o.exclude)]
            chosen = known_plain_contents(chosen, lock.pins(o.model_id))  # --update: unchanged files are not re-fetched
            if not chosen:
                raise UsageError(f"no file of {o.model_id}@{revision} matches --include/--exclude",
                                 hint="check the globs (they match repository paths, e.g. '*.json')")
            need_bytes = [rf for rf in chosen if rf.sha256 is None or (not rf.lfs and rf.git_oid is None)]
            too_big = [rf.path for rf in need_bytes if rf.size > MAX_PLAIN_FILE]
            if too_big:
                raise IntegrityError(f"{too_big[0]}: a {MAX_PLAIN_FILE >> 20} MiB+ file without a sha256 in the hub metadata",
                                     hint="the mirror is broken or hostile; try another --source")
            # Started now, finished while the engine fetches the LFS files (see PlainFetch).
            plain = PlainFetch(self, listings, chosen, need_bytes,
                               Layout(o.cache_dir, o.model_id, o.local_dir) if o.download else None)
            files = plain.known

        outcomes: list[FetchOutcome] = []
        cached = 0
        target: Path
        if o.engine.roots and (pin is not None or not o.write_lock):
            # Chunk roots are recorded only in a pin this pull writes: otherwise they would cost a core for nothing.
            o = self.opts = replace(o, engine=replace(o.engine, roots=False))
        try:
            if o.download:
                target, outcomes, cached, files = self.materialise(files, commit, revision, listings, plain)
            else:
                if plain is not None:
                    files = plain.files()
                target = o.local_dir or RepoCache(o.cache_dir, o.model_id).snapshot_dir(commit)
        finally:
            if plain is not None:
                plain.close()

        lock_written = False
        if o.write_lock and (pin is None):
            files = with_roots(files, outcomes, lock.pins(o.model_id))
            new_pin = Pin(revision=revision, commit=commit, source=primary.source, files=files,
                          sources=tuple(sorted((lst.source, SourceRevision(lst.revision, lst.commit))
                                               for lst in listings.contacted() if lst.commit != commit)))
            if o.include or o.exclude:
                old = lock.current(o.model_id)
                if old is not None and old.commit == commit:
                    merged = {f.path: f for f in old.files}
                    merged.update({f.path: f for f in files})
                    new_pin = replace(new_pin, files=tuple(sorted(merged.values(), key=lambda f: f.path)))
            lock = read_lock(o.lock_path)  # re-read: another process may have written meanwhile
            write_lock(o.lock_path, lock.with_pin(o.model_id, new_pin))
            lock_written = True
        return PullResult(model_id=o.model_id, revision=revision, commit=commit, source=primary.source,
                          target=target, files=files, outcomes=tuple(outcomes), cached_files=cached,
                          seconds=time.monotonic() - t0, lock_written=lock_written,
                          source_failures=tuple(self.failures), skipped_extras=tuple(skipped),
                          stamp_trusted_files=self._trusted, rehashed_files=self._rehashed)

    # -- the cache alone ------------------------------------------------------
    def from_cache(self, pin: Pin, t0: float) -> PullResult | None:
        """The result when every pinned file is in place and verified (stamps trusted), else ``None``.

        Offline, a missing or damaged file is an :class:`OfflineError` listing them all.
        """
        o = self.opts
        offline = offline_reason(o.offline)
        wanted = [f for f in pin.files if matches(f.path, o.include, o.exclude)]
        layout = Layout(o.cache_dir, o.model_id, o.local_dir)
        # Nothing in the cache changes here: a damaged file is replaced only once a source's listing
        # has been checked against the pin (a hand-edited pin must not cost a good blob).
        check = self._check_in_place(layout, wanted, quarantine_bad=False)
        gone = sorted({f.path for f in check.bad + check.missing})
        skipped: list[str] = []
        if offline is not None:
            # What only the pin's own hub publishes was skipped by the pull that filled the cache.
            optional = self._optional_of(pin.source)
            skipped = [p for p in gone if any(fnmatch.fnmatchcase(p, g) for g in optional)]
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
                          skipped_extras=tuple(skipped), used_cache=True, stamp_trusted_files=self._trusted,
                          rehashed_files=self._rehashed)

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

    def _check_in_place(self, layout: Layout, files: Sequence[PinnedFile], *, quarantine_bad: bool = True
                        ) -> CacheCheck:
        """Which files are in place and verified; each destination is checked (or hashed) once per run."""
        todo = [f for f in files if layout.dest(f) not in self._verified and layout.dest(f) not in self._damaged]
        check = check_in_place(layout, todo, rehash=self.opts.reverify)
        self._trusted += len(check.trusted)
        self._rehashed += len(check.rehashed)
        self._verified.update(layout.dest(f) for f in check.trusted + check.rehashed)
        self._damaged.update(layout.dest(f) for f in check.bad)
        bad = tuple(f for f in files if layout.dest(f) in self._damaged)
        if quarantine_bad:
            for f in bad:
                self.progress.note(f"{f.path}: cached copy does not match its pin; fetching it again")
                quarantine(layout.dest(f))
            self._damaged.difference_update(layout.dest(f) for f in bad)
        return replace(check, bad=bad)

    def _check_ref_free(self, revision: str | None) -> None:
        """Refuse, before anything is fetched, a revision whose ref the cache cannot hold
        (``refs/a`` is a file and ``a/b`` is asked for, or the reverse)."""
        o = self.opts
        if revision is None or not o.download or o.local_dir is not None or is_commit_id(revision):
            return
        conflict = RepoCache(o.cache_dir, o.model_id).ref_conflict(revision)
        if conflict is not None:
            raise conflict

    # -- laying out files ------------------------------------------------------
    def _locations(self, pf: PinnedFile, listings: Iterable[RepoListing]
                   ) -> tuple[FileLocation | None, Callable[[], FileLocation | None]]:
        """The first source listing ``pf``'s content, and a callable for the next (contacted only if called)."""
        def location(lst: RepoListing) -> FileLocation | None:
            rf = lst.by_path().get(pf.path)
            if rf is None or not content_matches(rf, pf):
                return None
            return self._source(self.config.get(lst.source)).locate(self.opts.model_id, lst.commit, pf.path)

        return first_and_more(iter(listings), location)

    def materialise(self, known: Sequence[PinnedFile], commit: str, revision: str,
                    listings: Iterable[RepoListing], plain: PlainFetch | None
                    ) -> tuple[Path, list[FetchOutcome], int, tuple[PinnedFile, ...]]:
        """Get every file into place, verified; expose the snapshot last.

        ``known`` are the files whose sha256 is known (the engine fetches them);
        ``plain``, on a fresh pull, is still fetching the small git files into
        memory — they are written once it finishes.  Returns the target, the
        outcomes, how many files were already cached, and every file (sorted).
        """
        from qwen_fetch.net.engine import FetchCancelled, fetch_all

        o = self.opts
        layout = Layout(o.cache_dir, o.model_id, o.local_dir)
        layout.ensure()
        good = self._reuse_verified(layout, known)
        # Content already in place at one path is copied to the others by ``layout.finish``; content at
        # two paths is fetched once (two jobs would share one partial file).
        todo = [f for f in known if f.sha256 not in good]
        jobs: list[FetchJob] = []
        seen: set[str] = set()
        missing_loc: list[str] = []
        for f in todo:
            if f.sha256 in seen:
                continue
            seen.add(f.sha256)
            layout.ensure_parent(f)
            first, more = self._locations(f, listings)
            if first is None:
                missing_loc.append(f.path)
                continue
            jobs.append(FetchJob(path=f.path, size=f.size, sha256=f.sha256, dest=layout.dest(f),
                                 partial=layout.partial(f), lock=layout.lock(f), locations=(first,), more=more))
        if missing_loc:
            raise IntegrityError(f"no source lists pinned file(s) with matching content: {', '.join(sorted(missing_loc)[:5])}",
                                 context=[f"{n}: {r}" for n, r in self.failures],
                                 hint="the sources changed since the lock was written; check --source or update the pin")
        _check_space(layout, plain.bytes if plain is not None else 0, jobs)
        cancel = threading.Event()
        if plain is not None:
            plain.on_failure(cancel.set)  # a plain file no source serves: stop the engine, report that
        self.progress.begin(sum(j.size for j in jobs) + (plain.bytes if plain is not None else 0),
                            len(jobs) + (plain.count if plain is not None else 0))
        try:
            try:
                outcomes = fetch_all(jobs, o.engine, self.progress, cancel=cancel) if jobs else []
            except FetchCancelled:
                if plain is not None and plain.failed:
                    plain.files()  # raises the plain file's own error
                raise
            files: tuple[PinnedFile, ...] = tuple(known)
            written: list[FetchOutcome] = []
            reused = 0
            if plain is not None:
                files = plain.files()
                written, reused = self._write_plain(layout, plain)
        finally:
            self.progress.end()
        by_path = {f.path: f for f in known}
        stamp_promoted(layout, [(by_path[x.path], x.promoted) for x in outcomes
                                if x.promoted is not None and x.path in by_path])
        # Every byte is verified: now (and only now) expose the snapshot.
        target = layout.finish(files, commit, revision)
        return target, written + list(outcomes), len(known) - len(todo) + reused, files

    def _reuse_verified(self, layout: Layout, files: Sequence[PinnedFile]) -> set[str]:
        """sha256s of the files already in place and intact: vouched for by a stamp, or re-hashed
        (never trust bytes we did not verify); a damaged copy is removed and fetched again."""
        self._check_in_place(layout, files)
        return {f.sha256 for f in files if layout.dest(f) in self._verified}

    def _write_plain(self, layout: Layout, plain: PlainFetch) -> tuple[list[FetchOutcome], int]:
        """Outcomes of the plain files (each put in place, verified, as its fetch ended) and how many were
        cached already."""
        mine = plain.fetched_files()
        written: list[FetchOutcome] = []
        for f in mine:
            got = plain.results[f.path]
            if got.written:
                written.append(FetchOutcome(path=f.path, sha256=f.sha256, source=got.source,
                                            bytes_transferred=f.size, resumed_bytes=0, retries=0, reused=False))
            self.progress.file_done(str(f.path), "")
        return written, len(mine) - len(written)  # the rest was cached already (or shares a written blob)


class PlainFetch:
    """The small git files of a fresh pull, fetched in the background.

    The hub lists no sha256 for them, so their bytes are needed before they can
    be pinned; fetching them while the engine already moves the LFS shards (whose
    sha256 is listed) keeps a slow first request — a 7 MB tokenizer.json behind
    a 20 MB/s-per-connection CDN — from delaying everything else.  Each streams to
    disk (:mod:`qwen_fetch.net.plainfile`) and, once its bytes match the listing, is
    put in place under its blob's lock (``layout``; ``None`` for ``lock``, which
    only hashes), so memory never holds a whole file.
    """

    def __init__(self, puller: Puller, listings: Iterable[RepoListing], chosen: Sequence[RemoteFile],
                 need_bytes: Sequence[RemoteFile], layout: Layout | None) -> None:
        self._chosen = tuple(chosen)
        self._need = {rf.path for rf in need_bytes}
        self.bytes = sum(rf.size for rf in need_bytes)
        self.count = len(need_bytes)
        self.known = tuple(sorted((PinnedFile(path=rf.path, size=rf.size, sha256=rf.sha256, lfs=rf.lfs,
                                              git_oid=rf.git_oid)
                                   for rf in chosen if rf.path not in self._need and rf.sha256 is not None),
                                  key=lambda f: f.path))
        self.results: dict[str, FetchedPlain] = {}
        self._files: tuple[PinnedFile, ...] | None = None
        self._puller, self._listings, self._layout = puller, listings, layout
        if layout is not None:
            layout.ensure()  # the sinks live in the folder their blobs go to
        self._ex = ThreadPoolExecutor(max_workers=8, thread_name_prefix="qwen-fetch-plain")
        self._futures = {rf.path: self._ex.submit(self._fetch, rf) for rf in need_bytes}
        self._failed = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        for fut in self._futures.values():
            fut.add_done_callback(self._done)

    def _fetch(self, rf: RemoteFile) -> FetchedPlain:
        """Fetch and verify one file; put it in place at once (no open file waits for the end of the pull)."""
        folder = self._layout.tmp_dir if self._layout is not None else None
        sink, source = self._puller.fetch_plain(self._listings, rf, folder)
        try:
            oid = rf.git_oid or (None if rf.lfs else sink.git_oid)
            pf = PinnedFile(path=rf.path, size=rf.size, sha256=sink.sha256, lfs=rf.lfs, git_oid=oid)
            written = self._layout.place_plain(pf, sink) if self._layout is not None else False
            return FetchedPlain(pf, source, written)
        finally:
            sink.close()

    def _done(self, fut: Future[FetchedPlain]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            with self._lock:
                self._failed.set()
                callbacks = list(self._callbacks)
            for cb in callbacks:
                cb()

    def on_failure(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)
            failed = self._failed.is_set()
        if failed:
            callback()

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    def files(self) -> tuple[PinnedFile, ...]:
        """Every chosen file, pinned (waits for the fetches; raises the first failure in listing order)."""
        if self._files is not None:
            return self._files
        pinned = list(self.known)
        for rf in self._chosen:
            if rf.path not in self._need:
                continue
            got = self._futures[rf.path].result()
            self.results[rf.path] = got
            pinned.append(got.pinned)
        self._files = tuple(sorted(pinned, key=lambda f: f.path))
        return self._files

    def fetched_files(self) -> list[PinnedFile]:
        return [f for f in self.files() if f.path in self._need]

    def close(self) -> None:
        self._ex.shutdown(wait=True, cancel_futures=True)


def _check_space(layout: Layout, plain_bytes: int, jobs: Sequence[FetchJob]) -> None:
    """Refuse to start when the files still to write cannot fit (the engine re-checks as it goes)."""
    import shutil

    from qwen_fetch.core.errors import DiskFullError

    need = plain_bytes
    for j in jobs:
        try:
            have = min(os.stat(j.partial).st_blocks * 512, j.size)  # a partial may have holes
        except OSError:
            have = 0
        need += j.size - have
    where = layout.local_dir if layout.local_dir is not None else layout.repo.blobs_dir
    free = shutil.disk_usage(where).free
    if need > free:
        raise DiskFullError(f"not enough disk space: {format_bytes(need)} still needed, {format_bytes(free)} free",
                            hint="free some space (qwen-fetch gc) or point the cache elsewhere (HF_HUB_CACHE); "
                                 "partial downloads are kept and resume",
                            context=[f"cache: {where}"])


def with_roots(files: Sequence[PinnedFile], outcomes: Iterable[FetchOutcome], earlier: Iterable[Pin]
               ) -> tuple[PinnedFile, ...]:
    """``files`` with the chunk roots this pull computed over their verified bytes, or an earlier pin recorded
    for the same content (so a file that was not fetched again keeps its root)."""
    roots = {(p.sha256, p.size): p.root for pin in earlier for p in pin.files if p.root is not None}
    fetched = {x.sha256: x.root for x in outcomes if x.root is not None}
    return tuple(replace(f, root=fetched.get(f.sha256) or roots.get((f.sha256, f.size))) if f.root is None else f
                 for f in files)


def check_revision_option(revision: str | None) -> None:
    """``--revision``: a name by git's ref-name rules, checked before any request (it names ``refs/<revision>``)."""
    problem = revision_problem(revision) if revision is not None else None
    if problem is not None:
        raise UsageError(f"--revision {str(revision)[:80]!r} is not a branch, tag or commit: {problem}",
                         hint="pass a name git accepts (`git check-ref-format --branch NAME`), "
                              "e.g. main, v1.0, refs/pr/1 or a 40-hex commit")


def _plain_mismatch(rf: RemoteFile, got: PlainSink) -> str | None:
    """Why the bytes in ``got`` cannot be ``rf`` (size, git blob id, listed sha256), or None."""
    if got.written != rf.size:
        return f"got {got.written} bytes, listed {rf.size}"
    if rf.git_oid is not None and got.git_oid != rf.git_oid:
        return f"git blob id {got.git_oid} != listed {rf.git_oid}"
    if rf.sha256 is not None and got.sha256 != rf.sha256:
        return f"sha256 {got.sha256} != listed {rf.sha256}"
    return None

