"""``kind: dir`` and ``kind: s3``: a private store written by ``qwen-fetch sync``.

Answers the same questions as every source: a revision resolves through
``refs/<revision>`` (or a commit names its manifest directly), the manifest
lists every file with its size and sha256, and each file is fetched from
``blobs/<sha256>`` by URL (``file://`` under the store's folder, a presigned
URL for S3) so the engine needs no special case.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from qwen_fetch.core.errors import NotFoundError
from qwen_fetch.core.manifest import RemoteFile, RepoListing
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.core.revisions import is_commit_id
from qwen_fetch.net.location import FileLocation
from qwen_fetch.sources.base import Fail, RevisionContext, hub_revision
from qwen_fetch.sources.config import SourceConfig
from qwen_fetch.store.bucket import Manifest, StoreError, blob_key, manifest_key, parse_manifest, ref_key

if TYPE_CHECKING:  # the store adapters (httpx, boto3) are imported when a source is opened
    from qwen_fetch.net.deadline import Deadlines
    from qwen_fetch.net.pools import Pools
    from qwen_fetch.store.backends import ObjectStore


class StoreSource:
    def __init__(self, config: SourceConfig, store: ObjectStore | None = None, kind: StoreKind | None = None) -> None:
        from qwen_fetch.store.backends import open_store

        self.config = config
        self.kind = kind or (S3 if config.kind == S3.name else DIR)
        self.store = store or open_store(config.endpoint, kind=config.kind, s3_endpoint_url=config.s3_endpoint_url,
                                         proxy=config.proxy, ca_bundle=config.ca_bundle)
        self._manifests: dict[tuple[str, str], Manifest] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    def default_revision(self) -> str:
        return self.kind.default_revision(self.config)

    def reach(self) -> None:
        return None  # the first read of a ref or manifest is the check

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
        url, route = self.store.location(blob_key(pf.sha256))
        return FileLocation(source=self.name, url=url, route=route)


class StoreKind:
    """A store written by ``qwen-fetch sync``: one manifest per commit, so it is asked for commits."""

    keys: frozenset[str] = frozenset()
    stores = True
    commit_mismatch_hint = "the mirror is stale or hostile; use another --source"

    def __init__(self, name: str, *, needs_network: bool) -> None:
        self.name = name
        self.needs_network = needs_network

    def configure(self, raw: Mapping[str, Any], config: SourceConfig, fail: Fail) -> SourceConfig:
        return config

    def default_revision(self, config: SourceConfig) -> str:
        return config.revision or "main"

    def revision_for(self, config: SourceConfig, ctx: RevisionContext) -> str:
        # The store keeps its manifests under the commit ids of the hub it was synced from.
        if ctx.pin is not None:
            return ctx.pin.commit
        if ctx.primary is not None:
            return ctx.primary.commit
        return hub_revision(config, ctx, default=self.default_revision(config), by_name=False,
                            same_family=lambda other: other == self.name)

    def open_store(self, config: SourceConfig, *, s3_endpoint_url: str | None = None) -> ObjectStore:
        from qwen_fetch.store.backends import open_store

        return open_store(config.endpoint, kind=self.name, s3_endpoint_url=s3_endpoint_url or config.s3_endpoint_url)

    def open(self, config: SourceConfig, *, http: Pools | None, timeout: float,
             deadlines: Deadlines | None) -> StoreSource:
        return StoreSource(config, kind=self)  # reads its refs and manifests through the store's own adapter


class DirKind(StoreKind):
    """``kind: dir``: a folder (an NFS share), read through a ``file://`` transport; no network."""

    def __init__(self) -> None:
        super().__init__("dir", needs_network=False)

    def configure(self, raw: Mapping[str, Any], config: SourceConfig, fail: Fail) -> SourceConfig:
        if not config.endpoint.startswith(("/", "~", "file://")):
            raise fail("endpoint", f"endpoint {config.endpoint!r} must be an absolute path or file:// URL")
        return config


class S3Kind(StoreKind):
    """``kind: s3``: a bucket on AWS, MinIO, Ceph or OSS, read through presigned URLs."""

    keys = frozenset({"s3_endpoint_url"})

    def __init__(self) -> None:
        super().__init__("s3", needs_network=True)

    def configure(self, raw: Mapping[str, Any], config: SourceConfig, fail: Fail) -> SourceConfig:
        if urlsplit(config.endpoint).scheme != "s3":
            raise fail("endpoint", f"endpoint {config.endpoint!r} must look like s3://bucket/prefix")
        s3_url = raw.get("s3_endpoint_url")
        if s3_url is not None:
            sp = urlsplit(s3_url) if isinstance(s3_url, str) else None
            if sp is None or sp.scheme not in ("http", "https") or not sp.hostname:
                raise fail("s3_endpoint_url", "s3_endpoint_url must be an http(s) URL, on a kind: s3 source")
            config = replace(config, s3_endpoint_url=s3_url.rstrip("/"))
        proxy = config.proxy.https if config.proxy is not None else None
        if proxy is not None and proxy.scheme != "http":
            raise fail("proxy", "kind: s3 talks to the bucket through boto3, which supports only http:// proxies")
        return config


DIR = DirKind()
S3 = S3Kind()

