"""ModelScope (modelscope.cn, modelscope.ai): the ``/api/v1`` surface the official client uses.

Protocol, as the installed ``modelscope``/``modelscope_hub`` client speaks it
(``modelscope_hub/_legacy_api.py``, ``_download.py``):

* ``GET /api/v1/models/{org}/{name}/revisions`` -> ``Data.RevisionMap.{Branches,Tags}[]``
  of ``{Revision, CreatedAt}``; the default branch is ``master``.
* ``GET /api/v1/models/{org}/{name}/repo/files?Revision=R&Recursive=True`` ->
  ``Data.Files[]`` of ``{Name, Path, Type: blob|tree, Size, Sha256, Revision,
  CommittedDate, IsLFS}``.  Not paginated: the server silently truncates at
  3000 entries (the client then walks directories with ``Root=``); we refuse
  such a listing instead of trusting a partial one.
* ``GET /api/v1/models/{org}/{name}/repo?Revision=R&FilePath=P`` -> the bytes,
  in reality a 302 to object storage; ``Range`` is honoured.
* Every JSON answer is wrapped: ``{"Code": 200, "Success": true, "Message",
  "RequestId", "Data"}``.  We accept nothing else (see :func:`unwrap`).
* Auth: ``Authorization: Bearer <token>`` *and* the ``m_session_id=<token>``
  cookie (older endpoints read only the cookie), sent to the endpoint's
  origin only, never to the storage host a download redirects to.

What ``RepoListing.commit`` means here: ModelScope has no "resolve a branch to
a commit" call, and commit ids are generally not accepted as ``Revision``.
Each listed file carries the id of the last commit that changed it; the
listing's ``commit`` is the newest of those (latest ``CommittedDate``, ties
broken by id).  It is a real ModelScope git commit id (not comparable with an
HF commit), stable for as long as the revision's files do not change, so a
lock can record it to detect drift.  Downloads are addressed by the revision
*name* that was resolved (``master``, a tag): :meth:`ModelScopeSource.locate`
maps the commit back to it.  File sha256s are what pin the bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from qwen_fetch.core.digests import is_sha256
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

API_PREFIX = "/api/v1/models"
# modelscope_hub.constants.REPO_FILES_TRUNCATION_LIMIT: ``repo/files`` never returns more.
LISTING_CAP = 3000
MAX_SIZE = 1 << 50
LFS_GUESS_SIZE = 10 << 20
LFS_GUESS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".msgpack", ".h5", ".npz")
_HOSTILE = "the mirror is broken or hostile; use another --source"
# Auth: ``Authorization: Bearer`` and this cookie, as the official client sends both
# (``LegacyClient._ensure_session_auth``); older endpoints read only the cookie.
SESSION_COOKIE = "m_session_id"


@dataclass(frozen=True)
class Revisions:
    """Branch and tag names a ModelScope repo publishes."""

    branches: tuple[str, ...]
    tags: tuple[str, ...]

    def __contains__(self, name: object) -> bool:
        return name in self.branches or name in self.tags

    def describe(self, limit: int = 8) -> str:
        def show(names: tuple[str, ...]) -> str:
            more = f", ... {len(names) - limit} more" if len(names) > limit else ""
            return ", ".join(names[:limit]) + more if names else "none"

        return f"branches: {show(self.branches)}; tags: {show(self.tags)}"


# -- pure parsing ---------------------------------------------------------------


def _bad(source: str, msg: str) -> ListingError:
    return ListingError(f"source {source!r}: {msg}", hint=_HOSTILE)


def unwrap(body: Any, source: str, what: str) -> Any:
    """Return ``Data`` of a ModelScope envelope, or raise.

    A body with ``Success: false`` is the server refusing (reported with its
    message, exit 4); anything not shaped like the envelope is refused as a
    broken or hostile answer (exit 3).
    """
    if not isinstance(body, dict):
        raise _bad(source, f"{what}: answer is not a ModelScope JSON envelope")
    success, code = body.get("Success"), body.get("Code")
    if success is False:
        msg = str(body.get("Message") or "no message")[:200]
        raise SourceError(f"source {source!r}: {what} refused (code {str(code)[:20]}): {msg}",
                          hint="check the model id and revision, or pick another --source",
                          reference=Ref.SOURCE_REFUSED)
    if success is not True or code not in (200, "200"):
        raise _bad(source, f"{what}: envelope without Success: true and Code: 200")
    if "Data" not in body:
        raise _bad(source, f"{what}: envelope has no Data")
    return body["Data"]


def parse_revisions(data: Any, source: str) -> Revisions:
    """``Data`` of ``/revisions`` -> branch and tag names (pure)."""
    if not isinstance(data, dict) or not isinstance(data.get("RevisionMap"), dict):
        raise _bad(source, "revision list has no RevisionMap")
    rmap = data["RevisionMap"]
    out: dict[str, tuple[str, ...]] = {}
    for key in ("Branches", "Tags"):
        raw = rmap.get(key) or []
        if not isinstance(raw, list):
            raise _bad(source, f"revision list: {key} is not a list")
        names: list[str] = []
        for item in raw:
            name = item.get("Revision") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name or len(name) > 256 or any(ord(c) < 0x20 for c in name):
                raise _bad(source, f"revision list: bad {key[:-1].lower()} entry {str(item)[:80]!r}")
            names.append(name)
        out[key] = tuple(names)
    return Revisions(branches=out["Branches"], tags=out["Tags"])


def _timestamp(value: Any) -> float | None:
    """``CommittedDate`` as epoch seconds: an integer (what the API sends) or an ISO-8601 string
    (what the official client also accepts); absent means 0.  None when it is neither."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and len(value) <= 40:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError, OSError):
            return None
    return None


