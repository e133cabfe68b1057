"""Where a file's bytes are, as a source says it: a URL, the headers to send, and the route to take.

Sources hand these to the engine; they hold no connection.  The engine (and
whatever else reads a location: small files, the probe) turns a :class:`Route`
into a pooled client (:mod:`qwen_fetch.net.pools`), so one pull keeps one pool
per origin, whichever sources point at it.  Pure data: no httpx here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from qwen_fetch.core.proxy import ProxyPolicy

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Route:
    """How to reach a location: a source's ``proxy:`` and ``ca_bundle:`` (None: the environment decides),
    or ``folder``: ``file://`` URLs under a local directory (``kind: dir``)."""

    proxy: ProxyPolicy | None = None
    ca_bundle: str | None = None
    folder: str | None = None


@dataclass(frozen=True)
class FileLocation:
    """Where one file's bytes can be fetched with GET (+ Range)."""

    source: str
    url: str
    route: Route = Route()
    headers: Headers = field(default=(), repr=False)  # the source's auth for ``url``'s origin: never printed


class OriginToken:
    """A token sent to one origin only: ``Authorization: Bearer`` and, if named, a session cookie.

    Headers are added per request, for a URL on the endpoint's own origin; a
    redirect elsewhere (a CDN, object storage) never gets them: httpx drops
    ``Authorization`` on a cross-origin redirect and ``Cookie`` on every one.
    """

    def __init__(self, token: str, endpoint: str, session_cookie: str | None = None) -> None:
        self._token = token
        self._cookie = session_cookie
        self._origin = _origin(endpoint)

    def __repr__(self) -> str:  # never print the token
        return f"OriginToken(origin={self._origin!r})"

    def matches(self, url: str) -> bool:
        return _origin(url) == self._origin

    def headers(self, url: str) -> Headers:
        """The auth headers for a request to ``url``: none unless it is on the endpoint's origin."""
        if not self.matches(url):
            return ()
        if self._cookie:
            return (("Authorization", f"Bearer {self._token}"), ("Cookie", f"{self._cookie}={self._token}"))
        return (("Authorization", f"Bearer {self._token}"),)


def auth_headers(token: OriginToken | None, url: str) -> Headers:
    return token.headers(url) if token is not None else ()


def _origin(url: str) -> tuple[str, str | None, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)
