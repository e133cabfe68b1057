"""A loopback HTTP server that speaks ModelScope's ``/api/v1`` protocol.

It serves the same :class:`~tests.support.repo.RepoStore` as the HF test
hub, the way ModelScope publishes the same models:

* the store's ``main`` ref is the ``master`` branch (other refs keep their
  names; those named in ``tags`` are listed as tags);
* every revision gains ModelScope's extra files (``configuration.json`` by
  default) and may carry different bytes for some files (``extra_files`` adds
  or replaces, e.g. a different ``README.md``);
* commit ids are ModelScope's own (not the store's HF-style commit): store
  files carry a "base" commit, the extra files a later "head" commit;
* downloads answer ``Range`` and can 302 to an "object storage" route, on this
  server or on another one (``MSFaults.redirect_base``).

The real ``modelscope`` client downloads from it (``MODELSCOPE_DOMAIN=http://
127.0.0.1:PORT``), which is the test that it is faithful.  Every request is
logged with its headers.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, quote_plus, unquote, urlsplit

from tests.support.repo import RepoStore, is_lfs

DEFAULT_EXTRA_FILES: dict[str, bytes] = {
    "configuration.json": b'{"framework": "pytorch", "task": "image-text-to-text", "allow_remote": true}\n',
}
BASE_DATE = 1_750_000_000
NOT_FOUND_CODE = 10010205001

_MODEL_RE = re.compile(r"^/api/v1/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<op>revisions|repo/files|repo))?/?$")
_OSS_RE = re.compile(r"^/oss/(?P<repo>[^/]+/[^/]+)/(?P<rev>[^/]+)/(?P<path>.+)$")


@dataclass
class MSFaults:
    """Misbehaviour.  Keys: a file path, ``"api"`` (JSON calls), ``"/"`` (the home page) or ``"*"`` (all)."""

    down: bool = False  # close every connection without an answer
    statuses: dict[str, list[int]] = field(default_factory=dict)  # answer these statuses first (consumed)
    corrupt: dict[str, int] = field(default_factory=dict)  # flip the byte at this offset of a file
    listing: dict[str, Any] = field(default_factory=dict)  # served repo id -> raw repo/files body
    redirect_base: str | None = None  # 302 file downloads to <base>/oss/...
    ignore_range: bool = False


@dataclass(frozen=True)
class MSBlob:
    path: str
    size: int
    sha256: str
    lfs: bool
    commit: str  # ModelScope commit id of the last change
    date: int
    disk: Path | None = None
    data: bytes | None = None

    def open(self) -> BinaryIO:
        return open(self.disk, "rb") if self.disk is not None else BytesIO(self.data or b"")


def ms_commit(store_commit: str, part: str) -> str:
    """ModelScope's commit id for a store commit (``part``: ``base`` or ``head``)."""
    return hashlib.sha1(f"modelscope-{part}\0{store_commit}".encode()).hexdigest()


