"""Connections through a proxy that keep :mod:`qwen_fetch.net.h1`'s fast path.

A tunnel (HTTP ``CONNECT``, or a SOCKS5 handshake, RFC 1928/1929) is opened on
a plain socket; once it stands, the socket carries the target's bytes as if it
were connected directly, so TLS is negotiated end-to-end with the target (SNI
and certificate checks against the target's name) and response bodies are still
read straight into the engine's buffers.  A plain-http target behind an http
proxy needs no tunnel: the request goes to the proxy in absolute form (see
:func:`forward`).

Every failure becomes a :class:`TunnelError` whose message names the proxy with
its credentials redacted.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import struct

from qwen_fetch.core.proxy import ProxyURL

MAX_CONNECT_REPLY = 64 * 1024

_SOCKS_REPLIES = {
    1: "general SOCKS server failure", 2: "connection not allowed by ruleset", 3: "network unreachable",
    4: "host unreachable", 5: "connection refused", 6: "TTL expired", 7: "command not supported",
    8: "address type not supported",
}


class TunnelError(OSError):
    """The proxy could not be reached or would not open the tunnel (message safe to print)."""


def forward(proxy: ProxyURL | None, scheme: str) -> bool:
    """True when requests go to ``proxy`` in absolute form rather than through a tunnel."""
    return proxy is not None and proxy.scheme == "http" and scheme == "http"


def connection(scheme: str, host: str, port: int, proxy: ProxyURL | None, context: ssl.SSLContext,
               timeout: float | None) -> http.client.HTTPConnection:
    """An unconnected ``http.client`` connection to ``host:port``, through ``proxy`` when given."""
    if proxy is None:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=timeout)
    if forward(proxy, scheme):
        return _ForwardConnection(proxy, timeout)
    if scheme == "https":
        return _TunnelTLSConnection(host, port, proxy, context, timeout)
    return _TunnelConnection(host, port, proxy, timeout)


def open_tunnel(proxy: ProxyURL, host: str, port: int, timeout: float | None) -> socket.socket:
    """A socket connected to ``host:port`` through ``proxy`` (CONNECT or SOCKS5)."""
    sock = _dial(proxy, timeout)
    try:
        if proxy.scheme == "http":
            _http_connect(sock, proxy, host, port)
        else:
            _socks5(sock, proxy, host, port, remote_dns=proxy.scheme == "socks5h")
    except TimeoutError:
        sock.close()
        raise TunnelError(f"proxy {proxy} timed out opening a tunnel to {_authority(host, port)}") from None
    except TunnelError:
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        raise TunnelError(f"proxy {proxy} dropped the connection while opening a tunnel to "
                          f"{_authority(host, port)} ({exc.strerror or type(exc).__name__})") from None
    return sock


def _dial(proxy: ProxyURL, timeout: float | None) -> socket.socket:
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout)
    except TimeoutError:
        raise TunnelError(f"cannot connect to proxy {proxy}: timed out") from None
    except OSError as exc:
        raise TunnelError(f"cannot connect to proxy {proxy}: {exc.strerror or type(exc).__name__}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _http_connect(sock: socket.socket, proxy: ProxyURL, host: str, port: int) -> None:
    target = _authority(host, port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    auth = proxy.basic_auth()
    if auth:
        lines.append(f"Proxy-Authorization: {auth}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    # The reply's head, byte by byte, so that no byte of the tunnel behind it is consumed here
    # (a proxy sends nothing more before our TLS ClientHello, but nothing forbids it).
    reply = bytearray()
    while not reply.endswith(b"\r\n\r\n"):
        b = sock.recv(1)
        if not b:
            raise TunnelError(f"proxy {proxy} closed the connection instead of answering CONNECT {target}")
        reply += b
        if len(reply) > MAX_CONNECT_REPLY:
            raise TunnelError(f"proxy {proxy} sent an oversized reply to CONNECT {target}")
    status_line = reply.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise TunnelError(f"proxy {proxy} answered CONNECT {target} with something that is not HTTP")
    code = int(parts[1])
    if 200 <= code < 300:
        return
    reason = "".join(c for c in (parts[2] if len(parts) > 2 else "") if c.isprintable())[:80]
    if code in (401, 407):  # 407 is the standard; tinyproxy answers 401
        why = "rejected the credentials" if auth else "requires credentials (user:password@ in the proxy URL)"
        raise TunnelError(f"proxy {proxy} {why} (HTTP {code} to CONNECT {target})")
    raise TunnelError(f"proxy {proxy} refused CONNECT {target}: HTTP {code} {reason}".rstrip())


def _recv_exact(sock: socket.socket, n: int, proxy: ProxyURL) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise TunnelError(f"SOCKS proxy {proxy} closed the connection during the handshake")
        buf += chunk
    return bytes(buf)


def _socks5(sock: socket.socket, proxy: ProxyURL, host: str, port: int, *, remote_dns: bool) -> None:
    methods = b"\x00\x02" if proxy.has_credentials else b"\x00"
    sock.sendall(b"\x05" + bytes([len(methods)]) + methods)
    version, method = _recv_exact(sock, 2, proxy)
    if version != 5:
        raise TunnelError(f"proxy {proxy} is not a SOCKS5 proxy")
    if method == 0x02 and proxy.has_credentials:  # RFC 1929
        user = (proxy.username or "").encode()
        password = (proxy.password or "").encode()
        if len(user) > 255 or len(password) > 255:
            raise TunnelError(f"SOCKS proxy {proxy}: user name or password longer than 255 bytes")
        sock.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        try:
            ok = _recv_exact(sock, 2, proxy)[1] == 0
        except TunnelError:  # some proxies (pproxy) hang up instead of answering a failure
            ok = False
        if not ok:
            raise TunnelError(f"SOCKS proxy {proxy} rejected the credentials")
    elif method != 0x00:
        why = "requires credentials (user:password@ in the proxy URL)" if not proxy.has_credentials \
            else "accepts none of our authentication methods"
        raise TunnelError(f"SOCKS proxy {proxy} {why}")
    sock.sendall(b"\x05\x01\x00" + _socks_address(proxy, host, port, remote_dns) + struct.pack(">H", port))
    try:
        version, rep, _rsv, atyp = _recv_exact(sock, 4, proxy)
    except TunnelError:
        if proxy.has_credentials:
            raise
        raise TunnelError(f"SOCKS proxy {proxy} closed the connection instead of connecting to "
                          f"{_authority(host, port)}; it may require credentials (user:password@ in the proxy URL)")
    if version != 5:
        raise TunnelError(f"proxy {proxy} sent a malformed SOCKS5 reply")
    if rep != 0:
        why = _SOCKS_REPLIES.get(rep, f"error {rep}")
        raise TunnelError(f"SOCKS proxy {proxy} could not connect to {_authority(host, port)}: {why}")
    if atyp == 1:
        _recv_exact(sock, 4 + 2, proxy)
    elif atyp == 4:
        _recv_exact(sock, 16 + 2, proxy)
    elif atyp == 3:
        _recv_exact(sock, _recv_exact(sock, 1, proxy)[0] + 2, proxy)
    else:
        raise TunnelError(f"proxy {proxy} sent a malformed SOCKS5 reply")


def _socks_address(proxy: ProxyURL, host: str, port: int, remote_dns: bool) -> bytes:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is None and remote_dns:  # socks5h: the proxy resolves the name
        name = host.encode("idna")
        if len(name) > 255:
            raise TunnelError(f"host name too long for SOCKS: {host[:60]}")
        return b"\x03" + bytes([len(name)]) + name
    if ip is None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TunnelError(f"cannot resolve {host} (socks5:// resolves names locally; socks5h:// lets "
                              f"the proxy do it): {exc.strerror or exc}") from None
        ip = ipaddress.ip_address(infos[0][4][0])
    return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed


class _TunnelConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, proxy: ProxyURL, timeout: float | None) -> None:
        super().__init__(host, port, timeout=timeout)
        self.proxy = proxy

    def connect(self) -> None:
        self.sock = open_tunnel(self.proxy, self.host, self.port, self.timeout)


class _TunnelTLSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, proxy: ProxyURL, context: ssl.SSLContext,
                 timeout: float | None) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.proxy = proxy

    def connect(self) -> None:
        raw = open_tunnel(self.proxy, self.host, self.port, self.timeout)
        try:
            self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]
        except BaseException:
            raw.close()
            raise


class _ForwardConnection(http.client.HTTPConnection):
    """To an http proxy itself; the caller sends absolute-form request targets."""

    def __init__(self, proxy: ProxyURL, timeout: float | None) -> None:
        super().__init__(proxy.host, proxy.port, timeout=timeout)
        self.proxy = proxy

    def connect(self) -> None:
        self.sock = _dial(self.proxy, self.timeout)
