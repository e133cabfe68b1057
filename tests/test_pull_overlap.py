"""A fresh pull fetches the small git files (to hash and pin them) while the engine moves the shards.

Ordering is observed with gates on the loopback hub (a GET waits until the test
opens it), not with timings: had the plain files been fetched first, the gate
below would only open by its timeout.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from qwen_fetch.core.errors import IntegrityError
from qwen_fetch.core.progress import NullProgress
from qwen_fetch.ops.pull import Puller, PullOptions
from qwen_fetch.sources.config import Config, SourceConfig
from qwen_fetch.store.hfcache import RepoCache
from qwen_fetch.store.lockio import read_lock
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer
from tests.support.repo import RepoStore

TOKENIZER = "tokenizer.json"


class OpenGateWhenAShardLands(NullProgress):
    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.done: list[str] = []

    def file_done(self, path: str, source: str) -> None:
        self.done.append(path)
        if path.endswith(".safetensors"):
            self.gate.set()


def _puller(hub: HubServer, tmp_path: Path, progress: NullProgress) -> Puller:
    cfg = Config(sources=(SourceConfig(name="local", kind="hf", endpoint=hub.url),), origin="test")
    return Puller(cfg, PullOptions(model_id=QWEN3_VL_8B, cache_dir=tmp_path / "cache",
                                   lock_path=tmp_path / "qwen-fetch.lock"), progress)


def test_plain_files_are_fetched_while_the_shards_download(store: RepoStore, sharded_repo: str, hub: HubServer,
                                                           tmp_path: Path) -> None:
    assert not next(f for f in store.files(QWEN3_VL_8B, sharded_repo) if f.path == TOKENIZER).lfs
    gate = threading.Event()
    hub.faults.gates[TOKENIZER] = gate
    sink = OpenGateWhenAShardLands(gate)
    p = _puller(hub, tmp_path, sink)
    try:
        result = p.run()
    finally:
        gate.set()
        p.close()
    assert hub.faults.gate_timeouts == 0  # a shard finished while tokenizer.json was still held
    assert result.commit == sharded_repo
    repo = RepoCache(tmp_path / "cache", QWEN3_VL_8B)
    for f in store.files(QWEN3_VL_8B, sharded_repo):
        assert (repo.snapshot_dir(sharded_repo) / f.path).read_bytes() == f.disk.read_bytes()
    pin = read_lock(tmp_path / "qwen-fetch.lock").current(QWEN3_VL_8B)
    assert pin is not None and pin.by_path()[TOKENIZER].sha256 == \
        next(f.sha256 for f in store.files(QWEN3_VL_8B, sharded_repo) if f.path == TOKENIZER)
    assert sorted(sink.done) == sorted(f.path for f in store.files(QWEN3_VL_8B, sharded_repo))  # every file counted


def test_a_bad_plain_file_stops_the_shards_and_is_the_error(store: RepoStore, sharded_repo: str, hub: HubServer,
                                                           tmp_path: Path) -> None:
    """tokenizer.json's bytes do not match its git blob id: the pull fails on that (exit 3) without
    waiting for the shards, which the hub holds back for the whole test."""
    shards = [f.path for f in store.files(QWEN3_VL_8B, sharded_repo) if f.lfs]
    held = threading.Event()
    for s in shards:
        hub.faults.gates[s] = held
    hub.faults.corrupt[TOKENIZER] = 10
    p = _puller(hub, tmp_path, NullProgress())
    try:
        with pytest.raises(IntegrityError) as info:
            p.run()
        assert hub.faults.gate_timeouts == 0  # the engine was stopped, not waited for
    finally:
        held.set()
        p.close()
    assert TOKENIZER in info.value.message
    repo = RepoCache(tmp_path / "cache", QWEN3_VL_8B)
    assert repo.read_ref("main") is None and not repo.snapshot_dir(sharded_repo).exists()
    assert not (tmp_path / "qwen-fetch.lock").exists()
