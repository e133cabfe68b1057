"""The probe against loopback hubs, and what ``--source auto`` makes of it (the ranking: test_ranking.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_fetch.core.ranking import rank
from qwen_fetch.sources.config import SourceConfig
from qwen_fetch.sources.registry import make_source
from qwen_fetch.sources.select import probe, probe_all
from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.hub import Faults, HubServer
from tests.support.modelscope_hub import ModelScopeHubServer
from tests.support.repo import RepoStore


def sc(name: str, priority: int, kind: str = "hf", endpoint: str = "http://127.0.0.1:1") -> SourceConfig:
    return SourceConfig(name=name, kind=kind, endpoint=endpoint, priority=priority)


# -- probing real loopback servers ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def small_store(tmp_path: Path) -> RepoStore:
    store = RepoStore(tmp_path / "probe-store")
    add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20)
    return store


@pytest.fixture
def hubs(small_store: RepoStore) -> Iterator[tuple[HubServer, ModelScopeHubServer]]:
    with HubServer(small_store, Faults()) as hf, ModelScopeHubServer(small_store) as ms:
        yield hf, ms


def test_probe_endpoint_only(hubs: tuple[HubServer, ModelScopeHubServer]) -> None:
    hf, ms = hubs
    for cfg in (sc("hf", 10, endpoint=hf.url), sc("ms", 20, "modelscope", ms.url)):
        r = probe(make_source(cfg))
        assert r.ok and r.latency_ms is not None and r.latency_ms >= 0 and r.throughput_bytes_per_s is None
        assert r.sample == "endpoint" and r.reason is None


def test_probe_with_model_samples_the_largest_file(hubs: tuple[HubServer, ModelScopeHubServer]) -> None:
    hf, ms = hubs
    for cfg in (sc("hf", 10, endpoint=hf.url), sc("ms", 20, "modelscope", ms.url)):
        r = probe(make_source(cfg), model=QWEN3_VL_8B, sample_bytes=64 * 1024)
        assert r.ok, r.reason
        assert r.sample == "model-00003-of-00004.safetensors"  # the biggest shard, as in the real repo
        assert r.throughput_bytes_per_s is not None and r.throughput_bytes_per_s > 0 and r.commit
    sampled = [q for q in ms.log if "FilePath=model-00003" in q["path"]]
    assert sampled and sampled[-1]["headers"].get("Range") == f"bytes=0-{64 * 1024 - 1}"


def test_probe_failures_become_reasons(hubs: tuple[HubServer, ModelScopeHubServer]) -> None:
    hf, ms = hubs
    dead = probe(make_source(sc("dead", 10, endpoint=f"http://127.0.0.1:{free_port()}")))
    assert not dead.ok and "cannot connect" in (dead.reason or "")
    ms.faults.statuses["/"] = [503]
    busy = probe(make_source(sc("ms", 20, "modelscope", ms.url)))
    assert not busy.ok and busy.reason == "HTTP 503 from the endpoint"
    missing = probe(make_source(sc("hf", 10, endpoint=hf.url)), model="Qwen/NoSuchModel")
    assert not missing.ok and "not found" in (missing.reason or "") and missing.latency_ms is not None


def test_probe_all_then_rank_skips_the_down_source(hubs: tuple[HubServer, ModelScopeHubServer]) -> None:
    hf, ms = hubs
    configs = [sc("mirror", 10, endpoint=f"http://127.0.0.1:{free_port()}"),
               sc("ms", 20, "modelscope", ms.url), sc("hf", 30, endpoint=hf.url)]
    results = probe_all(configs, model=QWEN3_VL_8B, timeout=2.0, sample_bytes=16 * 1024)
    assert [r.name for r in results] == ["mirror", "ms", "hf"]
    ranking = rank(results, configs)
    assert [s.name for s in ranking.order] == ["ms", "hf"]
    assert ranking.skipped[0][0].name == "mirror" and "cannot connect" in ranking.skipped[0][1]
