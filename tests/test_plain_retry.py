"""Small plain files get the engine's retry policy, and an HTTP error is never called a hash mismatch.

A fresh pull or ``lock`` downloads the plain git files (no sha256 in the hub
metadata) to hash them.  A hub that answers 503 or 429 once per file must not
fail the run; one that keeps answering 500 is a source failure (exit 4, the
status in the message), never an integrity failure (exit 3).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_fetch.core.errors import ExitCode, SourceError
from qwen_fetch.net.jobs import EngineOptions
from qwen_fetch.net.plainfile import PlainSink
from qwen_fetch.net.pools import Pools
from qwen_fetch.net.smallget import SmallGetError, get_small
from qwen_fetch.ops.pull import Puller, PullOptions
from qwen_fetch.sources.config import load_config
from qwen_fetch.sources.registry import make_source
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer

QUICK = EngineOptions(connections=4, backoff_base=0.01, backoff_max=0.05)


def _plain(store, commit: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.path for f in store.files(QWEN3_VL_8B, commit) if not f.lfs]


@pytest.mark.parametrize("status", [503, 429])
def test_lock_and_pull_survive_one_refusal_per_file(status: int, cli, store, sharded_repo, hub: HubServer,
                                                     mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    plain = _plain(store, sharded_repo)
    assert plain
    for cmd in (("lock", QWEN3_VL_8B, "--lock", "a.lock"),
                ("pull", QWEN3_VL_8B, "--lock", "b.lock", "--cache-dir", "cache", "--no-smoke")):
        for p in plain:
            hub.faults.statuses[p] = [(status, {"Retry-After": "0"})]
        r = cli(*cmd, "--config", str(mirrors), "--json")
        assert r.exit_code == 0, r.stderr
        assert all(not hub.faults.statuses[p] for p in plain), "every file was refused once"
        if cmd[0] == "pull":  # its summary lists the retries it made
            assert len([n for n in r.json()["notes"] if f"HTTP {status}" in n]) == len(plain)
    assert Path("a.lock").read_text() == Path("b.lock").read_text()


def test_permanent_500_is_a_source_error_naming_the_status(store, sharded_repo, hub: HubServer,
                                                           mirrors: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hub.faults.statuses["config.json"] = [(500, {})] * 100
    opts = PullOptions(model_id=QWEN3_VL_8B, cache_dir=tmp_path / "cache", lock_path=tmp_path / "x.lock",
                       download=False, engine=QUICK)
    puller = Puller(load_config(mirrors), opts)
    try:
        with pytest.raises(SourceError) as ei:
            puller.run()
    finally:
        puller.close()
    err = ei.value
    assert err.exit_code == ExitCode.SOURCE and "config.json" in err.message
    assert any("HTTP 500" in line for line in err.context), err.context
    assert "hash" not in err.message and "matching" not in err.message
    assert len([e for e in hub.log if e["path"].endswith("/config.json")]) == QUICK.max_attempts
    assert not (tmp_path / "x.lock").exists()


def test_wrong_bytes_on_one_source_and_500_on_the_other_is_an_integrity_error(store, sharded_repo, hub: HubServer,
                                                                              tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from qwen_fetch.core.errors import IntegrityError

    with HubServer(store) as other:
        other.faults.statuses["config.json"] = [(500, {})] * 100
        hub.faults.corrupt["config.json"] = 3
        cfg = tmp_path / "two.yaml"
        cfg.write_text(f"sources:\n  - {{name: a, kind: hf, endpoint: '{hub.url}', priority: 1}}\n"
                       f"  - {{name: b, kind: hf, endpoint: '{other.url}', priority: 2}}\n")
        opts = PullOptions(model_id=QWEN3_VL_8B, cache_dir=tmp_path / "cache", lock_path=tmp_path / "x.lock",
                           download=False, engine=QUICK)
        puller = Puller(load_config(cfg), opts)
        try:
            with pytest.raises(IntegrityError) as ei:
                puller.run()
        finally:
            puller.close()
    text = "\n".join(ei.value.context)
    assert "a: git blob id" in text and "b: HTTP 500" in text


def test_retry_after_is_honoured(store, sharded_repo, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    hub.faults.statuses["config.json"] = [(429, {"Retry-After": "3"}), (503, {})]
    http = Pools(4)
    src = make_source(load_config(mirrors).get("local"), http=http)
    size = next(f.size for f in store.files(QWEN3_VL_8B, sharded_repo) if f.path == "config.json")
    slept: list[float] = []
    sink = PlainSink(None, size)
    try:
        get_small(http, src.locate(QWEN3_VL_8B, sharded_repo, "config.json"), size,  # type: ignore[arg-type]
                  EngineOptions(connections=4, backoff_base=0.01, backoff_max=20.0), sink, sleep=slept.append,
                  jitter=lambda: 0.0)
    finally:
        src.close()
        http.close()
    assert sink.written == size and sink.read() == next(f.disk.read_bytes() for f in store.files(QWEN3_VL_8B, sharded_repo) if f.path == "config.json")
    sink.close()
    assert slept == [3.0, 0.01]  # the server's wait, then the backoff's second step (0.02 s, halved at no jitter)


def test_not_found_fails_the_source_at_once(store, sharded_repo, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    hub.faults.statuses["config.json"] = [(404, {})] * 10
    http = Pools(4)
    src = make_source(load_config(mirrors).get("local"), http=http)
    try:
        with pytest.raises(SmallGetError) as ei:
            get_small(http, src.locate(QWEN3_VL_8B, sharded_repo, "config.json"), 10, QUICK,  # type: ignore[arg-type]
                      PlainSink(None, 10), sleep=lambda s: None)
    finally:
        src.close()
        http.close()
    assert "404" in ei.value.reason and not ei.value.integrity
    assert len(hub.faults.statuses["config.json"]) == 9
