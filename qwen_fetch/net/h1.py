"""A lean HTTP/1.1 transport for httpx, on the standard library's ``http.client``.

Why it exists: httpcore hands a response body up as a fresh ``bytes`` object per
64 KiB socket read, through h11's receive buffer and four generator layers.  On
a 2-core machine without SHA-NI that Python work and those copies cost about
as much CPU as the sha256 of the same bytes.  ``http.client`` reads a
Content-Length body straight into the caller's buffer (``recv_into``), so the
engine takes whatever the socket holds, up to the rest of its 1 MiB block, with one call.

httpx still does everything above the wire — redirects (dropping a source's
auth headers on the way to another origin), headers, content decoding,
timeouts.  Proxies are chosen here, per request, by a
:class:`~qwen_fetch.core.proxy.ProxyPolicy` (httpx itself ignores proxy variables
once it is given a transport); a tunnel through a proxy (:mod:`qwen_fetch.net.tunnel`)
is a plain socket once open, so proxied bodies take the same fast path.

The fast path is ``response.extensions[BODY]`` (a :class:`Body` with
``readinto_some``); a response from any other transport lacks it and the caller
iterates the body as usual.  Every low-level failure is translated here, once,
into the httpx exception the rest of the code already handles.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from qwen_fetch.core.proxy import ProxyPolicy, ProxyURL
from qwen_fetch.net.deadline import HeadersDeadline
from qwen_fetch.net.tunnel import TunnelError, connection, forward

BODY = "qwen_fetch.body"  # response extension: the Body, for readinto_some
PROXY = "qwen_fetch.proxy"  # request extension: the ProxyURL a request went through (for error hints)
CHUNK = 64 * 1024  # bytes per chunk when httpx iterates a body (API calls, redirects)

_Key = tuple[str, str, int, ProxyURL | None]


class Body(httpx.SyncByteStream):
    """A response body on a pooled connection; the connection returns to the pool once fully read."""

    def __init__(self, transport: H1Transport, key: _Key, conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse, request: httpx.Request) -> None:
        self._transport, self._key, self._conn, self._resp, self._request = transport, key, conn, resp, request

    def readinto_some(self, buffer: memoryview) -> int:
        """Read what one socket read gives, at most ``len(buffer)`` body bytes; 0 only at the body's end.

        ``HTTPResponse.readinto`` loops until the buffer is full, so a caller that wants to act on bytes as
        they arrive would have to ask for less and pay a call per piece; this is its Content-Length path
        with one ``readinto1`` (the buffered reader's single raw read) instead.
        """
        resp: Any = self._resp  # its private ``_method`` and ``_close_conn``, as its own ``readinto`` uses them
        with _mapped(self._request, httpx.ReadTimeout, httpx.ReadError):
            if resp.fp is None or resp.chunked or resp.length is None or resp._method == "HEAD":
                return resp.readinto(buffer)
            view = buffer[:resp.length] if len(buffer) > resp.length else buffer
            n = resp.fp.readinto1(view) if view else 0
            if not n:
                resp._close_conn()
                return 0
            resp.length -= n
            if not resp.length:
                resp._close_conn()
            return n

    def __iter__(self) -> Iterator[bytes]:
        while True:
            with _mapped(self._request, httpx.ReadTimeout, httpx.ReadError):
                chunk = self._resp.read1(CHUNK)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        resp, conn = self._resp, self._conn
        if (resp.isclosed() or resp.length == 0) and not resp.will_close:
            self._transport.checkin(self._key, conn)  # fully read: reusable
        else:
            conn.close()  # abandoned mid-body, or the server closes it: never reuse
        resp.close()


class H1Transport(httpx.BaseTransport):
    """Keep-alive HTTP/1.1 connections per origin (scheme, host, port, proxy), at most ``max_idle`` idle each.

    ``proxy`` picks the proxy for each request (None: always direct).
    """

    def __init__(self, context: ssl.SSLContext, max_idle: int, proxy: ProxyPolicy | None = None) -> None:
        self._ssl = context
        self._max_idle = max_idle
        self._proxy = proxy or ProxyPolicy.direct()
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        port = url.port or (443 if url.scheme == "https" else 80)
        proxy = self._proxy.select(url.scheme, url.host, port)
        key = (url.scheme, url.host, port, proxy)
        timeout = request.extensions.get("timeout", {})
        body = request.read() if request.method not in ("GET", "HEAD") else None
        target = url.raw_path.decode("ascii")
        extra: list[tuple[str, str]] = []
        # Set or cleared on every request: httpx hands a redirect the same extensions dict.
        request.extensions.pop(PROXY, None)
        if proxy is not None:
            request.extensions[PROXY] = proxy
            if forward(proxy, url.scheme):  # absolute form, the proxy's credentials on each request
                target = str(url.copy_with(fragment=None))
                auth = proxy.basic_auth()
                if auth:  # never into request.headers: httpx would copy it into a redirect elsewhere
                    extra.append(("Proxy-Authorization", auth))
        for attempt in (0, 1):
            conn, reused = self._checkout(key, request, timeout.get("connect"))
            try:
                resp = self._exchange(conn, request, target, body, timeout, extra)
            except _StaleConnection as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # a keep-alive connection the server had already closed: one fresh try
                raise httpx.RemoteProtocolError(str(exc.__cause__ or "server disconnected"),
                                                request=request) from None
            except BaseException:
                conn.close()
                raise
            if resp.status == 407 and forward(proxy, url.scheme):
                conn.close()
                raise httpx.ProxyError(f"proxy {proxy} " + ("rejected the credentials (HTTP 407)"
                                       if proxy and proxy.has_credentials else "requires credentials (HTTP 407)"),
                                       request=request)
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.msg.items()]
            stream = Body(self, key, conn, resp, request)
            return httpx.Response(resp.status, headers=headers, stream=stream,
                                  extensions={"http_version": b"HTTP/1.1" if resp.version == 11 else b"HTTP/1.0",
                                              "reason_phrase": resp.reason.encode("latin-1"), BODY: stream})
        raise AssertionError("unreachable")

    @staticmethod
    def _exchange(conn: http.client.HTTPConnection, request: httpx.Request, target: str, body: bytes | None,
                  timeout: dict[str, float | None], extra: list[tuple[str, str]]) -> http.client.HTTPResponse:
        assert conn.sock is not None
        with _mapped(request, httpx.WriteTimeout, httpx.WriteError, stale=True):
            conn.sock.settimeout(timeout.get("write"))
            conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.raw:
                conn.putheader(name, value)
            for xname, xvalue in extra:
                conn.putheader(xname, xvalue)
            conn.endheaders(body or None)
        with _mapped(request, httpx.ReadTimeout, httpx.ReadError, stale=True):
            conn.sock.settimeout(timeout.get("read"))  # per recv: this is what detects a stalled body
            # ... and all the headers within the same time: a server that drips them resets a per-recv timeout
            with HeadersDeadline(conn.sock, timeout.get("read")) as deadline:
                try:
                    resp = conn.getresponse()
                except Exception as exc:
                    if deadline.fired:
                        raise httpx.ReadTimeout("no complete response headers in time", request=request) from exc
                    raise
            if deadline.fired:
                raise httpx.ReadTimeout("no complete response headers in time", request=request)
            return resp

    def _checkout(self, key: _Key, request: httpx.Request, connect_timeout: float | None
                  ) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            pool = self._idle.get(key, [])
            while pool:
                idle = pool.pop()
                if _reusable(idle):
                    return idle, True
                idle.close()
        scheme, host, port, proxy = key
        conn = connection(scheme, host, port, proxy, self._ssl, connect_timeout)
        with _mapped(request, httpx.ConnectTimeout, httpx.ConnectError):
            conn.connect()
        return conn, False

    def checkin(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            pool = self._idle.setdefault(key, [])
            if _reusable(conn) and len(pool) < self._max_idle:
                pool.append(conn)
                return
        conn.close()

    @property
    def max_idle(self) -> int:
        return self._max_idle

    def idle(self) -> dict[_Key, int]:
        """Idle connections kept, per origin."""
        with self._lock:
            return {k: len(v) for k, v in self._idle.items() if v}

    def close(self) -> None:
        with self._lock:
            conns = [c for pool in self._idle.values() for c in pool]
            self._idle.clear()
        for c in conns:
            c.close()


def _reusable(conn: http.client.HTTPConnection) -> bool:
    """Idle and silent: a readable idle socket is closed by the server or holds junk past the last body."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        p = select.poll()
        p.register(sock, select.POLLIN)
        return not p.poll(0)
    except (OSError, ValueError):
        return False


class _StaleConnection(Exception):
    """The server closed the connection before answering (a reused keep-alive connection may be retried)."""


@contextmanager
def _mapped(request: httpx.Request, on_timeout: type[httpx.TransportError], on_error: type[httpx.TransportError],
            *, stale: bool = False) -> Iterator[None]:
    """Translate socket/TLS/http.client errors into httpx's exceptions, once, at this boundary."""
    try:
        yield
    except TunnelError as exc:  # its message names the proxy, credentials redacted
        raise httpx.ProxyError(str(exc), request=request) from None
    except TimeoutError as exc:  # socket.timeout
        raise on_timeout(str(exc) or "timed out", request=request) from exc
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
        if stale:
            raise _StaleConnection() from exc
        raise httpx.RemoteProtocolError(str(exc) or "server disconnected", request=request) from exc
    except ssl.SSLError as exc:  # before ValueError: a failed certificate check is both
        raise on_error(str(exc) or type(exc).__name__, request=request) from exc
    except (http.client.HTTPException, ValueError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
    except OSError as exc:
        raise on_error(str(exc) or type(exc).__name__, request=request) from exc
