"""A loopback HTTP server that speaks the Hugging Face hub protocol.

Used by the tests, the benchmarks and ``qwen-fetch demo``.  It serves a
:class:`~tests.support.repo.RepoStore` and can be told to misbehave
(:class:`Faults`): reset or stall connections, ignore ``Range``, change an ETag,
answer 503/429, serve corrupt bytes, lie about lengths, or serve a hostile
listing.  Every request is logged (headers included) for assertions.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.support.repo import RepoStore, StoredFile

_API_RE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<op>revision|tree)/(?P<rest>.+)$")
_RESOLVE_RE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN_RE = re.compile(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<commit>[0-9a-f]+)/(?P<path>.+)$")


@dataclass
class Faults:
    """Misbehaviour, keyed by file path (``"*"`` = every file).  Counters are consumed per request."""

    reset_after: dict[str, int] = field(default_factory=dict)  # close the socket after N body bytes
    reset_times: dict[str, int] = field(default_factory=dict)  # ... for this many responses (default: forever)
    byte_budget: dict[str, int] = field(default_factory=dict)  # send at most N body bytes of a file, ever; then reset
    stall_after: dict[str, int] = field(default_factory=dict)  # stop sending after N bytes ...
    stall_seconds: float = 30.0  # ... for this long
    stall_times: dict[str, int] = field(default_factory=dict)
    ignore_range: set[str] = field(default_factory=set)  # answer 200 with the whole file
    corrupt: dict[str, int] = field(default_factory=dict)  # flip the byte at this offset
    statuses: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)  # answer these first
    etag_after: dict[str, tuple[int, str]] = field(default_factory=dict)  # after N GETs, ETag becomes X
    content_length: dict[str, int] = field(default_factory=dict)  # advertise this length
    extra_body: dict[str, bytes] = field(default_factory=dict)  # send more than advertised
    rate: int | None = None  # bytes/s per connection
    # Send bodies one byte at a time, this many seconds apart ("api": JSON answers; a path or "*": files).
    drip: dict[str, float] = field(default_factory=dict)
    max_concurrent: int | None = None  # answer 503 to file GETs beyond this many at once (nginx limit_conn)
    gates: dict[str, threading.Event] = field(default_factory=dict)  # hold a file's GETs until the event is set ...
    gate_timeout: float = 20.0  # ... or this many seconds have passed (then ``gate_timeouts`` counts it)
    gate_timeouts: int = 0
    listing: dict[str, Any] = field(default_factory=dict)  # repo id -> raw tree JSON (or bytes)
    redirect_base: str | None = None  # 302 file downloads to <base>/cdn/...
    down: bool = False  # refuse every request with a closed socket
    page_size: int | None = None  # paginate the tree
    page_origin: str | None = None  # absolute base for Link: next (simulate an unrewritten mirror)

    def _take(self, table: dict[str, int], times: dict[str, int], path: str) -> int | None:
        key = path if path in table else "*" if "*" in table else None
        if key is None:
            return None
        if key in times:
            if times[key] <= 0:
                return None
            times[key] -= 1
        return table[key]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        # A client that drops a connection mid-body (stolen range, stall, cancel) is routine here.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class HubServer:
    """``with HubServer(store) as hub: hub.url``; thread-safe request log in ``hub.log``."""

    def __init__(self, store: RepoStore, faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: Any = None) -> None:
        self.store = store
        self.faults = faults or Faults()
        self.lock = threading.Lock()
        self.log: list[dict[str, Any]] = []
        self.bytes_sent: dict[str, int] = {}
        self.get_counts: dict[str, int] = {}
        self.in_flight = 0  # file GETs being answered now (for Faults.max_concurrent)
        self.refused = 0  # file GETs answered 503 by Faults.max_concurrent
        self.in_flight = 0  # requests being answered right now
        handler = _make_handler(self)
        self.httpd = _QuietServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 128
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if ssl_context is not None else "http"
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "localhost" if self.scheme == "https" else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def total_bytes(self) -> int:
        with self.lock:
            return sum(self.bytes_sent.values())

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being answered (e.g. the writes to a killed client have failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.in_flight == 0:
                    return True
            time.sleep(0.02)
        return False

    def reset_stats(self) -> None:
        with self.lock:
            self.log.clear()
            self.bytes_sent.clear()
            self.get_counts.clear()


def _make_handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "qwen-fetch-testhub"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        # -- plumbing -------------------------------------------------------
        def _record(self) -> None:
            with hub.lock:
                hub.log.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                                "port": self.client_address[1]})

        def _send_json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
            body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                drip = hub.faults.drip.get("api") if urlsplit(self.path).path.startswith("/api/") else None
                if drip is not None:
                    self._drip(body, drip)
                else:
                    self.wfile.write(body)

        def _drip(self, data: bytes, seconds: float) -> None:
            """Send ``data`` a byte at a time, ``seconds`` apart (a source that drips)."""
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(seconds)

        def _error(self, status: int, code: str, msg: str = "") -> None:
            self._send_json({"error": msg or code}, status, {"X-Error-Code": code})

        def _status_fault(self, path: str) -> bool:
            f = hub.faults
            with hub.lock:
                key = path if f.statuses.get(path) else "*" if f.statuses.get("*") else None
                if key is None:
                    return False
                status, headers = f.statuses[key].pop(0)
            self._send_json({"error": "injected"}, status, headers)
            return True

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            with hub.lock:
                hub.in_flight += 1
            try:
                self._get()
            finally:
                with hub.lock:
                    hub.in_flight -= 1

        def _get(self) -> None:
            self._record()
            if hub.faults.down:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            query = parse_qs(parts.query)
            try:
                # Matched before unquoting, as the Hub does: a revision may hold an escaped '/' (refs%2Fpr%2F1).
                if m := _API_RE.match(parts.path):
                    self._api(unquote(m.group("repo")), m.group("op"), m.group("rest"), query)
                elif m := _RESOLVE_RE.match(path):
                    self._resolve(m.group("repo"), m.group("rev"), m.group("path"))
                elif m := _CDN_RE.match(path):
                    sf = hub.store.file(m.group("repo"), m.group("commit"), m.group("path"))
                    if sf is None:
                        self._error(404, "EntryNotFound")
                    else:
                        self._serve_file(sf, m.group("commit"))
                else:
                    self._error(404, "RepoNotFound", "no such route")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        # -- API ------------------------------------------------------------
        def _api(self, repo: str, op: str, rest: str, query: dict[str, list[str]]) -> None:
            if not hub.store.has_repo(repo):
                return self._error(404, "RepoNotFound", f"{repo} not found")
            if self._status_fault("api"):
                return None
            rev, _, sub = rest.partition("/")
            rev, sub = unquote(rev), unquote(sub)
            commit = hub.store.resolve(repo, rev)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"{rev} not found")
            files = hub.store.files(repo, commit)
            if op == "revision":
                blobs = query.get("blobs", ["false"])[0] == "true"
                siblings = []
                for sf in files:
                    s: dict[str, Any] = {"rfilename": sf.path}
                    if blobs:
                        s.update({"size": sf.size, "blobId": sf.git_oid})
                        if sf.lfs:
                            s["lfs"] = {"sha256": sf.sha256, "size": sf.size, "pointerSize": 134}
                    siblings.append(s)
                return self._send_json({"id": repo, "modelId": repo, "sha": commit, "siblings": siblings,
                                        "private": False, "gated": False})
            if repo in hub.faults.listing:
                raw = hub.faults.listing[repo]
                return self._send_json(raw if isinstance(raw, bytes) else raw)
            entries = _tree_entries(files, sub)
            start = int(query.get("cursor", ["0"])[0])
            headers: dict[str, str] = {}
            size = hub.faults.page_size
            if size:
                page = entries[start:start + size]
                if start + size < len(entries):
                    base = hub.faults.page_origin or hub.url
                    nxt = f"{base}/api/models/{repo}/tree/{rev}?recursive=true&expand=false&cursor={start + size}"
                    headers["Link"] = f'<{nxt}>; rel="next"'
                entries = page
            return self._send_json(entries, 200, headers)

        # -- files ----------------------------------------------------------
        def _resolve(self, repo: str, rev: str, path: str) -> None:
            if not hub.store.has_repo(repo):
                return self._error(404, "RepoNotFound", f"{repo} not found")
            commit = hub.store.resolve(repo, rev)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"{rev} not found")
            sf = hub.store.file(repo, commit, path)
            if sf is None:
                return self._error(404, "EntryNotFound", f"{path} not found")
            if self._status_fault(path):
                return None
            if hub.faults.redirect_base and self.command == "GET":
                loc = f"{hub.faults.redirect_base}/cdn/{repo}/{commit}/{quote(path)}"
                self.send_response(302)
                self.send_header("Location", loc)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{sf.etag}"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self._serve_file(sf, commit)

        def _serve_file(self, sf: StoredFile, commit: str) -> None:
            cap = hub.faults.max_concurrent
            if cap is None or self.command != "GET":
                return self._serve_file_body(sf, commit)
            with hub.lock:
                refuse = hub.in_flight >= cap
                if refuse:
                    hub.refused += 1
                else:
                    hub.in_flight += 1
            if refuse:
                self._send_json({"error": "too many connections"}, 503)
                return None
            try:
                return self._serve_file_body(sf, commit)
            finally:
                with hub.lock:
                    hub.in_flight -= 1

        def _serve_file_body(self, sf: StoredFile, commit: str) -> None:
            f = hub.faults
            p = sf.path
            gate = f.gates.get(p)
            if gate is not None and self.command == "GET" and not gate.wait(f.gate_timeout):
                with hub.lock:
                    f.gate_timeouts += 1
            with hub.lock:
                if self.command == "GET":
                    hub.get_counts[p] = hub.get_counts.get(p, 0) + 1
                n_get = hub.get_counts.get(p, 0)
                etag = sf.etag
                if p in f.etag_after and n_get > f.etag_after[p][0]:
                    etag = f.etag_after[p][1]
                reset = f._take(f.reset_after, f.reset_times, p) if self.command == "GET" else None
                budget = f.byte_budget.get(p, f.byte_budget.get("*"))
                if budget is not None and self.command == "GET":
                    left = max(0, budget - hub.bytes_sent.get(p, 0))
                    reset = left if reset is None else min(reset, left)
                stall = f._take(f.stall_after, f.stall_times, p) if self.command == "GET" else None
                corrupt = f.corrupt.get(p, f.corrupt.get("*"))
                advertised = f.content_length.get(p)
                extra = f.extra_body.get(p, b"")
            size = sf.size
            start, end = 0, size - 1
            status = 200
            rng = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if rng and p not in f.ignore_range and "*" not in f.ignore_range and \
                    (if_range is None or if_range.strip('"') == etag):
                m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
                if not m or (m.group(1) == "" and m.group(2) == ""):
                    return self._error(416, "RangeNotSatisfiable")
                if m.group(1) == "":
                    start, end = max(size - int(m.group(2)), 0), size - 1
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
            length = end - start + 1
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(advertised if advertised is not None else length + len(extra)))
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", commit)
            if sf.lfs:
                self.send_header("X-Linked-Etag", f'"{etag}"')
                self.send_header("X-Linked-Size", str(size))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if self.command == "HEAD":
                return None
            sent = 0
            drip = f.drip.get(p, f.drip.get("*"))
            if drip is not None:
                with open(sf.disk, "rb") as fh:
                    fh.seek(start)
                    return self._drip(fh.read(length), drip)
            plain = reset is None and stall is None and corrupt is None and not f.rate and not extra
            with open(sf.disk, "rb") as fh:
                if plain:
                    self.wfile.flush()
                    sent = self.connection.sendfile(fh, start, length)
                    with hub.lock:
                        hub.bytes_sent[p] = hub.bytes_sent.get(p, 0) + sent
                    return None
                fh.seek(start)
                pos = start
                t0 = time.monotonic()
                while pos <= end:
                    want = min(64 * 1024, end - pos + 1)
                    if reset is not None:
                        want = min(want, max(reset - sent, 0))
                    if stall is not None:
                        want = min(want, max(stall - sent, 0))
                    if want == 0:
                        if stall is not None and sent >= stall:
                            time.sleep(f.stall_seconds)
                            stall = None
                            continue
                        break
                    chunk = bytearray(fh.read(want))
                    if not chunk:
                        break
                    if corrupt is not None and pos <= corrupt < pos + len(chunk):
                        chunk[corrupt - pos] ^= 0xFF
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    pos += len(chunk)
                    with hub.lock:
                        hub.bytes_sent[p] = hub.bytes_sent.get(p, 0) + len(chunk)
                    if f.rate:
                        ahead = sent / f.rate - (time.monotonic() - t0)
                        if ahead > 0:
                            time.sleep(ahead)
                if reset is not None and sent >= reset:
                    self.wfile.flush()
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return None
                if extra:
                    self.wfile.write(extra)
            return None

    return Handler


def _tree_entries(files: list[StoredFile], sub: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    dirs: set[str] = set()
    prefix = sub.strip("/")
    for sf in files:
        if prefix and not sf.path.startswith(prefix + "/"):
            continue
        parts = sf.path.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
        e: dict[str, Any] = {"type": "file", "path": sf.path, "size": sf.size, "oid": sf.git_oid}
        if sf.lfs:
            # The real hub lists the LFS pointer's blob id as ``oid``; any sha1 shape will do here.
            e["oid"] = sf.git_oid
            e["lfs"] = {"oid": sf.sha256, "size": sf.size, "pointerSize": 134}
        entries.append(e)
    for d in sorted(dirs):
        entries.append({"type": "directory", "path": d, "size": 0, "oid": "0" * 40})
    return sorted(entries, key=lambda e: e["path"])
