"""What the hub kinds share (HF-compatible, ModelScope): their side of the pull's connections, capped
JSON reads, the endpoint check.

Kept apart from any one kind so that no kind module imports another.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from qwen_fetch.core.errors import Ref, SourceError
from qwen_fetch.core.manifest import ListingError
from qwen_fetch.net.deadline import MIN_RATE_ENV, Deadlines, TooSlow
from qwen_fetch.net.http import describe_exc, source_error
from qwen_fetch.net.location import FileLocation, Headers, OriginToken, Route, auth_headers
from qwen_fetch.net.pools import Pools
from qwen_fetch.sources.base import Reachability
from qwen_fetch.sources.config import SourceConfig

MAX_JSON_BYTES = 64 * 1024 * 1024


class HubConnection:
    """One hub source's use of the pull's connections: its route (``proxy:``, ``ca_bundle:``), its token
    (sent to its endpoint's origin only), the client its API calls go through.

    ``http``: the pull's :class:`Pools`; without it (a source used on its own) a
    small pool of its own, closed by :meth:`close`.  Opening it checks the proxy
    variables and CA bundle (a :class:`~qwen_fetch.core.errors.ConfigError`).
    """

    def __init__(self, config: SourceConfig, http: Pools | None, *, timeout: float,
                 session_cookie: str | None = None) -> None:
        self.name, self.endpoint = config.name, config.endpoint
        self.route = Route(proxy=config.proxy, ca_bundle=config.ca_bundle)
        token = config.token()
        self.token = OriginToken(token, config.endpoint, session_cookie) if token else None
        self._own = http is None
        self.http = http if http is not None else Pools(1, timeout=timeout)
        try:
            self.client = self.http.client(self.route)
        except BaseException:
            self.close()
            raise

    def headers(self, url: str) -> Headers:
        return auth_headers(self.token, url)

    def get_json(self, url: str, *, params: dict[str, str] | None = None,
                 deadlines: Deadlines | None = None) -> tuple[Any, httpx.Response]:
        return read_json(self.client, url, self.name, params=params, deadlines=deadlines, headers=self.headers(url))

    def location(self, url: str) -> FileLocation:
        return FileLocation(source=self.name, url=url, route=self.route, headers=self.headers(url))

    def reach(self) -> Reachability:
        return reach_endpoint(self.client, self.endpoint, headers=self.headers(self.endpoint + "/"))

    def close(self) -> None:
        if self._own:
            self.http.close()


def read_json(client: httpx.Client, url: str, source: str, *, params: dict[str, str] | None = None,
              deadlines: Deadlines | None = None, headers: Headers = ()) -> tuple[Any, httpx.Response]:
    """GET a JSON document with a size cap and the minimum rate of ``deadlines``; translate transport errors."""
    guard = (deadlines or Deadlines()).guard(time.monotonic())
    try:
        with client.stream("GET", url, params=params, headers=[("Accept", "application/json"), *headers]) as resp:
            if resp.status_code >= 400:
                resp.read()
                return None, resp
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_JSON_BYTES:
                raise ListingError(f"source {source!r} sent a {int(declared)}-byte listing (limit {MAX_JSON_BYTES})",
                                   hint="the mirror is broken or hostile; use another --source")
            buf = bytearray()
            for chunk in resp.iter_bytes():
                buf += chunk
                if len(buf) > MAX_JSON_BYTES:
                    raise ListingError(f"source {source!r} sent a listing over {MAX_JSON_BYTES} bytes",
                                       hint="the mirror is broken or hostile; use another --source")
                guard.feed(len(chunk), time.monotonic())
    except httpx.HTTPError as exc:
        raise source_error(source, exc) from exc
    except TooSlow as exc:
        raise SourceError(f"source {source!r} answers {urlsplit(url).path} {exc.reason}",
                          hint=f"the source is overloaded or throttled; {MIN_RATE_ENV}=0 turns the check off",
                          reference=Ref.SOURCE_TOO_SLOW) from None
    try:
        return json.loads(bytes(buf)), resp
    except (ValueError, RecursionError):
        raise ListingError(f"source {source!r} sent malformed JSON from {urlsplit(url).path}",
                           hint="the mirror is broken or hostile; use another --source") from None


def reach_endpoint(client: httpx.Client, endpoint: str, headers: Headers = ()) -> Reachability:
    """Time to the response headers of ``GET <endpoint>/`` (connect and TLS included).

    Any HTTP answer below 500 counts as reachable: a hub's root may well be a 404
    or a redirect (not followed), but something answered.
    """
    t0 = time.monotonic()
    try:
        with client.stream("GET", endpoint + "/", headers=list(headers), follow_redirects=False) as resp:
            latency = round((time.monotonic() - t0) * 1000, 1)
            status = resp.status_code
    except httpx.HTTPError as exc:
        return Reachability(None, describe_exc(exc))
    if status >= 500:
        return Reachability(latency, f"HTTP {status} from the endpoint")
    return Reachability(latency)
