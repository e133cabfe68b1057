"""The connections of one pull: a client per route, an idle pool per origin, sized from one count.

Whoever runs a pull owns one :class:`Pools` (the engine makes its own when it
is given none).  Sources make their API calls through it and hand back
:class:`~qwen_fetch.net.location.FileLocation` s; the engine, the small-file
fetches and the probe read those through it too, so a pull keeps one pool of
keep-alive connections per origin (per proxy), whichever sources point there.
Its size comes from the engine's connection count (:func:`~qwen_fetch.net.jobs.pool_size`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

import httpx

from qwen_fetch.net.deadline import DEFAULT_TIMEOUT
from qwen_fetch.net.http import make_client
from qwen_fetch.net.jobs import EngineOptions, pool_size
from qwen_fetch.net.location import Route


class Pools:
    """One httpx client per :class:`Route` (proxy and CA policy), opened on first use, each keeping at most
    :attr:`per_origin` idle connections per origin."""

    def __init__(self, connections: int, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.connections = connections
        self.per_origin = pool_size(connections)
        self.timeout = timeout  # API calls; the engine's requests carry their own
        self._clients: dict[Route, httpx.Client] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_engine(cls, options: EngineOptions) -> Pools:
        return cls(options.connections, timeout=options.request_timeout)

    def client(self, route: Route) -> httpx.Client:
        """The client for ``route`` (raises :class:`~qwen_fetch.core.errors.QFError` for an unusable proxy
        variable or CA bundle, or offline)."""
        with self._lock:
            client = self._clients.get(route)
            if client is None:
                client = self._clients[route] = self._open(route)
            return client

    def _open(self, route: Route) -> httpx.Client:
        if route.folder is not None:
            from qwen_fetch.store.transport import FileTransport

            return httpx.Client(transport=FileTransport(Path(route.folder)))
        return make_client(timeout=self.timeout, pool_size=self.per_origin, proxy=route.proxy,
                           ca_bundle=route.ca_bundle)

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for c in clients:
            c.close()

    def __enter__(self) -> Pools:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
