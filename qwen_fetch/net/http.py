"""The HTTP edge: one client factory, TLS trust, proxy choice, error translation.

Every HTTP request qwen-fetch makes (API calls, engine ranges, small files,
health checks, ModelScope, presigned store URLs) goes through a client from
:func:`make_client`, so one place decides:

* the proxy (:mod:`qwen_fetch.core.proxy`): a source's ``proxy:`` key, else the
  environment as curl reads it (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, ...);
* TLS trust (:func:`tls_context`): a source's ``ca_bundle:``, else ``SSL_CERT_FILE``
  / ``SSL_CERT_DIR`` / ``REQUESTS_CA_BUNDLE``, else the operating system's trust
  store through ``truststore``, as pip does.  Verification is always on.

Requests go over :class:`~qwen_fetch.net.h1.H1Transport`, whose bodies the
download engine reads straight into its block buffers, proxied or not.
"""

from __future__ import annotations

import functools
import os
import ssl

import httpx

from qwen_fetch import __version__
from qwen_fetch.core.errors import ConfigError, Ref, SourceError
from qwen_fetch.core.proxy import ProxyParseError, ProxyPolicy, ProxyURL
from qwen_fetch.net.h1 import PROXY, H1Transport

USER_AGENT = f"qwen-fetch/{__version__}"


def make_client(*, endpoint: str | None = None, timeout: float = 30.0, pool_size: int | None = None,
                proxy: ProxyPolicy | None = None, ca_bundle: str | None = None) -> httpx.Client:
    """The one httpx client factory (a pull gets its clients through :class:`~qwen_fetch.net.pools.Pools`).

    ``pool_size``: idle connections kept per origin (default: what the default
    engine needs, :func:`~qwen_fetch.net.jobs.pool_size`).  ``proxy``: the
    source's policy (``proxy:`` in mirrors.yaml); None reads the environment.
    ``ca_bundle``: the source's CA file or directory; None uses
    :func:`tls_context`'s environment/OS-store order.  ``endpoint`` only names
    the host in the offline error.  Raises :class:`ConfigError` for an unusable
    proxy variable or CA bundle, :class:`~qwen_fetch.net.offline.OfflineError`
    in offline mode.  Auth is per request (:class:`~qwen_fetch.net.location.OriginToken`).
    """
    from qwen_fetch.net.jobs import default_connections
    from qwen_fetch.net.jobs import pool_size as default_pool_size
    from qwen_fetch.net.offline import require_network
    from qwen_fetch.sources.config import mask_url

    require_network(f"a connection to {mask_url(endpoint) if endpoint else 'a remote host'}")
    if proxy is None:
        proxy = env_proxy_policy()
    idle = pool_size if pool_size is not None else default_pool_size(default_connections())
    return httpx.Client(
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=True,
        max_redirects=10,
        trust_env=False,  # proxies and CA bundles from the environment are read here, not by httpx
        transport=H1Transport(tls_context(ca_bundle), max_idle=idle, proxy=proxy),
    )


def env_proxy_policy() -> ProxyPolicy:
    """The environment's proxy variables, or a :class:`ConfigError` naming the bad one (never its value)."""
    try:
        return ProxyPolicy.from_env()
    except ProxyParseError as exc:
        var = str(exc).split(":", 1)[0]
        raise ConfigError(f"the proxy in {exc}", reference=Ref.BAD_PROXY,
                          hint=f"set {var} to scheme://[user:password@]host:port with scheme http, socks5 or "
                               f"socks5h, e.g. http://proxy.example:3128, or unset it") from None


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The trust for https: ``ca_bundle``, else SSL_CERT_FILE/SSL_CERT_DIR/REQUESTS_CA_BUNDLE, else the OS.

    A bundle replaces the defaults, as ``SSL_CERT_FILE`` does for curl and
    ``REQUESTS_CA_BUNDLE`` for requests; without one, certificates are checked
    against the operating system's trust store (``truststore``: a corporate CA
    installed on the machine is trusted, as by pip).  Hostname and chain checks
    are always on; nothing here can turn them off.
    """
    if ca_bundle is not None:
        return _bundle_context(ca_bundle, None, "the source's ca_bundle")
    cafile = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    if cafile or capath:
        var = "SSL_CERT_FILE" if os.environ.get("SSL_CERT_FILE") else "REQUESTS_CA_BUNDLE" if cafile else "SSL_CERT_DIR"
        return _bundle_context(cafile, capath, var)
    return _system_context()


@functools.lru_cache(maxsize=8)
def _bundle_context(cafile: str | None, capath: str | None, what: str) -> ssl.SSLContext:
    if cafile and os.path.isdir(cafile):  # ca_bundle may name a directory of hashed certificates
        cafile, capath = None, cafile
    try:
        ctx = ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as exc:
        where = cafile or capath
        reason = "no such file" if isinstance(exc, FileNotFoundError) else "not a PEM certificate bundle"
        raise ConfigError(f"cannot load CA certificates from {where} ({what}): {reason}", reference=Ref.BAD_CA_BUNDLE,
                          hint=f"point {what} at a PEM file of CA certificates, or unset it to use the "
                               f"system's trust store") from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


@functools.lru_cache(maxsize=1)
def _system_context() -> ssl.SSLContext:
    import truststore

    ctx: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def proxy_of(exc: BaseException) -> ProxyURL | None:
    """The proxy the failed request went through, if any."""
    if not isinstance(exc, httpx.RequestError):
        return None
    try:
        request = exc.request
    except RuntimeError:  # raised by httpx when the error carries no request
        return None
    proxy = request.extensions.get(PROXY)
    return proxy if isinstance(proxy, ProxyURL) else None


def describe_exc(exc: BaseException) -> str:
    """A one-line reason for a transport failure, with no URL query strings, tokens or proxy credentials."""
    reason = _reason(exc)
    proxy = proxy_of(exc)
    if proxy is not None and not isinstance(exc, httpx.ProxyError):  # a ProxyError names its proxy already
        reason += f" (via proxy {proxy})"
    return reason


def _reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.ProxyError):
        return str(exc)
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
    proxy = proxy_of(exc)
    if "certificate" in reason:
        hint = ("the server's certificate is not trusted: if the mirror or an intercepting (corporate) proxy "
                "uses a private CA, point the source's ca_bundle: in mirrors.yaml, or SSL_CERT_FILE, "
                "at that CA's PEM file")
    elif proxy is not None:
        where = "the source's proxy: in mirrors.yaml" if proxy.origin.startswith("proxy:") else proxy.origin
        hint = (f"check the proxy set by {where}: is it running and reachable, are its credentials right? "
                f"To go direct, list the host in NO_PROXY or set proxy: none on the source in mirrors.yaml")
    else:
        hint = ("check the network and the source's endpoint in mirrors.yaml, or pick another --source; "
                "behind a proxy, set HTTPS_PROXY (or proxy: on the source in mirrors.yaml)")
    return SourceError(f"source {source!r} unreachable: {reason}", hint=hint, reference=Ref.SOURCE_UNREACHABLE)
