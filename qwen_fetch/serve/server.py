"""``qwen-fetch serve``: a read-only, HF-compatible endpoint over a local HF cache.

Speaks the subset of the Hub protocol that downloaders use (see
``reference/PROTOCOLS.md``), so stock clients work with ``HF_ENDPOINT`` pointed
here: ``hf download``, ``huggingface_hub.snapshot_download``, ``transformers``,
and other qwen-fetch nodes (``kind: hf``).

    GET  /api/models/{org}/{name}[/revision/{rev}][?blobs=true][&expand=...]
    GET  /api/models/{org}/{name}/tree/{rev}[/{path}][?recursive=true]
    HEAD /{org}/{name}/resolve/{rev}/{path}    (ETag, X-Repo-Commit, X-Linked-Etag/Size)
    GET  /{org}/{name}/resolve/{rev}/{path}    (Range / If-Range -> 206 / 416; body via sendfile)
    GET  /healthz

No ``X-Xet-Hash`` is ever sent, so ``huggingface_hub`` always takes the plain
``resolve`` path.  What may be served is decided by
:class:`~qwen_fetch.serve.catalog.Catalog` (``--lock``: pinned, verified
snapshots only); this module is only HTTP.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from qwen_fetch import __version__
from qwen_fetch.core.byteranges import select_span
from qwen_fetch.core.lockfile import Lock
from qwen_fetch.serve.catalog import Catalog, Refusal, ServedFile, Snapshot

IMMUTABLE = "public, max-age=31536000, immutable"  # a commit-addressed URL never changes
SENDFILE_CHUNK = 64 * 1024 * 1024


# ---------------------------------------------------------------------------
# pure: JSON documents


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def repo_info_doc(snap: Snapshot, *, blobs: bool, expand: list[str], modified: float) -> dict[str, Any]:
    """``/api/models/{repo}/revision/{rev}``: what ``HfApi.model_info`` parses."""
    siblings: list[dict[str, Any]] = []
    for f in snap.files:
        s: dict[str, Any] = {"rfilename": f.path}
        if blobs:
            s.update({"size": f.size, "blobId": f.git_oid})
            if f.lfs:
                s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        siblings.append(s)
    doc: dict[str, Any] = {
        "_id": hashlib.sha1(snap.repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
        "id": snap.repo_id, "modelId": snap.repo_id, "author": snap.repo_id.split("/")[0],
        "sha": snap.commit, "lastModified": _iso(modified), "private": False, "gated": False,
        "disabled": False, "tags": [], "downloads": 0, "likes": 0, "siblings": siblings,
        "usedStorage": sum(f.size for f in snap.files),
    }
    if expand:  # the Hub returns only the requested properties (plus the ids)
        doc = {k: v for k, v in doc.items() if k in expand or k in ("_id", "id")}
    return doc


def tree_doc(snap: Snapshot, sub: str, recursive: bool) -> list[dict[str, Any]] | None:
    """``/api/models/{repo}/tree/{rev}/{sub}``; ``None`` when ``sub`` is not a directory."""
    prefix = sub.strip("/")
    base = prefix + "/" if prefix else ""
    entries: dict[str, dict[str, Any]] = {}
    dirs: dict[str, list[str]] = {}
    for f in snap.files:
        if not f.path.startswith(base):
            continue
        rest = f.path[len(base):]
        parts = rest.split("/")
        for i in range(1, len(parts)):
            d = base + "/".join(parts[:i])
            dirs.setdefault(d, []).append(f.git_oid)
        if not recursive and len(parts) > 1:
            continue
        e: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
        if f.lfs:
            e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        entries[f.path] = e
    if prefix and not entries and not dirs:
        return None
    for d, oids in dirs.items():
        if recursive or "/" not in d[len(base):]:
            tree_id = hashlib.sha1("\n".join(sorted(oids)).encode(), usedforsecurity=False).hexdigest()
            entries[d] = {"type": "directory", "oid": tree_id, "size": 0, "path": d}
    return [entries[k] for k in sorted(entries)]


def resolve_headers(f: ServedFile, commit: str, revision: str) -> dict[str, str]:
    h = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{f.etag}"',
        "X-Repo-Commit": commit,
        "Content-Type": "application/octet-stream",
        "Cache-Control": IMMUTABLE if revision == commit else "no-cache",
    }
    if f.lfs:
        h["X-Linked-Etag"] = f'"{f.etag}"'
        h["X-Linked-Size"] = str(f.size)
    return h


# ---------------------------------------------------------------------------
# routing: split the raw path first, then unquote each part (a revision may hold %2F)


def route(raw_path: str) -> tuple[str, dict[str, str]] | None:
    segs = raw_path.split("/")[1:]
    if segs == ["healthz"]:
        return "health", {}
    if len(segs) >= 4 and segs[0] == "api" and segs[1] in ("datasets", "spaces"):
        return "other-type", {"repo": unquote(segs[2]) + "/" + unquote(segs[3])}
    if len(segs) >= 4 and segs[:2] == ["api", "models"]:
        repo = unquote(segs[2]) + "/" + unquote(segs[3])
        tail = segs[4:]
        if not tail:
            return "info", {"repo": repo, "rev": "main"}
        if tail[0] == "revision" and len(tail) >= 2:
            return "info", {"repo": repo, "rev": unquote("/".join(tail[1:]))}
        if tail[0] == "tree" and len(tail) >= 2:
            return "tree", {"repo": repo, "rev": unquote(tail[1]), "path": unquote("/".join(tail[2:]))}
        return None
    if len(segs) >= 5 and segs[2] == "resolve":
        return "resolve", {"repo": unquote(segs[0]) + "/" + unquote(segs[1]), "rev": unquote(segs[3]),
                           "path": unquote("/".join(segs[4:]))}
    return None


# ---------------------------------------------------------------------------
# the server


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes_sent = 0
        self.file_bytes = 0  # the part of bytes_sent that was file contents (not JSON, not errors)
        self.by_status: dict[int, int] = {}

    def add(self, status: int, sent: int, *, file: bool = False) -> None:
        with self.lock:
            self.requests += 1
            self.bytes_sent += sent
            if file:
                self.file_bytes += sent
            self.by_status[status] = self.by_status.get(status, 0) + 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-body (cancelled download, range stolen by another worker) is routine.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class ServeServer:
    """``with ServeServer(cache_dir, lock) as s: s.url`` (threaded; one thread per connection)."""

    def __init__(self, cache_dir: Path, lock: Lock | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 access_log: Callable[[str], None] | None = None) -> None:
        self.catalog = Catalog(cache_dir, lock)
        self.stats = Stats()
        self.access_log = access_log
        self.httpd = _Server((host, port), _make_handler(self))
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ServeServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ServeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _make_handler(app: ServeServer) -> type[BaseHTTPRequestHandler]:
    catalog = app.catalog

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"qwen-fetch-serve/{__version__}"
        timeout = 120  # an idle keep-alive connection releases its thread

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _done(self, status: int, sent: int, *, file: bool = False) -> None:
            app.stats.add(status, sent, file=file)
            if app.access_log is not None:
                app.access_log(f'{self.client_address[0]} "{self.command} {self.path}" {status} {sent}')

        def _head(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()

        def _json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(obj, separators=(",", ":")).encode()
            self._head(status, {"Content-Type": "application/json", "Content-Length": str(len(body)),
                                **(headers or {})})
            if self.command != "HEAD":
                self.wfile.write(body)
            self._done(status, len(body) if self.command != "HEAD" else 0)

        def _refuse(self, r: Refusal) -> None:
            # The message may quote a path from the URL: printable ASCII only (no header injection via %0d%0a).
            safe = "".join(c if " " <= c <= "~" else "?" for c in r.message[:200])
            headers = {"X-Error-Code": r.code, "X-Error-Message": safe}
            if r.commit:
                headers["X-Repo-Commit"] = r.commit  # huggingface_hub caches .no_exist with it
            self._json({"error": r.message}, 404, headers)

        def do_POST(self) -> None:
            self._json({"error": "this endpoint is read-only"}, 405, {"Allow": "GET, HEAD"})

        do_PUT = do_DELETE = do_PATCH = do_POST

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            found = route(parts.path)
            try:
                if found is None:
                    return self._json({"error": "no such route"}, 404)
                kind, p = found
                if kind == "health":
                    return self._json({"ok": True, "locked": catalog.locked})
                if kind == "other-type":
                    raise Refusal("RepoNotFound", f"only model repos are served here ({p['repo']})")
                commit = catalog.resolve(p["repo"], p["rev"])
                snap = catalog.snapshot(p["repo"], commit)
                if kind == "info":
                    expand = [e for v in query.get("expand", []) for e in v.split(",") if e]
                    blobs = query.get("blobs", ["false"])[0].lower() in ("true", "1")
                    mtime = catalog.repo(p["repo"]).snapshot_dir(commit).stat().st_mtime
                    return self._json(repo_info_doc(snap, blobs=blobs, expand=expand, modified=mtime))
                if kind == "tree":
                    recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
                    doc = tree_doc(snap, p["path"], recursive)
                    if doc is None:
                        raise Refusal("EntryNotFound", f"{p['path']} is not a directory at {commit[:12]}", commit)
                    return self._json(doc)
                f = snap.file(p["path"])
                if f is None:
                    raise Refusal("EntryNotFound", f"{p['path']} not found at {commit[:12]}", commit)
                self._send_file(catalog.fresh(snap, f), commit, p["rev"])
            except Refusal as r:
                self._refuse(r)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _send_file(self, f: ServedFile, commit: str, revision: str) -> None:
            headers = resolve_headers(f, commit, revision)
            span = select_span(self.headers.get("Range"), f.size, if_range=self.headers.get("If-Range"), etag=f.etag)
            cr = span.content_range()
            if cr:
                headers["Content-Range"] = cr
            headers["Content-Length"] = str(span.length)
            if span.status == 416:
                return self._json({"error": "range not satisfiable"}, 416, {"Content-Range": cr or ""})
            self._head(span.status, headers)
            if self.command == "HEAD" or span.length == 0:
                return self._done(span.status, 0)
            sent = 0
            with open(f.disk, "rb") as fh:
                self.wfile.flush()
                try:
                    while sent < span.length:  # socket.sendfile: zero-copy os.sendfile on Linux
                        n = self.connection.sendfile(fh, span.start + sent, min(SENDFILE_CHUNK, span.length - sent))
                        if not n:
                            break
                        sent += n
                finally:
                    self._done(span.status, sent, file=True)
            if sent < span.length:  # the blob shrank under us: never pad, drop the connection
                self.close_connection = True

    return Handler