def parse_files(data: Any, source: str) -> tuple[list[RemoteFile], str | None]:
    """``Data`` of ``repo/files`` -> (files, newest commit id) (pure).

    Directories (``Type: tree``) are checked and skipped.  Every file needs a
    safe path and a sane size; a present ``Sha256`` must be 64 hex digits (an
    absent or empty one gives ``sha256=None``: the bytes must then be hashed).
    ``git_oid`` is always ``None``: ModelScope does not publish git blob ids.
    """
    entries = data.get("Files") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise _bad(source, "file listing has no Files list")
    if len(entries) >= LISTING_CAP:
        raise ListingError(f"source {source!r}: file listing hit the server's {LISTING_CAP}-entry cap "
                           "and may be truncated", hint="use an HF-compatible source for this repo")
    files: list[RemoteFile] = []
    newest: tuple[float, str] | None = None
    for e in entries:
        if not isinstance(e, dict):
            raise _bad(source, "file listing entry is not an object")
        etype = e.get("Type")
        try:
            path = safe_relpath(e.get("Path"))
        except UnsafePathError as exc:
            raise UnsafePathError(f"source {source!r}: {exc.message}", hint=exc.hint) from None
        if etype == "tree":
            continue
        if etype != "blob":
            raise _bad(source, f"unsupported entry type {str(etype)[:40]!r} for {path!r}")
        size = e.get("Size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
            raise _bad(source, f"bad size {str(size)[:40]!r} for {path!r}")
        sha = e.get("Sha256")
        if sha in (None, ""):
            sha = None
        elif not isinstance(sha, str) or not is_sha256(sha.lower()):
            raise _bad(source, f"bad sha256 {str(sha)[:80]!r} for {path!r}")
        else:
            sha = sha.lower()
        lfs = e.get("IsLFS")
        if lfs is None:  # not published: assume what .gitattributes does for weights and big files
            lfs = size >= LFS_GUESS_SIZE or path.endswith(LFS_GUESS_SUFFIXES)
        if not isinstance(lfs, bool):
            raise _bad(source, f"bad IsLFS {str(lfs)[:20]!r} for {path!r}")
        rev = e.get("Revision")
        if rev not in (None, ""):
            if not isinstance(rev, str) or not is_commit_id(rev.lower()):
                raise _bad(source, f"bad commit id {str(rev)[:80]!r} for {path!r}")
            when = _timestamp(e.get("CommittedDate"))
            if when is None:
                raise _bad(source, f"bad CommittedDate {str(e.get('CommittedDate'))[:40]!r} for {path!r}")
            key = (when, rev.lower())
            newest = key if newest is None or key > newest else newest
        files.append(RemoteFile(path=path, size=size, sha256=sha, git_oid=None, lfs=lfs))
    check_collisions(f.path for f in files)
    return files, newest[1] if newest else None


# -- the adapter ----------------------------------------------------------------


def ms_http_error(source: str, resp: httpx.Response, what: str) -> SourceError:
    """Map a ModelScope HTTP failure to a user-facing error (404 -> exit 4, not found)."""
    if resp.status_code in (401, 403):
        return SourceError(f"source {source!r}: access to {what} denied (HTTP {resp.status_code})",
                           hint="the repo may be private: set the variable named by token_env "
                                "(MODELSCOPE_API_TOKEN by default) to a ModelScope access token",
                           reference=Ref.ACCESS_DENIED)
    if resp.status_code == 404:
        return NotFoundError(f"source {source!r}: not found: {what}",
                             hint="check the model id (model_map in mirrors.yaml) and the revision "
                                  "(ModelScope's default branch is master)")
    return SourceError(f"source {source!r}: HTTP {resp.status_code} for {what}",
                       hint="the source may be down; retry later or pick another --source",
                       reference=Ref.SOURCE_HTTP_ERROR)


class ModelScopeSource:
    """The :class:`~qwen_fetch.sources.base.Source` interface over ModelScope's API."""

    def __init__(self, config: SourceConfig, *, http: Pools | None = None, timeout: float = 30.0,
                 deadlines: Deadlines | None = None) -> None:
        from qwen_fetch.sources.hubhttp import HubConnection

        self.config = config
        self.deadlines = deadlines
        self._hub = HubConnection(config, http, timeout=timeout, session_cookie=SESSION_COOKIE)
        self._names: dict[tuple[str, str], str] = {}  # (repo_id, commit) -> revision name, for locate()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    def default_revision(self) -> str:
        return KIND.default_revision(self.config)

    def reach(self) -> Reachability:
        return self._hub.reach()

    def close(self) -> None:
        self._hub.close()

    def _url(self, repo_id: str, tail: str) -> str:
        org_name = "/".join(quote(p, safe="") for p in self.config.map_model(repo_id).split("/"))
        return f"{self.config.endpoint}{API_PREFIX}/{org_name}/{tail}".rstrip("/")

    def _get(self, url: str, what: str, params: Mapping[str, str] | None = None) -> Any:
        body, resp = self._hub.get_json(url, params=dict(params) if params else None, deadlines=self.deadlines)
        if body is None:
            raise ms_http_error(self.name, resp, what)
        return unwrap(body, self.name, what)

    def revisions(self, repo_id: str) -> Revisions:
        """Branches and tags of ``repo_id`` (after ``model_map``)."""
        data = self._get(self._url(repo_id, "revisions"), f"model {repo_id}")
        return parse_revisions(data, self.name)

    def resolve(self, repo_id: str, revision: str) -> RepoListing:
        """List ``repo_id`` at a branch or tag (a commit-looking revision is passed through as is)."""
        revs = self.revisions(repo_id)
        if revision not in revs and not is_commit_id(revision):
            raise NotFoundError(f"source {self.name!r}: revision {revision!r} not found for {repo_id}",
                                hint=f"{revs.describe()} (ModelScope's default branch is master, not main)")
        what = f"{repo_id}@{revision} file listing"
        data = self._get(self._url(repo_id, "repo/files"), what, {"Revision": revision, "Recursive": "True"})
        files, commit = parse_files(data, self.name)
        if commit is None:
            raise _bad(self.name, f"{what} names no commit (no file carries a Revision)")
        with self._lock:
            self._names[(repo_id, commit)] = revision
        return RepoListing(source=self.name, repo_id=repo_id, revision=revision, commit=commit,
                           files=tuple(sorted(files, key=lambda f: f.path)))

    def locate(self, repo_id: str, commit: str, path: SafeRelPath) -> FileLocation:
        """The download URL of ``path``.  ``commit`` is a commit :meth:`resolve` returned (mapped back
        to its branch/tag name, since ModelScope addresses files by name) or a branch/tag name."""
        with self._lock:
            revision = self._names.get((repo_id, commit), commit)
        url = f"{self._url(repo_id, 'repo')}?Revision={quote_plus(revision)}&FilePath={quote_plus(path)}"
        return self._hub.location(url)


TOKEN_ENV = "MODELSCOPE_API_TOKEN"  # what the official client reads
OPTIONAL_FILES = ("configuration.json", "README.md", ".gitattributes")  # files HF hubs do not publish


class ModelScopeKind:
    """ModelScope: its own commits, addressed by branch/tag name, default branch ``master``."""

    name = "modelscope"
    keys: frozenset[str] = frozenset()
    needs_network = True
    stores = False
    # Its listing's commit is derived from the files of a branch: another commit means the branch moved.
    commit_mismatch_hint = "the pinned branch moved on this hub: review and run with --update"

    def configure(self, raw: Mapping[str, Any], config: SourceConfig, fail: Fail) -> SourceConfig:
        return replace(config, endpoint=http_endpoint(config.endpoint, fail), revision=config.revision or "master",
                       optional_files=config.optional_files if "optional_files" in raw else OPTIONAL_FILES,
                       token_env=config.token_env if "token_env" in raw else TOKEN_ENV)

    def default_revision(self, config: SourceConfig) -> str:
        return config.revision or "master"

    def same_family(self, other_kind: str | None) -> bool:
        return other_kind == self.name

    def revision_for(self, config: SourceConfig, ctx: RevisionContext) -> str:
        return hub_revision(config, ctx, default=self.default_revision(config), by_name=True,
                            same_family=self.same_family)

    def open_store(self, config: SourceConfig, *, s3_endpoint_url: str | None = None) -> None:
        return None

    def open(self, config: SourceConfig, *, http: Pools | None, timeout: float,
             deadlines: Deadlines | None) -> ModelScopeSource:
        return ModelScopeSource(config, http=http, timeout=timeout, deadlines=deadlines)


KIND = ModelScopeKind()
