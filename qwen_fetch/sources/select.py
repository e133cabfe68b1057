"""``qwen-fetch mirrors --probe``: how healthy and fast each source is.

The probe is the only I/O of source selection: one cheap request to the
endpoint for reachability and latency (the source's own health check,
``Source.reach``) and, with a model id, a resolve of that model plus a short
ranged read of its largest file for a throughput sample.  Short timeouts; the
sources the user asked to probe are probed in parallel.  What ``auto`` makes of
the results is pure: :mod:`qwen_fetch.core.ranking`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx

from qwen_fetch.core.errors import QFError
from qwen_fetch.core.ranking import ProbeResult
from qwen_fetch.net.http import describe_exc
from qwen_fetch.net.location import FileLocation
from qwen_fetch.net.pools import Pools
from qwen_fetch.sources.base import Source
from qwen_fetch.sources.config import SourceConfig
from qwen_fetch.sources.registry import make_source

PROBE_TIMEOUT = 5.0  # seconds per request
SAMPLE_BYTES = 4 << 20  # throughput sample: at most this many bytes ...
SAMPLE_SECONDS = 3.0  # ... or this long, whichever ends first


def probe(source: Source, *, model: str | None = None, revision: str | None = None, http: Pools | None = None,
          sample_bytes: int = SAMPLE_BYTES, sample_seconds: float = SAMPLE_SECONDS) -> ProbeResult:
    """Probe one source: reachability + latency, and with ``model`` a resolve and a throughput sample.

    Latency is the time to the response headers of ``GET <endpoint>/`` (connect
    and TLS included); any HTTP answer below 500 counts as reachable.  With a
    model, a source that cannot resolve it is unhealthy *for that model*; the
    sample is read through ``http`` (the pools the source was opened with; None:
    a pool of its own).  Never raises for network trouble: failures become
    ``ok=False`` results.
    """
    name = source.name
    reached = source.reach()
    if reached is None:
        return ProbeResult(name, True, None, None, None, sample="not probed (no HTTP client)")
    latency = reached.latency_ms
    if reached.problem is not None:
        return ProbeResult(name, False, latency, None, reached.problem, sample="endpoint")
    if model is None:
        return ProbeResult(name, True, latency, None, None, sample="endpoint")
    try:
        listing = source.resolve(model, revision or source.default_revision())
    except QFError as exc:
        return ProbeResult(name, False, latency, None, exc.message, sample=model)
    candidates = sorted(listing.files, key=lambda f: (-f.size, f.path))
    if not candidates or candidates[0].size == 0:
        return ProbeResult(name, True, latency, None, None, sample=model, commit=listing.commit)
    target = candidates[0]
    want = min(sample_bytes, target.size)
    loc = source.locate(model, listing.commit, target.path)
    if http is None:
        with Pools(1) as own:
            return _sample(name, latency, own, loc, target.path, want, sample_seconds, listing.commit)
    return _sample(name, latency, http, loc, target.path, want, sample_seconds, listing.commit)


def _sample(name: str, latency: float | None, http: Pools, loc: FileLocation, path: str, want: int,
            sample_seconds: float, commit: str) -> ProbeResult:
    """Read the first ``want`` bytes at ``loc`` (or for ``sample_seconds``) for a throughput figure."""
    got = 0
    t1 = time.monotonic()
    try:
        with http.client(loc.route).stream("GET", loc.url, headers=[*loc.headers, ("Range", f"bytes=0-{want - 1}")]
                                           ) as resp:
            if resp.status_code not in (200, 206):
                return ProbeResult(name, False, latency, None, f"HTTP {resp.status_code} reading {path}",
                                   sample=path, commit=commit)
            for chunk in resp.iter_bytes():
                got += len(chunk)
                if got >= want or time.monotonic() - t1 > sample_seconds:
                    break
    except httpx.HTTPError as exc:
        return ProbeResult(name, False, latency, None, f"reading {path}: {describe_exc(exc)}", sample=path,
                           commit=commit)
    seconds = max(time.monotonic() - t1, 1e-6)
    return ProbeResult(name, True, latency, round(min(got, want) / seconds, 1), None, sample=path, commit=commit)


def probe_all(configs: Sequence[SourceConfig], *, model: str | None = None, revision: str | None = None,
              timeout: float = PROBE_TIMEOUT, sample_bytes: int = SAMPLE_BYTES,
              sample_seconds: float = SAMPLE_SECONDS) -> list[ProbeResult]:
    """Probe every source in parallel with short timeouts; results in ``configs`` order.

    Without ``revision`` each source resolves its own default branch
    (``main`` on HF hubs, ``master`` on ModelScope); with it, every source
    is asked for that revision.
    """

    def one(sc: SourceConfig) -> ProbeResult:
        with Pools(1, timeout=timeout) as http:
            try:
                src = make_source(sc, http=http)
            except QFError as exc:
                return ProbeResult(sc.name, False, None, None, exc.message)
            try:
                return probe(src, model=model, revision=revision, http=http, sample_bytes=sample_bytes,
                             sample_seconds=sample_seconds)
            except QFError as exc:  # a source's own validation (e.g. a hostile listing)
                return ProbeResult(sc.name, False, None, None, exc.message)
            finally:
                src.close()

    if not configs:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(configs))) as pool:
        return list(pool.map(one, configs))
