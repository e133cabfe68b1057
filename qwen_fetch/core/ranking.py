"""Which sources ``--source auto`` uses, in which order (pure: what was probed in, an order out).

``pull`` itself probes nothing: it tries the sources one by one in ``priority``
order (lower first, file order for ties), contacting the next only when the
previous one failed.  :func:`rank` shows that order for probed sources:

1. A source whose probe failed is skipped, with its reason kept for the
   "all sources down" error (:func:`all_down_error`).  A source that was not
   probed counts as healthy: probing is an optimisation, not a gate.
2. Healthy sources come in ``priority`` order, ties in file order, as ``pull``
   tries them.  Priority is the user's intent (a nearby mirror, a paid endpoint
   last); latency and throughput are shown, not used.
3. The first healthy source is where a pull starts (it names the commit the
   lock records); the others are per-file fallbacks.  Pins are content hashes,
   so any source may serve any file whose sha256 matches.

The probe itself (the I/O) is :mod:`qwen_fetch.sources.select`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from qwen_fetch.core.errors import Ref, SourceError


class Candidate(Protocol):
    """What ranking needs of a source's configuration."""

    @property
    def name(self) -> str: ...

    @property
    def priority(self) -> int: ...


C = TypeVar("C", bound=Candidate)


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
class Ranking(Generic[C]):
    """The outcome of :func:`rank`: sources to use, in order, and those skipped with why."""

    order: tuple[C, ...]
    skipped: tuple[tuple[C, str], ...]

    @property
    def primary(self) -> C | None:
        return self.order[0] if self.order else None

    @property
    def fallbacks(self) -> tuple[C, ...]:
        return self.order[1:]


def rank(results: Iterable[ProbeResult], configs: Sequence[C]) -> Ranking[C]:
    """Order ``configs`` the way ``--source auto`` tries them (see the module docstring)."""
    by_name = {r.name: r for r in results}
    healthy: list[tuple[int, int, C]] = []
    skipped: list[tuple[int, int, C, str]] = []
    for i, sc in enumerate(configs):
        r = by_name.get(sc.name)
        if r is not None and not r.ok:
            skipped.append((sc.priority, i, sc, r.reason or "unhealthy"))
            continue
        healthy.append((sc.priority, i, sc))
    healthy.sort(key=lambda t: t[:2])
    skipped.sort(key=lambda t: t[:2])
    return Ranking(order=tuple(t[2] for t in healthy), skipped=tuple((t[2], t[3]) for t in skipped))


def all_down_error(ranking: Ranking[C], what: str = "any source") -> SourceError:
    """The error for an empty ranking: one line per source with its reason (exit 4)."""
    return SourceError(f"no healthy source for {what}",
                       context=[f"{sc.name}: {reason}" for sc, reason in ranking.skipped] or ["no source configured"],
                       hint="check the network and proxy (HTTPS_PROXY/NO_PROXY), or the endpoints in mirrors.yaml; "
                            "`qwen-fetch mirrors --probe` tests each source",
                       reference=Ref.ALL_SOURCES_FAILED)
