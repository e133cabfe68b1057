"""Fault campaign, crash consistency and concurrency.

SIGKILL pull / verify / gc at random moments, then rerun; and 2 or 4 pulls of
one model into one cache at once with gc running beside them.

A watcher thread polls the snapshots the whole time: at no moment may a
snapshot hold a file whose sha256 differs from its pin (or a dangling link).
After the rerun the cache must equal a clean run's, byte for byte, stray files
included, and ``verify`` must pass.  The campaign (bench/fault_campaign.py)
runs the same trials by the dozen; here a few, with a fixed seed.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.support.faultkit import CrashLab, SnapshotWatcher
from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.hub import Faults, HubServer
from tests.support.repo import RepoStore

SEED = int(os.environ.get("QF_FAULT_SEED", "20261122"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("crash")
    store = RepoStore(root / "store")
    old = add_sharded_repo(store, QWEN3_VL_8B, shard_total=2 << 20, seed=1, revision="old")
    commit = add_sharded_repo(store, QWEN3_VL_8B, shard_total=6 << 20)
    env = {"NO_PROXY": "127.0.0.1,localhost", "HF_HOME": str(root / "hf-home"), "HOME": str(root / "home")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with HubServer(store, Faults(rate=1_000_000)) as hub:  # ~1.5 s per shard: kills land mid-transfer
            lab = CrashLab(root / "work", store, QWEN3_VL_8B, commit, old, hub.url)
            lab.hub = hub
            yield lab
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _assert_trial(t) -> None:  # type: ignore[no-untyped-def]
    assert t.passed, f"{t.kind}: lost={t.lost} corrupt={t.corrupt} notes={t.notes}"


@pytest.mark.parametrize("i", range(2))
def test_pull_killed_then_rerun_equals_a_clean_pull(lab: CrashLab, i: int) -> None:
    rng = random.Random(SEED + i)
    _assert_trial(lab.trial_pull(rng, kills=1, pinned=bool(i)))


def test_verify_killed_changes_nothing(lab: CrashLab) -> None:
    _assert_trial(lab.trial_verify(random.Random(SEED)))


def test_gc_killed_then_rerun_equals_a_clean_gc(lab: CrashLab) -> None:
    _assert_trial(lab.trial_gc(random.Random(SEED)))


def test_pull_killed_mid_transfer_at_least_once(lab: CrashLab) -> None:
    """The random trials above may all miss the transfer; this one waits for a partial, then kills."""
    import subprocess
    import time

    d = lab.work / "mid"
    d.mkdir()
    with SnapshotWatcher(d / "cache", lab.expected) as w:
        # Two connections at the hub's 1 MB/s each: the transfer lasts seconds, so a partial seen by the
        # poll below is still a partial when the kill lands (16 connections finished in ~0.4 s: flaky).
        proc = subprocess.Popen(lab.pull(d, "--connections", "2"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not list((d / "cache").glob("models--*/blobs/*.incomplete")):
            assert proc.poll() is None and time.monotonic() < deadline, "the pull never wrote a partial"
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        assert list((d / "cache").glob("models--*/blobs/*.incomplete")), "partials are kept"
        r = subprocess.run(lab.pull(d), capture_output=True, text=True, timeout=300, check=False)
        assert r.returncode == 0, r.stderr
    assert w.violations == [] and w.polls > 10
    from tests.support.faultkit import cache_digest

    assert cache_digest(d / "cache") == lab.ref_digest


@pytest.mark.parametrize("n", [2, 4])
def test_concurrent_pulls_with_gc_beside_them(lab: CrashLab, n: int) -> None:
    """Pinned model, gc --yes in a loop: all pulls succeed, each file crosses the wire once, nothing corrupt."""
    _assert_trial(lab.trial_concurrent(lab.hub, n))



@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_pull_stopped_by_sigterm_or_ctrl_c_exits_130_and_keeps_its_state(lab: CrashLab, sig: str) -> None:
    """``docker stop`` / a cancelled CI job (SIGTERM) stops a pull the way Ctrl-C does: the connections wind
    down, the resume state is saved, exit 130 with a JSON error under ``--json``; the rerun finishes the job."""
    import json
    import signal
    import subprocess
    import time

    from qwen_fetch.net.partstate import state_path
    from tests.support.faultkit import cache_digest

    d = lab.work / f"stop-{sig}"
    d.mkdir()
    proc = subprocess.Popen(lab.pull(d, "--connections", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not list((d / "cache").glob("models--*/blobs/*.incomplete")):
        assert proc.poll() is None and time.monotonic() < deadline, "the pull never wrote a partial"
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["ok"] is False and doc["error"] == "interrupted" and doc["exit_code"] == 130
    assert err == ""  # --json: the JSON document says it all
    partials = list((d / "cache").glob("models--*/blobs/*.incomplete"))
    assert partials and all(state_path(p).exists() for p in partials)  # state saved beside each partial
    assert not list((d / "cache").glob("models--*/snapshots/*/*.safetensors"))  # nothing half-done exposed
    r = subprocess.run(lab.pull(d), capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True
    assert cache_digest(d / "cache") == lab.ref_digest
