"""The engine owns connections: one pool per origin, sized from the engine's connection count; sources hand
out locations (URL, headers, route), never clients."""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from pathlib import Path

from qwen_fetch.core.progress import NullProgress
from qwen_fetch.core.proxy import ProxyPolicy
from qwen_fetch.net.engine import fetch_all
from qwen_fetch.net.h1 import H1Transport
from qwen_fetch.net.jobs import SMALL_FETCHES, EngineOptions, pool_size
from qwen_fetch.net.location import FileLocation, OriginToken, Route
from qwen_fetch.net.pools import Pools
from qwen_fetch.sources.config import SourceConfig
from qwen_fetch.sources.registry import make_source
from tests.support.hub import HubServer
from tests.test_engine_support import REPO, make_jobs, make_repo, options


def transport(pools: Pools, route: Route) -> H1Transport:
    t = pools.client(route)._transport  # the transport make_client built for this route
    assert isinstance(t, H1Transport)
    return t


def test_pool_size_is_the_engines_count_plus_the_small_fetches() -> None:
    for n in (1, 7, 48):
        pools = Pools.for_engine(EngineOptions(connections=n))
        assert pools.connections == n and pools.per_origin == pool_size(n) == n + SMALL_FETCHES
        assert transport(pools, Route()).max_idle == n + SMALL_FETCHES
        pools.close()


def test_one_client_per_route_shared_by_the_sources_that_take_it() -> None:
    with Pools(4) as pools:
        a = make_source(SourceConfig(name="a", kind="hf", endpoint="http://127.0.0.1:1"), http=pools)
        b = make_source(SourceConfig(name="b", kind="hf", endpoint="http://localhost:2"), http=pools)
        direct = make_source(SourceConfig(name="c", kind="hf", endpoint="http://127.0.0.1:1",
                                          proxy=ProxyPolicy.direct()), http=pools)
        la, lb, lc = (s.locate(REPO, "0" * 40, "config.json") for s in (a, b, direct))  # type: ignore[arg-type]
        assert la.route == lb.route != lc.route
        assert pools.client(la.route) is pools.client(lb.route) is not pools.client(lc.route)
        for s in (a, b, direct):
            s.close()
        assert pools.client(la.route) is pools.client(lb.route)  # closing a source leaves the pull's pools open


def test_a_location_carries_no_connection_and_never_shows_its_token() -> None:
    assert [f.name for f in dataclasses.fields(FileLocation)] == ["source", "url", "route", "headers"]
    url = "https://hub.example/org/m/resolve/c/f"
    loc = FileLocation("hub", url, headers=OriginToken("hf_secret", "https://hub.example").headers(url))
    assert dict(loc.headers) == {"Authorization": "Bearer hf_secret"}
    assert "hf_secret" not in repr(loc)


def test_idle_connections_are_capped_per_origin_not_in_all(tmp_path: Path) -> None:
    store, commit, _ = make_repo(tmp_path, {"a.bin": 50_000})
    with HubServer(store) as hub, Pools(1) as pools:
        cap = pools.per_origin
        client, t = pools.client(Route()), transport(pools, Route())
        other = hub.url.replace("127.0.0.1", "localhost")

        def hold(base: str, n: int) -> None:
            """``n`` requests open at once (so ``n`` connections), then each read to the end and closed."""
            with ExitStack() as stack:
                responses = [stack.enter_context(client.stream("GET", f"{base}/{REPO}/resolve/{commit}/a.bin"))
                             for _ in range(n)]
                for r in responses:
                    r.read()

        hold(hub.url, cap + 3)
        hold(other, 3)
        idle = {host: n for (_, host, _, _), n in t.idle().items()}
        assert idle == {"127.0.0.1": cap, "localhost": 3}


def test_the_engine_reads_through_the_pools_it_is_given(tmp_path: Path) -> None:
    store, commit, data = make_repo(tmp_path, {"a.bin": 300_000, "b.bin": 200_000})
    with HubServer(store) as hub, Pools.for_engine(options(connections=3)) as pools:
        jobs = make_jobs(tmp_path / "cache", commit, data, [("hub", hub.url)])
        fetch_all(jobs, options(connections=3), NullProgress(), pools=pools)
        ports = {r["port"] for r in hub.log}
        kept = sum(transport(pools, Route()).idle().values())
        assert 1 <= kept <= len(ports)  # the engine's connections went back to these pools
