"""Which proxy a request goes through: the environment as curl reads it, or a source's ``proxy:``.

Pure: parsing and matching, no sockets (the tunnels are :mod:`qwen_fetch.net.tunnel`).

* ``https_proxy`` / ``HTTPS_PROXY`` for https URLs, ``http_proxy`` / ``HTTP_PROXY``
  for http URLs, ``all_proxy`` / ``ALL_PROXY`` for either when the specific one is
  unset; the lower-case spelling wins, as in curl and Python's ``urllib``.
  ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` is set (a CGI request can set
  it through a ``Proxy:`` header, "httpoxy").
* ``no_proxy`` / ``NO_PROXY``: comma- or space-separated; ``*`` bypasses every
  host; ``example.com`` (also ``.example.com`` and ``*.example.com``) matches the
  host and its subdomains but not ``notexample.com``; ``host:port`` only that
  port; IP addresses and CIDR blocks (``10.0.0.0/8``, ``::1``) match IP literals.
  Loopback is *not* bypassed unless listed (curl and httpx do the same).
* Proxy URLs: ``http://``, ``socks5://`` (names resolved here) and ``socks5h://``
  (names resolved by the proxy), optional ``user:password@`` (percent-encoded);
  no scheme means ``http://``; the port defaults to 80 for http and 1080 for SOCKS.

Credentials are kept out of every ``str``/``repr``: a proxy prints as
``http://***@host:port``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

SCHEMES = ("http", "socks5", "socks5h")
DEFAULT_PORTS = {"http": 80, "socks5": 1080, "socks5h": 1080}
_SPLIT = re.compile(r"[,\s]+")


class ProxyParseError(ValueError):
    """A proxy URL we cannot use; the message never repeats the URL (it may hold a password)."""


@dataclass(frozen=True)
class ProxyURL:
    """One proxy.  ``origin`` says where it was configured (for hints), e.g. ``HTTPS_PROXY``."""

    scheme: str
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    origin: str = field(default="", compare=False)

    @property
    def has_credentials(self) -> bool:
        return self.username is not None

    def redacted(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{'***@' if self.has_credentials else ''}{host}:{self.port}"

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"ProxyURL({self.redacted()!r}, origin={self.origin!r})"

    def basic_auth(self) -> str | None:
        """The ``Proxy-Authorization`` value for an http proxy with credentials."""
        if not self.has_credentials:
            return None
        raw = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_proxy(value: str, origin: str = "") -> ProxyURL:
    """``[scheme://][user:pass@]host[:port]`` -> :class:`ProxyURL`, or :class:`ProxyParseError`."""
    value = value.strip()
    if "://" not in value:
        value = "http://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ProxyParseError("its host or port is malformed") from None
    scheme = parts.scheme.lower()
    if scheme == "https":
        raise ProxyParseError("https:// proxies (TLS to the proxy itself) are not supported; an http:// proxy "
                              "still carries https traffic end-to-end encrypted through CONNECT")
    if scheme not in SCHEMES:
        raise ProxyParseError(f"unsupported proxy scheme {scheme!r} (use http://, socks5:// or socks5h://)")
    if not parts.hostname:
        raise ProxyParseError("it names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyParseError("a proxy URL has no path or query (scheme://[user:password@]host:port)")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyURL(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], username, password, origin)


@dataclass(frozen=True)
class _Rule:
    host: str | None  # a domain (lower case, no leading/trailing dot), or None for an IP rule
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    port: int | None


@dataclass(frozen=True)
class NoProxy:
    """A parsed ``NO_PROXY``: :meth:`matches` says whether a host goes direct."""

    everything: bool = False
    rules: tuple[_Rule, ...] = ()

    def matches(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        host = host.strip("[]").rstrip(".").lower()
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        for r in self.rules:
            if r.port is not None and r.port != port:
                continue
            if r.network is not None:
                if ip is not None and ip.version == r.network.version and ip in r.network:
                    return True
            elif r.host is not None and (host == r.host or host.endswith("." + r.host)):
                return True
        return False


def parse_no_proxy(value: str) -> NoProxy:
    rules: list[_Rule] = []
    for raw in _SPLIT.split(value.strip()):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return NoProxy(everything=True)
        if "://" in entry:  # httpx and requests accept "http://host"; the scheme does not narrow it here
            entry = entry.split("://", 1)[1]
        entry = entry.rstrip("/")
        net = _network(entry)
        if net is not None:
            rules.append(_Rule(None, net, None))
            continue
        port: int | None = None
        m = re.fullmatch(r"\[([0-9a-f:.]+)\](?::(\d+))?", entry) or re.fullmatch(r"([^:]+):(\d+)", entry)
        if m:
            entry, port = m.group(1), int(m.group(2)) if m.group(2) else None
            net = _network(entry)
            if net is not None:
                rules.append(_Rule(None, net, port))
                continue
        host = entry[2:] if entry.startswith("*.") else entry
        host = host.strip(".")
        if host:
            rules.append(_Rule(host, None, port))
    return NoProxy(rules=tuple(rules))


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


@dataclass(frozen=True)
class ProxyPolicy:
    """How one client picks a proxy per URL: from the environment, one fixed proxy, or none at all.

    A source's ``proxy:`` makes a fixed policy (every request of that source, its
    redirects to a CDN included, through that proxy; ``NO_PROXY`` does not apply);
    ``proxy: none`` a direct one; without the key the environment decides.
    """

    http: ProxyURL | None = None
    https: ProxyURL | None = None
    no_proxy: NoProxy = NoProxy()
    origin: str = "environment"

    @classmethod
    def fixed(cls, proxy: ProxyURL) -> ProxyPolicy:
        return cls(http=proxy, https=proxy, origin=proxy.origin)

    @classmethod
    def direct(cls, origin: str = "proxy: none") -> ProxyPolicy:
        return cls(origin=origin)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxyPolicy:
        """Read the proxy variables as curl does (see the module docstring); :class:`ProxyParseError`
        names the variable at fault, never its value."""
        env = os.environ if environ is None else environ
        cgi = "REQUEST_METHOD" in env

        def pick(*names: str) -> ProxyURL | None:
            for name in names:
                if cgi and name == "HTTP_PROXY":
                    continue
                value = env.get(name, "").strip()
                if value:
                    try:
                        return parse_proxy(value, origin=name)
                    except ProxyParseError as exc:
                        raise ProxyParseError(f"{name}: {exc}") from None
            return None

        fallback = ("all_proxy", "ALL_PROXY")
        return cls(http=pick("http_proxy", "HTTP_PROXY", *fallback), https=pick("https_proxy", "HTTPS_PROXY", *fallback),
                   no_proxy=parse_no_proxy(env.get("no_proxy") or env.get("NO_PROXY") or ""))

    def select(self, scheme: str, host: str, port: int) -> ProxyURL | None:
        """The proxy for a request to ``scheme://host:port``, or None to connect directly."""
        proxy = self.https if scheme == "https" else self.http if scheme == "http" else None
        if proxy is None or self.no_proxy.matches(host, port):
            return None
        return proxy

    def describe(self) -> str:
        """What this policy does, credentials redacted."""
        if self.http is None and self.https is None:
            return "direct" if self.origin != "environment" else "direct (no proxy variables set)"
        if self.http == self.https and self.origin != "environment":
            return f"{self.https} (from {self.origin})"
        parts = [f"{s}: {p} (from {p.origin})" for s, p in (("https", self.https), ("http", self.http)) if p]
        return ", ".join(parts)

    def route(self, url: str) -> str:
        """How a request to ``url`` goes, for ``mirrors``: ``direct (...)`` or the proxy and where it was set."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "-"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxy = self.select(parts.scheme, parts.hostname, port)
        if proxy is not None:
            return f"{proxy} (from {proxy.origin})"
        if self.origin != "environment":
            return f"direct ({self.origin})"
        if (self.https if parts.scheme == "https" else self.http) is not None:
            return "direct (NO_PROXY)"
        return "direct"
