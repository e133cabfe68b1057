"""gc and verify on caches built by real pulls (several revisions) from the loopback hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir
from typer.testing import CliRunner

from qwen_fetch.cli.app import app
from qwen_fetch.cli.demo_cmd import bundled_model_dir
from qwen_fetch.store.hfcache import RepoCache
from tests.support.hub import HubServer
from tests.support.repo import RepoStore
from tests.verify_gc_cache import disk_bytes

MODEL = "Qwen/Qwen3-VL-8B-Instruct"
SHARD2 = "model-00002-of-00002.safetensors"


def demo_files() -> dict[str, bytes | Path]:
    return {p.name: p for p in bundled_model_dir().iterdir() if p.is_file()}


def pull(cli, mirrors: Path, *args: str) -> dict:  # type: ignore[no-untyped-def]
    r = cli("pull", MODEL, "--config", str(mirrors), "--cache-dir", "cache", "--no-smoke", "--json", *args)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def gc(*args: str) -> tuple[int, dict]:
    res = CliRunner().invoke(app, ["gc", "--cache-dir", "cache", "--json", *args])
    return res.exit_code, (json.loads(res.stdout) if res.stdout.strip().startswith("{") else {"out": res.output})


def test_gc_after_real_pulls_keeps_pins_and_refs(cli, store: RepoStore, hub: HubServer,  # type: ignore[no-untyped-def]
                                                 mirrors: Path) -> None:
    c1 = store.add_commit(MODEL, demo_files())
    pull(cli, mirrors)
    c2 = store.add_commit(MODEL, {**demo_files(), "README.md": b"v2 readme\n"})
    pull(cli, mirrors, "--update")  # the lock now pins c2 (current) and c1 (rollback)
    c3 = store.add_commit(MODEL, {**demo_files(), "extra.txt": b"exp\n"}, revision="exp")
    pull(cli, mirrors, "--revision", "exp", "--lock", "exp.lock")  # refs/exp -> c3
    c4 = store.add_commit(MODEL, {**demo_files(), SHARD2: os.urandom(200_000), "README.md": b"c4\n"},
                          revision="scratch")
    pull(cli, mirrors, "--revision", c4, "--lock", "scratch.lock")  # by commit: detached, no ref
    repo = RepoCache(Path("cache").absolute(), MODEL)
    assert set(repo.snapshot_commits()) == {c1, c2, c3, c4}
    assert repo.refs() == {"main": c2, "exp": c3}

    before = disk_bytes(Path("cache"))
    code, dry = gc("--dry-run")
    assert code == 0, dry
    assert disk_bytes(Path("cache")) == before and set(repo.snapshot_commits()) == {c1, c2, c3, c4}
    assert [Path(a["path"]).name for a in dry["plan"]["actions"] if a["kind"] == "revision"] == [c4]
    assert dry["plan"]["bytes"] == 200_000 + len(b"c4\n")

    code, out = gc("--yes")
    assert code == 0, out
    assert out["result"]["freed"] == dry["plan"]["bytes"] == before - disk_bytes(Path("cache"))
    assert set(repo.snapshot_commits()) == {c1, c2, c3}

    info = scan_cache_dir(Path("cache"))
    assert info.warnings == []
    (r,) = info.repos
    assert {v.commit_hash for v in r.revisions} == {c1, c2, c3}
    assert {ref for v in r.revisions for ref in v.refs} == {"main", "exp"}
    res = CliRunner().invoke(app, ["verify", "--all", "--cache-dir", "cache", "--lock", "qwen-fetch.lock",
                                   "--lock", "exp.lock"])
    assert res.exit_code == 0, res.output

    hf = Path(sys.executable).with_name("hf")
    proc = subprocess.run([str(hf), "cache", "ls", "--cache-dir", "cache", "--revisions", "--format", "json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert c2 in proc.stdout and c4 not in proc.stdout

    # transformers still loads the pinned model offline, from refs/main.
    pytest.importorskip("transformers")
    code_ = (
        "import sys, pathlib\n"
        "from huggingface_hub import snapshot_download\n"
        "from transformers import AutoModelForImageTextToText\n"
        f"m = AutoModelForImageTextToText.from_pretrained('{MODEL}', cache_dir=sys.argv[1])\n"
        f"print(pathlib.Path(snapshot_download('{MODEL}', cache_dir=sys.argv[1], local_files_only=True)).name)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code_, str(Path("cache").absolute())], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [c2]


def test_gc_does_not_disturb_a_concurrent_pull(cli, store: RepoStore, hub: HubServer,  # type: ignore[no-untyped-def]
                                               mirrors: Path) -> None:
    store.add_commit(MODEL, demo_files())
    pull(cli, mirrors)
    big = os.urandom(3 << 20)
    c2 = store.add_commit(MODEL, {**demo_files(), SHARD2: big})
    r = cli("lock", MODEL, "--config", str(mirrors), "--update", "--json")  # pin c2 before fetching it
    assert r.exit_code == 0, r.stderr
    hub.faults.rate = 400_000  # ~8 s for the new shard
    blobs = RepoCache(Path("cache").absolute(), MODEL).blobs_dir
    proc = subprocess.Popen([sys.executable, "-m", "qwen_fetch", "pull", MODEL, "--config", str(mirrors),
                             "--cache-dir", "cache", "--no-smoke", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(blobs.glob("*.incomplete")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the pull never started writing"
            time.sleep(0.05)
        # Even with no age threshold, a partial that a running pull holds is not touched.
        code, out = gc("--yes", "--incomplete-older-than", "0s", "--lock", "qwen-fetch.lock")
        assert code == 0, out
        done = out["result"]["done"] if out["result"] else []
        assert not [a for a in done if ".incomplete" in a["path"]]
        held = [k for k in out["plan"]["kept"] if k["kind"] == "partial" and k["why"] == "a running pull holds it"]
        assert held or [s for s in out["result"]["skipped"] if ".incomplete" in s["path"]], out
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["commit"] == c2
    res = CliRunner().invoke(app, ["verify", MODEL, "--cache-dir", "cache", "--revision", c2, "--json"])
    assert res.exit_code == 0, res.output


def test_verify_a_real_local_dir_pull(cli, store: RepoStore, hub: HubServer,  # type: ignore[no-untyped-def]
                                      mirrors: Path) -> None:
    store.add_commit(MODEL, demo_files())
    r = cli("pull", MODEL, "--config", str(mirrors), "--local-dir", "local", "--no-smoke", "--json")
    assert r.exit_code == 0, r.stderr
    res = CliRunner().invoke(app, ["verify", "--local-dir", "local", MODEL, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["targets"][0]["kind"] == "folder"
    with open(Path("local") / SHARD2, "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    res = CliRunner().invoke(app, ["verify", "./local", "--json"])  # the lock has one model: inferred
    assert res.exit_code == 3
    assert [m["path"] for m in json.loads(res.stdout)["targets"][0]["mismatched"]] == [SHARD2]
