"""The HTTP edge: one client factory, bearer auth bound to one host, error translation.

httpx reads ``HTTPS_PROXY``/``NO_PROXY`` and ``SSL_CERT_FILE`` from the
environment (``trust_env``); TLS verification is always on.  Direct (unproxied)
requests go over :class:`~qwen_fetch.net.h1.H1Transport`, whose bodies the
download engine reads straight into its block buffers.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Generator
from urllib.parse import urlsplit

import httpx

from qwen_fetch import __version__
from qwen_fetch.errors import SourceError
from qwen_fetch.net.h1 import H1Transport

USER_AGENT = f"qwen-fetch/{__version__}"


class HostBearerAuth(httpx.Auth):
    """Send ``Authorization: Bearer`` to the configured endpoint's origin only.

    httpx applies auth to the first request and drops the header on a
    cross-origin redirect; this class additionally refuses to attach the token
    to any request whose origin differs, so a CDN or hostile redirect target
    never sees it.
    """

    def __init__(self, token: str, endpoint: str) -> None:
        self._token = token
        parts = urlsplit(endpoint)
        self._origin = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))

    def __repr__(self) -> str:  # never print the token
        return f"HostBearerAuth(origin={self._origin!r})"

    def matches(self, url: httpx.URL) -> bool:
        port = url.port or (443 if url.scheme == "https" else 80)
        return (url.scheme, url.host, port) == self._origin

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.matches(request.url):
            request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def ssl_context() -> ssl.SSLContext | bool:
    """Default verification, honouring SSL_CERT_FILE / SSL_CERT_DIR like curl and requests."""
    cafile = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    capath = os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    return True


def make_client(*, token: str | None = None, endpoint: str | None = None, timeout: float = 30.0,
                connections: int = 32) -> httpx.Client:
    from qwen_fetch.offline import require_network

    require_network(f"a connection to {endpoint or 'a remote host'}")
    auth = HostBearerAuth(token, endpoint) if token and endpoint else None
    verify = ssl_context()
    return httpx.Client(
        auth=auth,
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=True,
        max_redirects=10,
        verify=verify,  # for the proxy transports httpx mounts from HTTPS_PROXY etc.
        trust_env=True,
        limits=httpx.Limits(max_connections=connections + 8, max_keepalive_connections=connections + 8),
        transport=H1Transport(httpx.create_ssl_context(verify=verify), max_idle=connections + 8),
    )


def describe_exc(exc: BaseException) -> str:
    """A one-line reason for a transport failure, with no URL query strings or tokens."""
    if isinstance(exc, httpx.ConnectError):
        msg = str(exc) or "connection refused"
        if "CERTIFICATE_VERIFY_FAILED" in msg:
            return "TLS certificate verification failed"
        return f"cannot connect ({msg.splitlines()[0][:120]})"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection dropped by the server"
    if isinstance(exc, httpx.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, httpx.HTTPError):
        return type(exc).__name__
    return str(exc)[:160] or type(exc).__name__


def source_error(source: str, exc: BaseException) -> SourceError:
    reason = describe_exc(exc)
    hint = "check the network, proxy (HTTPS_PROXY) and the source's endpoint in mirrors.yaml, or pick another --source"
    if "certificate" in reason:
        hint = "point SSL_CERT_FILE at the mirror's CA bundle if it uses a private CA"
    return SourceError(f"source {source!r} unreachable: {reason}", hint=hint, reference="source-unreachable")
