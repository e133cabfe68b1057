"""An httpx transport that answers ``GET``/``HEAD`` on ``file://localhost/...`` URLs with Range.

It lets the download engine read a ``kind: dir`` store (an NFS share) through
the same code path as any mirror: same range splitting, resume and sha256
checks, no special case.  Only files under ``root`` are served.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx

from qwen_fetch.core.byteranges import select_span
from qwen_fetch.core.digests import is_sha256

CHUNK = 1 << 20


class _FileStream(httpx.SyncByteStream):
    def __init__(self, path: Path, start: int, length: int) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.fh.seek(start)
        self.left = length

    def __iter__(self) -> Iterator[bytes]:
        while self.left > 0:
            chunk = self.fh.read(min(CHUNK, self.left))
            if not chunk:
                break  # the file shrank: the engine sees a short body and retries
            self.left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self.fh.close()


class FileTransport(httpx.BaseTransport):
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))

    def _error(self, request: httpx.Request, status: int, msg: str) -> httpx.Response:
        return httpx.Response(status, headers={"Content-Type": "text/plain"}, content=msg.encode(), request=request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method not in ("GET", "HEAD"):
            return self._error(request, 405, "read-only")
        if request.url.scheme != "file" or request.url.host not in ("", "localhost"):
            return self._error(request, 400, "only file://localhost/ URLs")
        real = Path(os.path.realpath(request.url.path))
        if not str(real).startswith(str(self.root) + os.sep) or not real.is_file():
            return self._error(request, 404, "not found")
        size = real.stat().st_size
        etag = real.name if is_sha256(real.name) else ""  # blobs are named by their sha256
        span = select_span(request.headers.get("Range"), size, if_range=request.headers.get("If-Range"), etag=etag)
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(span.length)}
        if etag:
            headers["ETag"] = f'"{etag}"'
        cr = span.content_range()
        if cr:
            headers["Content-Range"] = cr
        if request.method == "HEAD" or span.status == 416:
            headers["Content-Length"] = str(size) if request.method == "HEAD" else "0"
            return httpx.Response(span.status, headers=headers, request=request)
        return httpx.Response(span.status, headers=headers, stream=_FileStream(real, span.start, span.length),
                              request=request)
