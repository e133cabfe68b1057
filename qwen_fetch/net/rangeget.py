"""The HTTP edge of the engine: one GET for one byte range, its response checked.

Everything the server says is checked against what we asked and what the pin
says (status, ``Content-Range``, ``Content-Length``, total size) before a byte
is written.  Failures are translated once, here, into two kinds: worth
retrying on this source (:class:`Retryable`) or not (:class:`SourceFailed`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from qwen_fetch.core.ranges import is_strong_etag, parse_content_range, parse_retry_after
from qwen_fetch.net.deadline import TooSlow
from qwen_fetch.net.h1 import BODY
from qwen_fetch.net.http import describe_exc
from qwen_fetch.net.location import FileLocation

if TYPE_CHECKING:
    from qwen_fetch.net.pools import Pools

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
THROTTLE_STATUSES = frozenset({429, 503})  # what nginx limit_conn/limit_req and CDNs answer to too many requests


class Retryable(Exception):
    """Transient: try this range again on the same source after a backoff."""

    def __init__(self, reason: str, retry_after: float | None = None, *, throttled: bool = False,
                 slow: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.throttled = throttled  # 429/503: the server wants fewer requests, not this one again later
        self.slow = slow  # stalled or below the minimum rate: whatever it sent, it is no progress


class SourceFailed(Exception):
    """This source cannot serve this file correctly (wrong size, 404, ...): try the next one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RangeRequest:
    start: int
    end: int  # exclusive
    size: int  # the pinned size of the whole file
    if_range: str | None = None  # the recorded ETag, when it came from this source

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end == self.size


@dataclass(frozen=True)
class Opened:
    """A checked response: its body holds bytes ``[offset, end)`` of the file."""

    response: httpx.Response
    offset: int
    end: int
    etag: str | None
    ignored_range: bool  # asked for a range, got the whole file (200)


def request_headers(req: RangeRequest) -> dict[str, str]:
    # identity: a gzip-encoded body would make Content-Length/Range meaningless for us
    headers = {"Accept-Encoding": "identity"}
    if not req.whole:
        headers["Range"] = f"bytes={req.start}-{req.end - 1}"
        if req.if_range and is_strong_etag(req.if_range):
            headers["If-Range"] = req.if_range
    return headers


def location_headers(loc: FileLocation, req: RangeRequest) -> dict[str, str]:
    """The source's headers for ``loc`` (its auth) and the range's."""
    headers = dict(loc.headers)
    headers.update(request_headers(req))
    return headers


def check_response(req: RangeRequest, status: int, headers: httpx.Headers) -> tuple[int, int]:
    """The byte span ``(offset, end)`` the body will carry, or raise.  Pure: status and headers only."""
    length = headers.get("Content-Length")
    if status in RETRY_STATUSES:
        raise Retryable(f"HTTP {status}", parse_retry_after(headers.get("Retry-After"), time.time()),
                        throttled=status in THROTTLE_STATUSES)
    if status == 206:
        if req.whole and "Range" not in request_headers(req):
            raise Retryable("206 Partial Content to a request without Range")
        cr = parse_content_range(headers.get("Content-Range"))
        if cr is None:
            raise Retryable(f"206 with a malformed Content-Range {headers.get('Content-Range')!r}")
        start, end, total = cr
        if total is not None and total != req.size:
            raise SourceFailed(f"remote size is {total} bytes, the pin says {req.size}")
        if (start, end) != (req.start, req.end):
            raise Retryable(f"asked for bytes {req.start}-{req.end - 1}, got Content-Range {start}-{end - 1}")
        if length is not None and length.strip() != str(end - start):
            raise SourceFailed(f"Content-Length {length} disagrees with the {end - start}-byte range")
        return start, end
    if status == 200:
        if length is not None and length.strip() != str(req.size):
            raise SourceFailed(f"Content-Length {length} disagrees with the pinned size {req.size}")
        return 0, req.size
    if status == 416:
        raise SourceFailed(f"HTTP 416: the source has fewer than {req.size} bytes")
    if status in (401, 403):
        raise SourceFailed(f"HTTP {status}: access denied (token missing, expired or not accepted)")
    if status == 404:
        raise SourceFailed("HTTP 404: file not found on this source")
    if 500 <= status < 600:
        raise Retryable(f"HTTP {status}")
    raise SourceFailed(f"unexpected HTTP {status}")


def body_reader(response: httpx.Response) -> Callable[[memoryview], int]:
    """``readinto(view)``: read some of the body into ``view`` (at least one byte); 0 once it is over.

    On our own transport (:mod:`qwen_fetch.net.h1`) this is one ``recv_into``
    straight into the caller's buffer, as much as the socket holds; on any other
    transport (a proxy, a store's) it copies from the chunks httpx yields.
    """
    body = response.extensions.get(BODY)
    if body is not None:
        return body.readinto_some  # type: ignore[no-any-return]
    chunks = response.iter_raw()
    pending = memoryview(b"")

    def readinto(view: memoryview) -> int:
        nonlocal pending
        while not pending:
            chunk = next(chunks, None)
            if chunk is None:
                return 0
            pending = memoryview(chunk)
        take = min(len(pending), len(view))
        view[:take] = pending[:take]
        pending = pending[take:]
        return take
    return readinto


@contextmanager
def open_range(pools: Pools, loc: FileLocation, req: RangeRequest, *, connect_timeout: float,
               stall_timeout: float) -> Iterator[Opened]:
    """GET ``req`` from ``loc`` through ``pools``; yields a checked :class:`Opened`.  Transport errors become
    :class:`Retryable`."""
    # The read timeout is per socket read: it is what detects a stalled connection.
    timeout = httpx.Timeout(connect_timeout, read=stall_timeout, pool=None)
    headers = location_headers(loc, req)
    try:
        with pools.client(loc.route).stream("GET", loc.url, headers=headers, timeout=timeout) as resp:
            offset, end = check_response(req, resp.status_code, resp.headers)
            etag = resp.headers.get("ETag")
            yield Opened(response=resp, offset=offset, end=end, etag=etag,
                         ignored_range=resp.status_code == 200 and not req.whole)
    except httpx.ReadTimeout:
        raise Retryable(f"stalled (no bytes for {stall_timeout:g}s)", slow=True) from None
    except TooSlow as exc:
        raise Retryable(exc.reason, slow=True) from None
    except httpx.TransportError as exc:
        raise Retryable(describe_exc(exc)) from None
