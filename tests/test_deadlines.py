"""A dripping source fails like a dead one: every request has a silence timeout and a minimum rate.

The minimum-rate rule is pure (:class:`RateGuard`, table-driven with literal
clocks).  The pulls run against real loopback servers that drip — API answers
at a byte a second, file bodies at a byte every 5 s, response headers that never
end — with a healthy second source; the limits are made small through the
environment (``QWEN_FETCH_TIMEOUT`` and friends), and the assertions are about
the outcome (which source served what), never about timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_fetch.core.errors import ConfigError
from qwen_fetch.net.deadline import Deadlines, RateGuard, TooSlow
from tests.conftest import write_mirrors
from tests.support.drip import DripHeadersServer
from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.hub import Faults, HubServer
from tests.support.repo import RepoStore

# (name, min_rate, window, [(bytes, at)...], index of the feed that must raise, or None)
RATE_CASES = [
    ("fast transfer", 100, 2.0, [(1000, 0.5), (1000, 1.0), (1000, 2.5), (1000, 4.0)], None),
    ("a byte every 5 s", 100, 2.0, [(1, 5.0)], 0),
    ("slow before a full window: not judged yet", 100, 2.0, [(1, 1.0), (1, 1.9)], None),
    ("fast, then a trickle for longer than a window", 100, 2.0, [(10_000, 1.0), (1, 2.5), (1, 4.0)], 2),
    ("exactly the minimum", 100, 2.0, [(100, 1.0), (100, 2.0), (100, 3.0), (100, 4.0)], None),
    ("check off", 0, 2.0, [(1, 100.0)], None),
]


@pytest.mark.parametrize("min_rate,window,feeds,raises", [c[1:] for c in RATE_CASES], ids=[c[0] for c in RATE_CASES])
def test_rate_guard(min_rate: int, window: float, feeds: list[tuple[int, float]], raises: int | None) -> None:
    g = RateGuard(min_rate, window, now=0.0)
    for i, (n, at) in enumerate(feeds):
        if i == raises:
            with pytest.raises(TooSlow, match="QWEN_FETCH_MIN_RATE"):
                g.feed(n, at)
            return
        g.feed(n, at)
    assert raises is None


def test_deadlines_from_env() -> None:
    assert Deadlines.from_env({}) == Deadlines()
    d = Deadlines.from_env({"QWEN_FETCH_TIMEOUT": "3", "QWEN_FETCH_MIN_RATE": "0", "QWEN_FETCH_RATE_WINDOW": "1.5"})
    assert (d.timeout, d.min_rate, d.window, d.connect) == (3.0, 0, 1.5, 3.0)
    for var, value in (("QWEN_FETCH_TIMEOUT", "0"), ("QWEN_FETCH_TIMEOUT", "soon"), ("QWEN_FETCH_MIN_RATE", "-1"),
                       ("QWEN_FETCH_RATE_WINDOW", "inf")):
        with pytest.raises(ConfigError, match=var):
            Deadlines.from_env({var: value})


# -- real dripping servers ------------------------------------------------------------

FAST = {"QWEN_FETCH_TIMEOUT": "10", "QWEN_FETCH_MIN_RATE": "1000", "QWEN_FETCH_RATE_WINDOW": "1"}


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[HubServer, HubServer]]:
    store = RepoStore(tmp_path / "drip-store")
    add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20)
    with HubServer(store, Faults()) as dripping, HubServer(store, Faults()) as good:
        yield dripping, good


def _pull(cli, cfg: Path, env: dict[str, str], *extra: str):  # type: ignore[no-untyped-def]
    # The subprocess limit only keeps a regression from hanging the suite; nothing asserts on time.
    return cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", "cache", "--no-smoke", "--json", *extra,
               env=env, timeout=180)


def test_api_answer_at_a_byte_a_second_falls_back(cli, tmp_path: Path, two) -> None:  # type: ignore[no-untyped-def]
    dripping, good = two
    dripping.faults.drip["api"] = 1.0
    cfg = write_mirrors(tmp_path / "m.yaml", ("dripping", dripping.url), ("good", good.url))
    r = _pull(cli, cfg, FAST)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["source"] == "good" and set(doc["served_by"].values()) == {"good"}
    assert "too slow" in doc["source_failures"]["dripping"]


def test_file_bodies_at_a_byte_per_5s_fall_back(cli, tmp_path: Path, two) -> None:  # type: ignore[no-untyped-def]
    """The API answers normally (the dripping hub is primary); every file body drips.  The silence
    timeout (10 s) never fires, so only the minimum rate can move the files to the second source."""
    dripping, good = two
    dripping.faults.drip["*"] = 5.0
    cfg = write_mirrors(tmp_path / "m.yaml", ("dripping", dripping.url), ("good", good.url))
    r = _pull(cli, cfg, FAST)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["source"] == "dripping"
    assert set(doc["served_by"].values()) == {"good"}, doc["served_by"]
    assert any("too slow" in f for f in doc["fallbacks"]), doc["fallbacks"]
    assert cli("verify", QWEN3_VL_8B, "--cache-dir", "cache").exit_code == 0


def test_pinned_shards_dripping_fall_back_through_the_engine(cli, tmp_path: Path, two) -> None:  # type: ignore[no-untyped-def]
    dripping, good = two
    cfg = write_mirrors(tmp_path / "m.yaml", ("dripping", dripping.url), ("good", good.url))
    assert cli("lock", QWEN3_VL_8B, "--config", str(cfg)).exit_code == 0
    dripping.faults.drip["*"] = 5.0
    r = _pull(cli, cfg, FAST, "--frozen")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert set(doc["served_by"].values()) == {"good"} and len(doc["served_by"]) == doc["files"]
    assert any("too slow" in n for n in doc["notes"]), doc["notes"]


def test_a_lone_dripping_source_fails_instead_of_hanging(cli, tmp_path: Path, two) -> None:  # type: ignore[no-untyped-def]
    dripping, _ = two
    dripping.faults.drip["api"] = 1.0
    cfg = write_mirrors(tmp_path / "m.yaml", ("dripping", dripping.url))
    r = _pull(cli, cfg, FAST)
    assert r.exit_code == 4, r.stderr
    assert "too slow" in r.json()["message"] and "QWEN_FETCH_MIN_RATE" in r.stdout


def test_response_headers_that_never_end_fall_back(cli, tmp_path: Path, two) -> None:  # type: ignore[no-untyped-def]
    """Each header byte arrives well within the read timeout; only a deadline for the whole header
    block ends the wait."""
    _, good = two
    with DripHeadersServer(interval=0.2) as drip:
        cfg = write_mirrors(tmp_path / "m.yaml", ("dripping", drip.url), ("good", good.url))
        r = _pull(cli, cfg, {"QWEN_FETCH_TIMEOUT": "2"})
        assert drip.requests >= 1
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["source"] == "good" and "timed out" in doc["source_failures"]["dripping"]
