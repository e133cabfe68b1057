"""``kind: dir`` and ``kind: s3``: a private store written by ``qwen-fetch sync``.

Answers the same questions as every source: a revision resolves through
``refs/<revision>`` (or a commit names its manifest directly), the manifest
lists every file with its size and sha256, and each file is fetched from
``blobs/<sha256>`` through an httpx client (``file://`` transport for a
directory, a presigned URL for S3) so the engine needs no special case.
"""

from __future__ import annotations

import threading

from qwen_fetch.core.errors import NotFoundError
from qwen_fetch.core.manifest import RemoteFile, RepoListing
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.core.revisions import is_commit_id
from qwen_fetch.sources.base import FileLocation
from qwen_fetch.sources.config import SourceConfig
from qwen_fetch.store.backends import ObjectStore, open_store
from qwen_fetch.store.bucket import Manifest, StoreError, blob_key, manifest_key, parse_manifest, ref_key


class StoreSource:
    def __init__(self, config: SourceConfig, store: ObjectStore | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.endpoint, kind=config.kind, s3_endpoint_url=config.s3_endpoint_url,
                                         proxy=config.proxy, ca_bundle=config.ca_bundle)
        self._manifests: dict[tuple[str, str], Manifest] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    def default_revision(self) -> str:
        return self.config.revision or "main"

    def close(self) -> None:
        self.store.close()

    def _missing(self, what: str) -> NotFoundError:
        return NotFoundError(f"source {self.name!r}: {what} not in the store {self.store.url}",
                             hint=f"copy it there first: qwen-fetch sync MODEL --to {self.store.url}")

    def manifest(self, repo_id: str, commit: str) -> Manifest:
        mapped = self.config.map_model(repo_id)
        with self._lock:
            hit = self._manifests.get((mapped, commit))
        if hit is not None:
            return hit
        key = manifest_key(mapped, commit)
        data = self.store.get_bytes(key)
        if data is None:
            raise self._missing(f"{repo_id}@{commit[:12]}")
        m = parse_manifest(data, f"{self.store.url}/{key}")
        if m.model != mapped or m.commit != commit:
            raise StoreError(f"{self.store.url}/{key} describes {m.model}@{m.commit}",
                             hint="the store is corrupt; re-run `qwen-fetch sync` into it")
        with self._lock:
            self._manifests[(mapped, commit)] = m
        return m

    def resolve(self, repo_id: str, revision: str) -> RepoListing:
        mapped = self.config.map_model(repo_id)
        commit: str | None = None
        if is_commit_id(revision):
            commit = revision
        else:
            data = self.store.get_bytes(ref_key(mapped, revision))
            if data is None:
                raise self._missing(f"{repo_id}@{revision}")
            commit = data.decode("utf-8", "replace").strip()
        m = self.manifest(repo_id, commit)
        files = tuple(RemoteFile(path=f.path, size=f.size, sha256=f.sha256, git_oid=f.git_oid, lfs=f.lfs)
                      for f in m.files)
        return RepoListing(source=self.name, repo_id=repo_id, revision=revision, commit=m.commit, files=files)

    def locate(self, repo_id: str, commit: str, path: SafeRelPath) -> FileLocation:
        f = self.manifest(repo_id, commit)
        pf = next((x for x in f.files if x.path == path), None)
        if pf is None:
            raise self._missing(f"{repo_id}@{commit[:12]}:{path}")
        url, client = self.store.reader(blob_key(pf.sha256))
        return FileLocation(source=self.name, url=url, client=client)
