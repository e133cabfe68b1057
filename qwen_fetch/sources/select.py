"""``qwen-fetch mirrors --probe``: how healthy and fast each source is, and what ``auto`` would use.

``pull`` itself probes nothing: it tries the sources one by one in ``priority``
order (lower first, file order for ties), contacting the next only when the
previous one failed (``sourcechain.py``).  :func:`rank` shows that order for
probed sources (pure):

1. A source whose probe failed is skipped, with its reason kept for the
   "all sources down" error (:func:`all_down_error`).  A source that was not
   probed counts as healthy: probing is an optimisation, not a gate.
2. Healthy sources come in ``priority`` order, ties in file order, as ``pull``
   tries them.  Priority is the user's intent (a nearby mirror, a paid endpoint
   last); latency and throughput are shown, not used.
3. The first healthy source is where a pull starts (it names the commit the
   lock records); the others are per-file fallbacks.  Pins are content hashes,
   so any source may serve any file whose sha256 matches.

The probe (:func:`probe`, :func:`probe_all`) is the only I/O here: one cheap
request to the endpoint for reachability and latency and, with a model id,
a resolve of that model plus a short ranged read of its largest file for a
throughput sample.  Short timeouts; the sources the user asked to probe are
probed in parallel.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from qwen_fetch.core.errors import QFError, Ref, SourceError
from qwen_fetch.net.http import describe_exc
from qwen_fetch.sources.base import Source, make_source
from qwen_fetch.sources.config import SourceConfig

PROBE_TIMEOUT = 5.0  # seconds per request
SAMPLE_BYTES = 4 << 20  # throughput sample: at most this many bytes ...
SAMPLE_SECONDS = 3.0  # ... or this long, whichever ends first


@dataclass(frozen=True)
class ProbeResult:
    """What a probe learned about one source.  ``reason`` says why it is unhealthy (None when ok)."""

    name: str
    ok: bool
    latency_ms: float | None
    throughput_bytes_per_s: float | None
    reason: str | None
    sample: str | None = None  # what was measured: "endpoint", or the file read for throughput
    commit: str | None = None  # with a model: the commit this source resolved

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "latency_ms": self.latency_ms,
                "throughput_bytes_per_s": self.throughput_bytes_per_s, "reason": self.reason,
                "sample": self.sample, "commit": self.commit}


@dataclass(frozen=True)
class Ranking:
    """The outcome of :func:`rank`: sources to use, in order, and those skipped with why."""

    order: tuple[SourceConfig, ...]
    skipped: tuple[tuple[SourceConfig, str], ...]

    @property
    def primary(self) -> SourceConfig | None:
        return self.order[0] if self.order else None

    @property
    def fallbacks(self) -> tuple[SourceConfig, ...]:
        return self.order[1:]


def rank(results: Iterable[ProbeResult], configs: Sequence[SourceConfig]) -> Ranking:
    """Order ``configs`` the way ``--source auto`` tries them (see the module docstring).  Pure."""
    by_name = {r.name: r for r in results}
    healthy: list[tuple[int, int, SourceConfig]] = []
    skipped: list[tuple[SourceConfig, str]] = []
    for i, sc in enumerate(configs):
        r = by_name.get(sc.name)
        if r is not None and not r.ok:
            skipped.append((sc, r.reason or "unhealthy"))
            continue
        healthy.append((sc.priority, i, sc))
    healthy.sort(key=lambda t: t[:2])
    skipped.sort(key=lambda t: (t[0].priority, configs.index(t[0])))
    return Ranking(order=tuple(t[2] for t in healthy), skipped=tuple(skipped))


def all_down_error(ranking: Ranking, what: str = "any source") -> SourceError:
    """The error for an empty ranking: one line per source with its reason (exit 4)."""
    return SourceError(f"no healthy source for {what}",
                       context=[f"{sc.name}: {reason}" for sc, reason in ranking.skipped] or ["no source configured"],
                       hint="check the network and proxy (HTTPS_PROXY/NO_PROXY), or the endpoints in mirrors.yaml; "
                            "`qwen-fetch mirrors --probe` tests each source",
                       reference=Ref.ALL_SOURCES_FAILED)


# -- the probe adapter --------------------------------------------------------------


def _elapsed_ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 1)


def probe(source: Source, *, model: str | None = None, revision: str | None = None,
          sample_bytes: int = SAMPLE_BYTES, sample_seconds: float = SAMPLE_SECONDS) -> ProbeResult:
    """Probe one source: reachability + latency, and with ``model`` a resolve and a throughput sample.

    Latency is the time to the response headers of ``GET <endpoint>/`` (connect
    and TLS included); any HTTP answer below 500 counts as reachable.  With a
    model, a source that cannot resolve it is unhealthy *for that model*.
    Never raises for network trouble: failures become ``ok=False`` results.
    """
    name = source.name
    client = getattr(source, "client", None)
    if not isinstance(client, httpx.Client):
        return ProbeResult(name, True, None, None, None, sample="not probed (no HTTP client)")
    t0 = time.monotonic()
    try:
        with client.stream("GET", source.config.endpoint + "/", follow_redirects=False) as resp:
            latency = _elapsed_ms(t0)
            status = resp.status_code
    except httpx.HTTPError as exc:
        return ProbeResult(name, False, None, None, describe_exc(exc), sample="endpoint")
    if status >= 500:
        return ProbeResult(name, False, latency, None, f"HTTP {status} from the endpoint", sample="endpoint")
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
    got = 0
    t1 = time.monotonic()
    try:
        with loc.client.stream("GET", loc.url, headers={"Range": f"bytes=0-{want - 1}"}) as resp:
            if resp.status_code not in (200, 206):
                return ProbeResult(name, False, latency, None, f"HTTP {resp.status_code} reading {target.path}",
                                   sample=target.path, commit=listing.commit)
            for chunk in resp.iter_bytes():
                got += len(chunk)
                if got >= want or time.monotonic() - t1 > sample_seconds:
                    break
    except httpx.HTTPError as exc:
        return ProbeResult(name, False, latency, None, f"reading {target.path}: {describe_exc(exc)}",
                           sample=target.path, commit=listing.commit)
    seconds = max(time.monotonic() - t1, 1e-6)
    return ProbeResult(name, True, latency, round(min(got, want) / seconds, 1), None, sample=target.path,
                       commit=listing.commit)


def probe_all(configs: Sequence[SourceConfig], *, model: str | None = None, revision: str | None = None,
              timeout: float = PROBE_TIMEOUT, sample_bytes: int = SAMPLE_BYTES,
              sample_seconds: float = SAMPLE_SECONDS) -> list[ProbeResult]:
    """Probe every source in parallel with short timeouts; results in ``configs`` order.

    Without ``revision`` each source resolves its own default branch
    (``main`` on HF hubs, ``master`` on ModelScope); with it, every source
    is asked for that revision.
    """

    def one(sc: SourceConfig) -> ProbeResult:
        try:
            src = make_source(sc, timeout=timeout, connections=2)
        except QFError as exc:
            return ProbeResult(sc.name, False, None, None, exc.message)
        try:
            return probe(src, model=model, revision=revision, sample_bytes=sample_bytes,
                         sample_seconds=sample_seconds)
        except QFError as exc:  # a source's own validation (e.g. a hostile listing)
            return ProbeResult(sc.name, False, None, None, exc.message)
        finally:
            src.close()

    if not configs:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(configs))) as pool:
        return list(pool.map(one, configs))
