"""What ``--source auto`` picks: the pure ranking, table-driven."""

from __future__ import annotations

import pytest

from qwen_fetch.core.errors import ExitCode
from qwen_fetch.core.ranking import ProbeResult, all_down_error, rank
from qwen_fetch.sources.config import SourceConfig


def sc(name: str, priority: int, kind: str = "hf", endpoint: str = "http://127.0.0.1:1") -> SourceConfig:
    return SourceConfig(name=name, kind=kind, endpoint=endpoint, priority=priority)


def ok(name: str, latency: float | None = 10.0, speed: float | None = None) -> ProbeResult:
    return ProbeResult(name, True, latency, speed, None)


def down(name: str, reason: str = "cannot connect") -> ProbeResult:
    return ProbeResult(name, False, None, None, reason)


A, B, C, D = sc("a", 10), sc("b", 20), sc("c", 30), sc("d", 20)

RANK_CASES = [
    ("priority order, not speed", [A, B, C], [ok("a", 900), ok("b", 1), ok("c", 1, 1e9)], ["a", "b", "c"], []),
    ("unhealthy skipped", [A, B, C], [down("a"), ok("b"), ok("c")], ["b", "c"], ["a"]),
    ("equal priority: file order, not latency", [A, B, D], [ok("a"), ok("b", 50), ok("d", 5)], ["a", "b", "d"], []),
    ("equal priority: file order, not speed", [B, D], [ok("b", 5, 10), ok("d", 5, 20)], ["b", "d"], []),
    ("equal everything: file order", [D, B], [ok("b"), ok("d")], ["d", "b"], []),
    ("not probed counts as healthy", [A, B], [down("b")], ["a"], ["b"]),
    ("config order given unsorted", [C, A, B], [ok("a"), ok("b"), ok("c")], ["a", "b", "c"], []),
    ("all down", [A, B], [down("b", "HTTP 503"), down("a")], [], ["a", "b"]),
]


@pytest.mark.parametrize("configs,results,order,skipped", [c[1:] for c in RANK_CASES], ids=[c[0] for c in RANK_CASES])
def test_rank(configs: list[SourceConfig], results: list[ProbeResult], order: list[str], skipped: list[str]) -> None:
    r = rank(results, configs)
    assert [s.name for s in r.order] == order
    assert [s.name for s, _ in r.skipped] == skipped
    assert (r.primary.name if r.primary else None) == (order[0] if order else None)
    assert [s.name for s in r.fallbacks] == order[1:]


def test_all_down_error_lists_every_reason() -> None:
    err = all_down_error(rank([down("a", "cannot connect"), down("b", "HTTP 503 from the endpoint")], [A, B]),
                         "Qwen/X")
    assert err.exit_code == ExitCode.SOURCE and "Qwen/X" in err.message
    assert err.context == ["a: cannot connect", "b: HTTP 503 from the endpoint"]
