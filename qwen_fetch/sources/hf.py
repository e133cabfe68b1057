"""``kind: hf``: HF-compatible endpoints (huggingface.co, hf-mirror.com, olah, Artifactory, ``serve``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from qwen_fetch.core.digests import is_sha1, is_sha256
from qwen_fetch.core.errors import NotFoundError, Ref, SourceError
from qwen_fetch.core.manifest import ListingError, RemoteFile, RepoListing
from qwen_fetch.core.paths import SafeRelPath, UnsafePathError, check_collisions, safe_relpath
from qwen_fetch.core.revisions import is_commit_id
from qwen_fetch.net.location import FileLocation
from qwen_fetch.sources.base import Fail, Reachability, RevisionContext, hub_revision
from qwen_fetch.sources.config import SourceConfig, http_endpoint

if TYPE_CHECKING:  # the HTTP stack is imported when a source is opened, not when mirrors.yaml is read
    import httpx

    from qwen_fetch.net.deadline import Deadlines
    from qwen_fetch.net.pools import Pools

MAX_PAGES = 1000
MAX_FILES = 100_000


def http_error(source: str, resp: httpx.Response, what: str) -> SourceError:
    code = resp.headers.get("X-Error-Code", "")
    if resp.status_code in (401, 403) and code not in ("RepoNotFound",):
        return SourceError(f"source {source!r}: access to {what} denied (HTTP {resp.status_code})",
                           hint="the repo may be gated or private: set the token variable named by token_env "
                                "(HF_TOKEN for huggingface.co)", reference=Ref.ACCESS_DENIED)
    if resp.status_code == 404 or code in ("RepoNotFound", "RevisionNotFound", "EntryNotFound"):
        kind = {"RevisionNotFound": "revision", "EntryNotFound": "file"}.get(code, "repository or revision")
        return NotFoundError(f"source {source!r}: {kind} not found: {what}",
                             hint="check the model id and --revision (branch, tag or commit)")
    return SourceError(f"source {source!r}: HTTP {resp.status_code} for {what}",
                       hint="the source may be down; retry later or pick another --source",
                       reference=Ref.SOURCE_HTTP_ERROR)


class HFSource:
    def __init__(self, config: SourceConfig, *, http: Pools | None = None, timeout: float = 30.0,
                 deadlines: Deadlines | None = None) -> None:
        from qwen_fetch.sources.hubhttp import HubConnection

        self.config = config
        self.deadlines = deadlines
        self._hub = HubConnection(config, http, timeout=timeout)

    @property
    def name(self) -> str:
        return self.config.name

    def default_revision(self) -> str:
        return KIND.default_revision(self.config)

    def reach(self) -> Reachability:
        return self._hub.reach()

    def close(self) -> None:
        self._hub.close()

    def _api(self, repo_id: str, *tail: str) -> str:
        return f"{self.config.endpoint}/api/models/{self.config.map_model(repo_id)}/" + "/".join(tail)

    def resolve_commit(self, repo_id: str, revision: str) -> str:
        data, resp = self._hub.get_json(self._api(repo_id, "revision", quote(revision, safe="")),
                                        deadlines=self.deadlines)
        if data is None:
            raise http_error(self.name, resp, f"{repo_id}@{revision}")
        sha = data.get("sha") if isinstance(data, dict) else None
        if not is_commit_id(sha):
            raise ListingError(f"source {self.name!r} returned no valid commit for {repo_id}@{revision}",
                               hint="the mirror is broken or hostile; use another --source")
        return str(sha)

    def _same_origin(self, url: str) -> str:
        """Pagination links from a mirror that does not rewrite them point at the origin hub:
        keep path and query, but always talk to our own endpoint."""
        ours = urlsplit(self.config.endpoint)
        theirs = urlsplit(url)
        if not theirs.scheme:
            return self.config.endpoint + url if url.startswith("/") else url
        return urlunsplit((ours.scheme, ours.netloc, theirs.path, theirs.query, ""))

    def list_tree(self, repo_id: str, commit: str) -> list[RemoteFile]:
        url: str | None = self._api(repo_id, "tree", commit)
        params: dict[str, str] | None = {"recursive": "true", "expand": "false"}
        entries: list[Any] = []
        pages = 0
        while url:
            pages += 1
            if pages > MAX_PAGES:
                raise ListingError(f"source {self.name!r}: file listing has over {MAX_PAGES} pages",
                                   hint="the mirror is broken or hostile; use another --source")
            data, resp = self._hub.get_json(url, params=params, deadlines=self.deadlines)
            if data is None:
                raise http_error(self.name, resp, f"{repo_id}@{commit} file listing")
            if not isinstance(data, list):
                raise ListingError(f"source {self.name!r}: file listing is not a JSON array",
                                   hint="the mirror is broken or hostile; use another --source")
            entries.extend(data)
            if len(entries) > MAX_FILES:
                raise ListingError(f"source {self.name!r}: file listing has over {MAX_FILES} entries",
                                   hint="the mirror is broken or hostile; use another --source")
            nxt = resp.links.get("next", {}).get("url")
            url = self._same_origin(nxt) if nxt else None
            params = None
        return parse_tree(entries, self.name)

    def resolve(self, repo_id: str, revision: str) -> RepoListing:
        commit = self.resolve_commit(repo_id, revision)
        files = self.list_tree(repo_id, commit)
        return RepoListing(source=self.name, repo_id=repo_id, revision=revision, commit=commit,
                           files=tuple(sorted(files, key=lambda f: f.path)))

    def locate(self, repo_id: str, commit: str, path: SafeRelPath) -> FileLocation:
        url = f"{self.config.endpoint}/{self.config.map_model(repo_id)}/resolve/{commit}/{quote(path)}"
        return self._hub.location(url)


def parse_tree(entries: list[Any], source: str) -> list[RemoteFile]:
    """Validate a tree listing (pure).  Directories are skipped; anything odd is refused."""
    files: list[RemoteFile] = []

    def bad(msg: str) -> ListingError:
        return ListingError(f"source {source!r}: {msg}", hint="the mirror is broken or hostile; use another --source")

    for e in entries:
        if not isinstance(e, dict):
            raise bad("file listing entry is not an object")
        etype = e.get("type")
        if etype == "directory":
            safe_relpath(e.get("path"))
            continue
        if etype != "file":
            raise bad(f"unsupported entry type {str(etype)[:40]!r} for {str(e.get('path'))[:80]!r}")
        try:
            path = safe_relpath(e.get("path"))
        except UnsafePathError as exc:
            raise UnsafePathError(f"source {source!r}: {exc.message}", hint=exc.hint) from None
        size = e.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > 1 << 50:
            raise bad(f"bad size {size!r} for {path!r}")
        oid = e.get("oid")
        lfs = e.get("lfs")
        sha256 = None
        if lfs is not None:
            if not isinstance(lfs, dict):
                raise bad(f"bad lfs entry for {path!r}")
            sha256 = lfs.get("oid", lfs.get("sha256"))
            if not is_sha256(sha256):
                raise bad(f"bad lfs sha256 {str(sha256)[:80]!r} for {path!r}")
            lsize = lfs.get("size", size)
            if lsize != size:
                raise bad(f"{path!r}: listed size {size} disagrees with LFS size {lsize!r}")
        elif not is_sha1(oid):
            raise bad(f"bad git blob id {str(oid)[:80]!r} for {path!r}")
        files.append(RemoteFile(path=path, size=size, sha256=sha256, git_oid=None if lfs else oid, lfs=lfs is not None))
    check_collisions(f.path for f in files)
    return files


class HFKind:
    """HF-compatible hubs: addressed by commit id, commits shared by every hub of the family."""

    name = "hf"
    keys: frozenset[str] = frozenset()
    needs_network = True
    stores = False
    commit_mismatch_hint = "the mirror is stale or hostile; use another --source"

    def configure(self, raw: Mapping[str, Any], config: SourceConfig, fail: Fail) -> SourceConfig:
        return replace(config, endpoint=http_endpoint(config.endpoint, fail))

    def default_revision(self, config: SourceConfig) -> str:
        return config.revision or "main"

    def same_family(self, other_kind: str | None) -> bool:
        # A source no longer configured is taken for an HF hub: the one that comes and goes is
        # ``env`` (HF_ENDPOINT), which is one.
        return other_kind in (None, self.name)

    def revision_for(self, config: SourceConfig, ctx: RevisionContext) -> str:
        return hub_revision(config, ctx, default=self.default_revision(config), by_name=False,
                            same_family=self.same_family)

    def open_store(self, config: SourceConfig, *, s3_endpoint_url: str | None = None) -> None:
        return None

    def open(self, config: SourceConfig, *, http: Pools | None, timeout: float,
             deadlines: Deadlines | None) -> HFSource:
        return HFSource(config, http=http, timeout=timeout, deadlines=deadlines)


KIND = HFKind()
