"""One small file into a sink (the plain git files a fresh pull must hash), with the engine's policy.

The same rules as the engine's range requests: statuses are classified by
:func:`~qwen_fetch.net.rangeget.check_response` (429/5xx are retried after the
backoff or the server's ``Retry-After``, up to ``max_attempts`` tries; 404/401/403
fail the source at once), and a stalled or too-slow body fails the source, so
the next one is tried.  What the caller gets is a :class:`SmallGetError` that
says whether the source served wrong bytes (``integrity``) or could not serve
at all: an HTTP error is never reported as a hash mismatch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Protocol

import httpx

from qwen_fetch.core.ranges import retry_delay
from qwen_fetch.net.deadline import TooSlow
from qwen_fetch.net.http import describe_exc
from qwen_fetch.net.jobs import EngineOptions
from qwen_fetch.net.location import FileLocation
from qwen_fetch.net.pools import Pools
from qwen_fetch.net.rangeget import RangeRequest, Retryable, SourceFailed, check_response, location_headers


class SmallGetError(Exception):
    """``reason`` is one line; ``integrity``: the source sent bytes or lengths that contradict the listing."""

    def __init__(self, reason: str, *, integrity: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.integrity = integrity


class Sink(Protocol):
    """Where the body goes (:class:`qwen_fetch.net.plainfile.PlainSink`): written in order, started over on a retry."""

    written: int

    def write(self, data: bytes) -> None: ...

    def reset(self) -> None: ...


def get_small(pools: Pools, loc: FileLocation, size: int, options: EngineOptions, sink: Sink, *,
              note: Callable[[str], None] = lambda _: None, sleep: Callable[[float], None] = time.sleep,
              jitter: Callable[[], float] = random.random) -> None:
    """GET the whole file at ``loc`` (listed at ``size`` bytes) into ``sink``, retrying transient failures on
    this source; each try starts the sink over, so it holds one whole body when this returns."""
    failures = 0
    while True:
        try:
            sink.reset()
            return _get_once(pools, loc, size, options, sink)
        except SourceFailed as exc:
            raise SmallGetError(exc.reason, integrity=False) from None
        except Retryable as exc:
            failures += 1
            if exc.slow:  # a source that drips counts as failed: the next one is used
                raise SmallGetError(exc.reason, integrity=False) from None
            if failures >= options.max_attempts:
                raise SmallGetError(f"{exc.reason} ({failures} tries)", integrity=False) from None
            delay = retry_delay(failures, exc.retry_after, options.backoff_base, options.backoff_max, jitter())
            note(f"{loc.url.rsplit('/', 1)[-1][:80]}: {exc.reason} from {loc.source}; "
                 f"retry {failures}/{options.max_attempts - 1} in {delay:.1f}s")
            sleep(delay)


def _get_once(pools: Pools, loc: FileLocation, size: int, options: EngineOptions, sink: Sink) -> None:
    req = RangeRequest(0, size, size)
    timeout = httpx.Timeout(options.request_timeout, connect=min(options.request_timeout, 10.0),
                            read=options.stall_timeout, pool=None)
    try:
        with pools.client(loc.route).stream("GET", loc.url, headers=location_headers(loc, req),
                                            timeout=timeout) as resp:
            if resp.status_code != 200:
                check_response(req, resp.status_code, resp.headers)  # raises for anything but 200
                raise SourceFailed(f"unexpected HTTP {resp.status_code}")
            # Checked before reading: a longer Content-Length would otherwise hold the
            # connection open until the read timeout, waiting for bytes that never come.
            declared = resp.headers.get("Content-Length")
            encoded = resp.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
            if declared is not None and not encoded and declared.strip() != str(size):
                raise SmallGetError(f"announced Content-Length {declared.strip()[:20]} for a file listed at "
                                    f"{size} bytes", integrity=True)
            guard = options.deadlines.guard(time.monotonic())
            for chunk in resp.iter_bytes():  # streamed to disk: memory stays one chunk whatever the size
                if sink.written + len(chunk) > size:
                    raise SmallGetError(f"sent more bytes than listed ({size})", integrity=True)
                sink.write(chunk)
                guard.feed(len(chunk), time.monotonic())
    except TooSlow as exc:
        raise Retryable(exc.reason, slow=True) from None
    except httpx.ReadTimeout:
        raise Retryable(f"stalled (no bytes for {options.stall_timeout:g}s)", slow=True) from None
    except httpx.TransportError as exc:
        raise Retryable(describe_exc(exc)) from None
    except httpx.HTTPError as exc:  # too many redirects and the like: not worth another try here
        raise SourceFailed(describe_exc(exc)) from None
