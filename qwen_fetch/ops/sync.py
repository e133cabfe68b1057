"""``qwen-fetch sync``: copy a pinned, verified model from the local cache into a private store.

Plan, then act:

1. The pin comes from the lock; the cached snapshot is re-hashed against it
   (nothing unverified leaves this machine).
2. :func:`plan_sync` (pure) compares the pin with what the store already holds
   (one HEAD per blob, the manifest, the ref) and decides what to upload.
3. :func:`execute` uploads the missing blobs in parallel and checks each one
   after upload (a directory: read back and re-hash; S3: size, sha256 metadata
   and the MD5-form ETag computed locally), then writes the manifest (read back
   and compared) and finally the ref.  A failure stops before the manifest, so
   the store never advertises a commit it cannot serve.

Blobs are content-addressed: a re-run uploads nothing that is already there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from qwen_fetch.core.digests import digest_matches
from qwen_fetch.core.errors import IntegrityError, Ref, SourceError, UsageError
from qwen_fetch.core.manifest import Pin
from qwen_fetch.store.backends import ObjectInfo, ObjectStore
from qwen_fetch.store.bucket import Manifest, blob_key, manifest_key, ref_key
from qwen_fetch.store.hfcache import RepoCache
from qwen_fetch.store.lockio import read_lock

# Above this many blobs, sync lists the store's blobs/ instead of sending one HEAD per blob.
LIST_ABOVE = 256


@dataclass(frozen=True)
class BlobStep:
    sha256: str
    size: int
    path: str  # one snapshot path holding this content (for messages)
    reason: str  # "missing", "size differs", "sha256 metadata differs", "recheck failed: ..." or "present"


@dataclass(frozen=True)
class SyncPlan:
    model: str
    pin: Pin
    dest: str
    upload: tuple[BlobStep, ...]
    present: tuple[BlobStep, ...]
    manifest: bytes
    write_manifest: bool
    write_ref: bool

    @property
    def upload_bytes(self) -> int:
        return sum(b.size for b in self.upload)

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model, "revision": self.pin.revision, "commit": self.pin.commit, "dest": self.dest,
            "upload": [{"path": b.path, "sha256": b.sha256, "size": b.size, "reason": b.reason} for b in self.upload],
            "present_blobs": len(self.present), "upload_blobs": len(self.upload), "upload_bytes": self.upload_bytes,
            "write_manifest": self.write_manifest, "write_ref": self.write_ref,
        }


@dataclass(frozen=True)
class SyncResult:
    plan: SyncPlan
    uploaded_blobs: int
    uploaded_bytes: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        d = self.plan.to_dict()
        d.update({"ok": True, "uploaded_blobs": self.uploaded_blobs, "uploaded_bytes": self.uploaded_bytes,
                  "skipped_blobs": len(self.plan.present), "seconds": round(self.seconds, 3),
                  "manifest_written": self.plan.write_manifest, "ref_written": self.plan.write_ref})
        return d


def plan_sync(model: str, pin: Pin, dest: str, existing: Mapping[str, ObjectInfo | None],
              manifest_now: bytes | None, ref_now: str | None, rechecked: Mapping[str, str | None] | None = None
              ) -> SyncPlan:
    """Pure: what to upload, given what the store holds (``existing``: sha256 -> HEAD result).

    A blob counts as present when its size matches and any sha256 the store recorded
    matches; ``rechecked`` (``--recheck``) adds the result of a full check of present blobs.
    """
    upload: list[BlobStep] = []
    present: list[BlobStep] = []
    seen: set[str] = set()
    for f in sorted(pin.files, key=lambda f: f.path):
        if f.sha256 in seen:
            continue
        seen.add(f.sha256)
        info = existing.get(f.sha256)
        problem = None
        if info is None:
            problem = "missing"
        elif info.size != f.size:
            problem = f"size differs ({info.size} stored)"
        elif info.sha256 is not None and not digest_matches(f.digest, info.sha256):
            problem = "sha256 metadata differs"
        elif rechecked is not None and rechecked.get(f.sha256):
            problem = f"recheck failed: {rechecked[f.sha256]}"
        (upload if problem else present).append(BlobStep(f.sha256, f.size, f.path, problem or "present"))
    manifest = Manifest.from_pin(model, pin).encode()
    return SyncPlan(model=model, pin=pin, dest=dest, upload=tuple(upload), present=tuple(present),
                    manifest=manifest, write_manifest=manifest_now != manifest,
                    write_ref=(ref_now or "").strip() != pin.commit and pin.revision != pin.commit)


# ---------------------------------------------------------------------------
# the disk / store side


def pick_pin(lock_path: Path, model: str, revision: str | None) -> Pin:
    pins = read_lock(lock_path).pins(model)
    if not pins:
        raise IntegrityError(f"{model} is not pinned in {lock_path}", reference=Ref.MISSING_PIN,
                             hint=f"pull it first (that writes the pin): qwen-fetch pull {model} --lock {lock_path}")
    if revision is None:
        return pins[0]
    for p in pins:
        if revision in (p.revision, p.commit):
            return p
    raise UsageError(f"{model}@{revision} is not pinned in {lock_path}",
                     hint="pinned: " + ", ".join(f"{p.revision}@{p.commit[:12]}" for p in pins))


def verified_blobs(cache_dir: Path, model: str, pin: Pin, workers: int | None = None) -> dict[str, Path]:
    """Re-hash the cached snapshot against the pin; sha256 -> local blob path, or raise."""
    from qwen_fetch.store.verify_disk import Target, verify_targets

    repo = RepoCache(cache_dir, model)
    snap = repo.snapshot_dir(pin.commit)
    if not snap.is_dir():
        raise IntegrityError(f"{model}@{pin.commit[:12]} is not in the cache {cache_dir}", reference=Ref.NOT_CACHED,
                             hint=f"pull it first: qwen-fetch pull {model} --cache-dir {cache_dir}")
    report = verify_targets([Target(model, pin, snap, snapshot=True, blobs_dir=repo.blobs_dir)], workers=workers)[0]
    if not report.ok:
        problems = ([f"missing     {p}" for p in report.missing] + [f"extra       {p}" for p in report.extra]
                    + [f"mismatched  {m.path}" for m in report.mismatched]
                    + [f"bad link    {b.path} ({b.problem})" for b in report.bad_links])
        raise IntegrityError(f"the cached {model}@{pin.commit[:12]} does not match the lock; nothing was synced",
                             context=problems[:50], reference=Ref.VERIFY_FAILED,
                             hint=f"repair the cache: qwen-fetch pull {model} (re-fetches bad files), then sync again")
    return {f.sha256: repo.blob_path(f.sha256) for f in pin.files}


def survey(store: ObjectStore, model: str, pin: Pin, *, recheck: bool, local: Mapping[str, Path],
           workers: int, list_above: int = LIST_ABOVE
           ) -> tuple[dict[str, ObjectInfo | None], bytes | None, str | None, dict[str, str | None] | None]:
    """What the store holds for this pin: one HEAD per blob in parallel, or, for a pin of more than
    ``list_above`` blobs, one paged listing of ``blobs/`` (a page names up to 1,000 objects)."""
    shas = sorted({f.sha256 for f in pin.files})
    sizes = {f.sha256: f.size for f in pin.files}
    with ThreadPoolExecutor(max_workers=workers) as ex:
        if len(shas) > list_above:
            # A listing gives sizes but not the sha256 metadata a HEAD returns; a blob's name is its
            # sha256 and each upload was checked, and --recheck still re-reads every present blob.
            listed = store.list_prefix(blob_key(shas[0]).rsplit("/", 1)[0] + "/")
            existing: dict[str, ObjectInfo | None] = {s: listed.get(s) for s in shas}
        else:
            existing = dict(zip(shas, ex.map(lambda s: store.head(blob_key(s)), shas)))
        rechecked = None
        if recheck:
            have = [s for s in shas if existing[s] is not None]
            rechecked = dict(zip(have, ex.map(
                lambda s: store.check_blob(blob_key(s), local[s], sha256=s, size=sizes[s]), have)))
    manifest_now = store.get_bytes(manifest_key(model, pin.commit))
    ref_now = None
    if pin.revision != pin.commit:
        raw = store.get_bytes(ref_key(model, pin.revision))
        ref_now = raw.decode("utf-8", "replace") if raw is not None else None
    return existing, manifest_now, ref_now, rechecked


def execute(plan: SyncPlan, store: ObjectStore, local: Mapping[str, Path], *, workers: int) -> SyncResult:
    t0 = time.monotonic()

    def upload(step: BlobStep) -> str | None:
        key = blob_key(step.sha256)
        store.put_file(key, local[step.sha256], sha256=step.sha256)
        problem = store.check_blob(key, local[step.sha256], sha256=step.sha256, size=step.size)
        return f"{step.path}: {problem}" if problem else None

    with ThreadPoolExecutor(max_workers=workers) as ex:
        failures = [p for p in ex.map(upload, plan.upload) if p]
    if failures:
        raise IntegrityError(f"{len(failures)} blob(s) did not verify after upload to {plan.dest}; "
                             "no manifest or ref was written", context=failures, reference=Ref.UPLOAD_MISMATCH,
                             hint="check the store's health and re-run sync (verified blobs are kept)")
    mkey = manifest_key(plan.model, plan.pin.commit)
    if plan.write_manifest:
        store.put_bytes(mkey, plan.manifest)
        if store.get_bytes(mkey) != plan.manifest:
            raise SourceError(f"{plan.dest}/{mkey} reads back different bytes", reference=Ref.STORE_READBACK_MISMATCH,
                              hint="check the store's health and re-run sync")
    if plan.write_ref:
        store.put_bytes(ref_key(plan.model, plan.pin.revision), (plan.pin.commit + "\n").encode())
    return SyncResult(plan=plan, uploaded_blobs=len(plan.upload), uploaded_bytes=plan.upload_bytes,
                      seconds=time.monotonic() - t0)


@dataclass(frozen=True)
class SyncOptions:
    model: str
    dest: str  # a directory, s3://bucket/prefix, or the name of a kind: dir / s3 source
    cache_dir: Path
    lock_path: Path
    revision: str | None = None
    s3_endpoint_url: str | None = None
    dry_run: bool = False
    recheck: bool = False
    workers: int = 4


def run_sync(opts: SyncOptions, store: ObjectStore) -> SyncPlan | SyncResult:
    pin = pick_pin(opts.lock_path, opts.model, opts.revision)
    local = verified_blobs(opts.cache_dir, opts.model, pin)
    existing, manifest_now, ref_now, rechecked = survey(store, opts.model, pin, recheck=opts.recheck, local=local,
                                                         workers=opts.workers)
    plan = plan_sync(opts.model, pin, store.url, existing, manifest_now, ref_now, rechecked)
    if opts.dry_run:
        return plan
    return execute(plan, store, local, workers=opts.workers)


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))