class ModelScopeHubServer:
    """``with ModelScopeHubServer(store) as ms: ms.url``; request log in ``ms.log``."""

    def __init__(self, store: RepoStore, faults: MSFaults | None = None, *,
                 extra_files: Mapping[str, bytes] | None = None, tags: Iterable[str] = (),
                 repos: Mapping[str, str] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        """``repos`` maps served ids to store ids (e.g. ``qwen/X`` -> ``Qwen/X``); default: the store's ids."""
        self.store = store
        self.faults = faults or MSFaults()
        self.extra_files = dict(DEFAULT_EXTRA_FILES if extra_files is None else extra_files)
        self.tags = set(tags)
        self.repos = dict(repos) if repos is not None else None
        self.lock = threading.Lock()
        self.log: list[dict[str, Any]] = []
        self.bytes_sent: dict[str, int] = {}
        self.httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ModelScopeHubServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ModelScopeHubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the ModelScope view of the store --------------------------------------
    def store_id(self, served: str) -> str | None:
        sid = self.repos.get(served) if self.repos is not None else served
        return sid if sid is not None and self.store.has_repo(sid) else None

    def revisions(self, sid: str) -> tuple[list[str], list[str]]:
        names = sorted("master" if r == "main" else r for r in self.store.refs(sid))
        return [n for n in names if n not in self.tags], [n for n in names if n in self.tags]

    def resolve(self, sid: str, revision: str) -> str | None:
        """Branch/tag name, or a ModelScope commit id, -> store commit."""
        refs = self.store.refs(sid)
        if revision == "main":  # published as master
            return None
        name = "main" if revision == "master" else revision
        if name in refs:
            return refs[name]
        for commit in set(refs.values()):
            if revision in (ms_commit(commit, "base"), ms_commit(commit, "head")):
                return commit
        return None

    def blobs(self, sid: str, commit: str) -> dict[str, MSBlob]:
        base, head = ms_commit(commit, "base"), ms_commit(commit, "head")
        out = {sf.path: MSBlob(sf.path, sf.size, sf.sha256, sf.lfs, base, BASE_DATE, disk=sf.disk)
               for sf in self.store.files(sid, commit)}
        for path, data in self.extra_files.items():
            out[path] = MSBlob(path, len(data), hashlib.sha256(data).hexdigest(), is_lfs(path, len(data)),
                               head, BASE_DATE + 100, data=data)
        return out

    def listing(self, sid: str, commit: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for b in sorted(self.blobs(sid, commit).values(), key=lambda b: b.path):
            parts = b.path.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
            entries.append({"Name": parts[-1], "Path": b.path, "Type": "blob", "Size": b.size, "Sha256": b.sha256,
                            "Revision": b.commit, "CommittedDate": b.date, "IsLFS": b.lfs, "Mode": "33188",
                            "Id": hashlib.sha1(b.sha256.encode()).hexdigest(), "CommitMessage": "upload"})
        for d in sorted(dirs):
            entries.append({"Name": d.rsplit("/", 1)[-1], "Path": d, "Type": "tree", "Size": 0, "Sha256": "",
                            "Revision": ms_commit(commit, "base"), "CommittedDate": BASE_DATE, "IsLFS": False})
        return entries

    def requests_to(self, route: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.log if route in r["path"]]


def envelope(data: Any) -> dict[str, Any]:
    return {"Code": 200, "Data": data, "Message": "success", "RequestId": "test", "Success": True}


def _make_handler(ms: ModelScopeHubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "qwen-fetch-test-modelscope"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send_json(self, obj: Any, status: int = 200) -> None:
            body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _fail(self, status: int, msg: str, code: int | None = None) -> None:
            self._send_json({"Code": code or status, "Message": msg, "RequestId": "test", "Success": False}, status)

        def _status_fault(self, key: str) -> bool:
            with ms.lock:
                queue = ms.faults.statuses.get(key) or ms.faults.statuses.get("*")
                status = queue.pop(0) if queue else None
            if status is None:
                return False
            self._fail(status, "injected")
            return True

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            with ms.lock:
                ms.log.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items())})
            if ms.faults.down:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            try:
                if path == "/" and self._status_fault("/"):
                    return
                if path == "/api/v1/repos/internalAccelerationInfo":
                    self._send_json(envelope({"InternalRegionQueryAddress": ""}))
                elif m := _MODEL_RE.match(path):
                    self._model(m.group("repo"), m.group("op"), query)
                elif m := _OSS_RE.match(path):
                    self._file(m.group("repo"), m.group("rev"), m.group("path"), oss=True)
                else:
                    self._fail(404, "no such route", NOT_FOUND_CODE)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _model(self, repo: str, op: str | None, query: dict[str, str]) -> None:
            sid = ms.store_id(repo)
            if sid is None:
                return self._fail(404, f"model {repo} does not exist", NOT_FOUND_CODE)
            if op == "repo":
                return self._file(repo, query.get("Revision", "master"), query.get("FilePath", ""), oss=False)
            if self._status_fault("api"):
                return None
            if op == "revisions":
                branches, tags = ms.revisions(sid)
                rmap = {"Branches": [{"Revision": b, "CreatedAt": BASE_DATE} for b in branches],
                        "Tags": [{"Revision": t, "CreatedAt": BASE_DATE} for t in tags]}
                return self._send_json(envelope({"RevisionMap": rmap}))
            revision = query.get("Revision", "master")
            commit = ms.resolve(sid, revision)
            if commit is None:
                return self._fail(404, f"revision {revision} does not exist", NOT_FOUND_CODE)
            if op == "repo/files":
                if repo in ms.faults.listing:
                    return self._send_json(ms.faults.listing[repo])
                return self._send_json(envelope({"Files": ms.listing(sid, commit), "IsVisual": 0}))
            return self._send_json(envelope({"Id": 1, "Name": repo.split("/")[1], "Path": repo.split("/")[0],
                                             "Revision": revision, "ModelType": ["qwen3_vl"]}))

        def _file(self, repo: str, revision: str, fpath: str, *, oss: bool) -> None:
            sid = ms.store_id(repo)
            commit = ms.resolve(sid, revision) if sid else None
            blob = ms.blobs(sid, commit).get(fpath) if sid and commit else None
            if blob is None:
                return self._fail(404, f"file {fpath} does not exist", NOT_FOUND_CODE)
            if self._status_fault(fpath):
                return None
            if not oss and ms.faults.redirect_base:
                self.send_response(302)
                self.send_header("Location", f"{ms.faults.redirect_base}/oss/{repo}/{quote_plus(revision)}/"
                                             f"{quote(fpath)}?Expires=1&Signature=test")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self._serve(blob)

        def _serve(self, blob: MSBlob) -> None:
            size = blob.size
            start, end, status = 0, size - 1, 200
            rng = self.headers.get("Range")
            if rng and not ms.faults.ignore_range:
                m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
                if not m or m.group(1) == m.group(2) == "":
                    return self._fail(416, "bad range")
                if m.group(1) == "":
                    start = max(size - int(m.group(2)), 0)
                else:
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                status = 206
            length = max(end - start + 1, 0)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(length))
            self.send_header("ETag", f'"{hashlib.md5(blob.sha256.encode()).hexdigest().upper()}"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if self.command == "HEAD" or length == 0:
                return None
            corrupt = ms.faults.corrupt.get(blob.path, ms.faults.corrupt.get("*"))
            with blob.open() as fh:
                fh.seek(start)
                pos = start
                while pos <= end:
                    chunk = bytearray(fh.read(min(256 * 1024, end - pos + 1)))
                    if not chunk:
                        break
                    if corrupt is not None and pos <= corrupt < pos + len(chunk):
                        chunk[corrupt - pos] ^= 0xFF
                    self.wfile.write(chunk)
                    pos += len(chunk)
            with ms.lock:
                ms.bytes_sent[blob.path] = ms.bytes_sent.get(blob.path, 0) + pos - start
            return None

    return Handler
