"""The store layout and its manifest format: pure.

A store (a directory or ``s3://bucket/prefix``) holds::

    blobs/<sha256>                              file contents, named by their sha256 (shared by all models)
    models/<org>/<name>/commits/<commit>.json   manifest: every file of that commit (path, size, sha256, ...)
    models/<org>/<name>/refs/<revision>         text: the commit a branch/tag names

Write order is the commit protocol: blobs first (each verified after upload),
then the manifest, then the refs.  A reader that finds a ref therefore finds
its manifest, and a manifest's blobs are all there.  Blobs are immutable and
content-addressed, so re-running a sync skips every blob already present and
two models sharing a file store it once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from qwen_fetch.core.digests import is_lower_hex, is_sha1, is_sha256
from qwen_fetch.core.errors import IntegrityError, Ref
from qwen_fetch.core.manifest import Pin, PinnedFile
from qwen_fetch.core.paths import UnsafePathError, check_collisions, safe_relpath
from qwen_fetch.core.revisions import is_commit_id, revision_problem
from qwen_fetch.store.hfcache import check_repo_id

FORMAT = "qwen-fetch-store/1"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
S3_PART_SIZE = 64 * 1024 * 1024  # multipart chunk size; also what the expected ETag is computed with


class StoreError(IntegrityError):
    ref = Ref.BAD_STORE


def blob_key(sha256: str) -> str:
    assert is_sha256(sha256)
    return f"blobs/{sha256}"


def manifest_key(model_id: str, commit: str) -> str:
    check_repo_id(model_id)
    if not is_commit_id(commit):
        raise StoreError(f"{commit!r} is not a commit id", hint="pins hold 40-hex commits")
    return f"models/{model_id}/commits/{commit}.json"


def ref_key(model_id: str, revision: str) -> str:
    check_repo_id(model_id)
    problem = revision_problem(revision)
    if problem is not None:
        raise StoreError(f"{revision!r} is not a branch or tag name: {problem}", hint="e.g. main, v1.0")
    return f"models/{model_id}/refs/{revision}"


@dataclass(frozen=True)
class Manifest:
    model: str
    revision: str
    commit: str
    files: tuple[PinnedFile, ...]  # sorted by path

    @classmethod
    def from_pin(cls, model: str, pin: Pin) -> Manifest:
        return cls(model, pin.revision, pin.commit, tuple(sorted(pin.files, key=lambda f: f.path)))

    def encode(self) -> bytes:
        """Canonical bytes: the same manifest always encodes identically (so "unchanged" is a byte compare)."""
        files = []
        for f in self.files:
            d: dict[str, Any] = {"path": f.path, "size": f.size, "sha256": f.sha256, "lfs": f.lfs}
            if f.git_oid:
                d["git_oid"] = f.git_oid
            files.append(d)
        doc = {"format": FORMAT, "model": self.model, "revision": self.revision, "commit": self.commit,
               "files": files}
        return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def parse_manifest(data: bytes, where: str) -> Manifest:
    """Strictly parse a manifest read from a store (untrusted: paths, sizes and hashes are checked)."""
    def bad(msg: str) -> StoreError:
        return StoreError(f"{where}: {msg}", hint="the store is corrupt or was written by another tool; re-run "
                                                  "`qwen-fetch sync` into it")

    if len(data) > MAX_MANIFEST_BYTES:
        raise bad("manifest too large")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise bad("manifest is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f"not a {FORMAT} manifest")
    model, revision, commit, raw = doc.get("model"), doc.get("revision"), doc.get("commit"), doc.get("files")
    if not (isinstance(model, str) and isinstance(revision, str) and is_commit_id(commit)):
        raise bad("model, revision or commit missing or malformed")
    if not isinstance(raw, list):
        raise bad("files must be a list")
    files: list[PinnedFile] = []
    for e in raw:
        if not isinstance(e, dict):
            raise bad("file entry is not an object")
        try:
            path = safe_relpath(e.get("path"))
        except UnsafePathError as exc:
            raise bad(exc.message) from None
        size, sha, lfs, oid = e.get("size"), e.get("sha256"), e.get("lfs", False), e.get("git_oid")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad(f"bad size for {path!r}")
        if not isinstance(sha, str) or not is_sha256(sha) or not isinstance(lfs, bool) \
                or (oid is not None and not is_sha1(oid)):
            raise bad(f"bad sha256 / lfs / git_oid for {path!r}")
        files.append(PinnedFile(path=path, size=size, sha256=sha, lfs=lfs, git_oid=oid))
    try:
        check_collisions(f.path for f in files)
    except UnsafePathError as exc:
        raise bad(exc.message) from None
    return Manifest(model, revision, commit, tuple(sorted(files, key=lambda f: f.path)))


def s3_etag(chunks: Iterable[bytes], size: int, part_size: int = S3_PART_SIZE) -> str:
    """The ETag S3 (and MinIO, Ceph RGW) gives an unencrypted object uploaded by boto3 with
    ``multipart_threshold = multipart_chunksize = part_size``: the MD5 of the content for a
    single PUT, else ``md5(md5(part1) + md5(part2) + ...)-<parts>``.  Comparing it with the
    server's ETag proves the server received exactly our bytes, without reading them back."""
    if size < part_size:
        h = hashlib.md5(usedforsecurity=False)
        for c in chunks:
            h.update(c)
        return h.hexdigest()
    digests: list[bytes] = []
    part = hashlib.md5(usedforsecurity=False)
    filled = 0
    for c in chunks:
        view = memoryview(c)
        while view:
            take = min(len(view), part_size - filled)
            part.update(view[:take])
            filled += take
            view = view[take:]
            if filled == part_size:
                digests.append(part.digest())
                part, filled = hashlib.md5(usedforsecurity=False), 0
    if filled:
        digests.append(part.digest())
    return hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest() + f"-{len(digests)}"


def is_md5_etag(etag: str) -> bool:
    """An ETag of the MD5 form (``<32 hex>`` or ``<32 hex>-<n>``); SSE-KMS or some gateways use others."""
    head, _, parts = etag.strip('"').partition("-")
    return is_lower_hex(head, 32) and (not parts or parts.isdigit())
