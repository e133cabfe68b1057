"""`pull` across hubs: ModelScope only, HF mirror down, per-file fallback, all down, tokens, extra/differing files."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_fetch.store.lockio import read_lock
from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.hub import Faults, HubServer
from tests.support.modelscope_hub import DEFAULT_EXTRA_FILES, ModelScopeHubServer, MSFaults, ms_commit
from tests.support.repo import RepoStore

TOKEN = "ms-token-never-elsewhere-77"
SHARD = "model-00001-of-00004.safetensors"


@pytest.fixture(autouse=True)
def _no_modelscope_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN", "MODELSCOPE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def two_hubs(tmp_path: Path) -> Iterator[tuple[RepoStore, str, HubServer, ModelScopeHubServer]]:
    store = RepoStore(tmp_path / "x-store")
    commit = add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20)
    with HubServer(store, Faults()) as hf, ModelScopeHubServer(store) as ms:
        yield store, commit, hf, ms


def config(path: Path, *sources: tuple[str, str, str, int], extra: str = "") -> Path:
    lines = ["sources:"]
    for name, kind, url, prio in sources:
        lines.append(f"  - {{name: {name}, kind: {kind}, endpoint: '{url}', priority: {prio}}}")
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def pull(cli, cfg: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--json", "--no-smoke", *args, env=env)


def test_pull_from_modelscope_only(cli, tmp_path: Path, two_hubs) -> None:  # type: ignore[no-untyped-def]
    store, commit, hf, ms = two_hubs
    cfg = config(tmp_path / "ms.yaml", ("ms", "modelscope", ms.url, 20))
    r = pull(cli, cfg)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["source"] == "ms" and doc["revision"] == "master"
    assert set(doc["served_by"].values()) <= {"ms"} and doc["served_by"][SHARD] == "ms"
    pin = read_lock(Path("qwen-fetch.lock")).current(QWEN3_VL_8B)
    assert pin is not None and pin.source == "ms" and pin.commit == ms_commit(commit, "head")
    target = Path(doc["target"])
    for sf in store.files(QWEN3_VL_8B, commit):
        assert (target / sf.path).read_bytes() == sf.disk.read_bytes(), sf.path
    assert (target / "configuration.json").read_bytes() == DEFAULT_EXTRA_FILES["configuration.json"]
    assert not hf.log


def test_hf_mirror_down_modelscope_used(cli, tmp_path: Path, two_hubs) -> None:  # type: ignore[no-untyped-def]
    _, _, hf, ms = two_hubs
    cfg = config(tmp_path / "m.yaml", ("hf-mirror", "hf", dead_url(), 10), ("ms", "modelscope", ms.url, 20))
    r = pull(cli, cfg)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["source"] == "ms" and "hf-mirror" in doc["source_failures"]
    assert doc["served_by"][SHARD] == "ms"


def test_corrupt_shard_on_first_source_comes_from_the_second(cli, tmp_path: Path, two_hubs) -> None:  # type: ignore[no-untyped-def]
    store, commit, hf, ms = two_hubs
    ms.faults.corrupt[SHARD] = 1000
    cfg = config(tmp_path / "m.yaml", ("ms", "modelscope", ms.url, 10), ("hf", "hf", hf.url, 20))
    r = pull(cli, cfg)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["source"] == "ms"
    assert doc["served_by"][SHARD] == "hf" and doc["served_by"]["model-00002-of-00004.safetensors"] == "ms"
    assert any(SHARD in f and "ms" in f for f in doc["fallbacks"])
    sf = store.file(QWEN3_VL_8B, commit, SHARD)
    assert sf is not None and (Path(doc["target"]) / SHARD).read_bytes() == sf.disk.read_bytes()


def test_all_sources_down_exit_4_lists_every_reason(cli, tmp_path: Path, two_hubs) -> None:  # type: ignore[no-untyped-def]
    _, _, hf, ms = two_hubs
    ms.faults.down = True
    cfg = config(tmp_path / "m.yaml", ("hf-mirror", "hf", dead_url(), 10), ("ms", "modelscope", ms.url, 20))
    r = pull(cli, cfg)
    assert r.exit_code == 4
    text = "\n".join(r.json()["context"])
    assert "hf-mirror" in text and "ms" in text


def test_modelscope_token_reaches_endpoint_not_object_storage(cli, tmp_path: Path, two_hubs) -> None:  # type: ignore[no-untyped-def]
    store, _, _, _ = two_hubs
    with ModelScopeHubServer(store) as oss, ModelScopeHubServer(store, MSFaults(redirect_base=oss.url)) as ms:
        cfg = config(tmp_path / "m.yaml", ("ms", "modelscope", ms.url, 10))
        r = pull(cli, cfg, env={"MODELSCOPE_API_TOKEN": TOKEN})
        assert r.exit_code == 0, r.stderr
        assert TOKEN not in r.stdout + r.stderr + Path("qwen-fetch.lock").read_text()
        api = ms.requests_to("/api/v1/models/")
        assert api and all(q["headers"].get("Authorization") == f"Bearer {TOKEN}" for q in api)
        assert any("/oss/" in q["path"] for q in oss.log)
        assert all(TOKEN not in str(q["headers"]) for q in oss.log)


def test_modelscope_differing_readme_with_an_hf_lock(cli, tmp_path: Path, two_hubs) -> None:  # type: ignore[no-untyped-def]
    store, commit, hf, _ = two_hubs
    with ModelScopeHubServer(store, extra_files={**DEFAULT_EXTRA_FILES, "README.md": b"# ModelScope card\n"}) as ms:
        cfg = config(tmp_path / "m.yaml", ("ms", "modelscope", ms.url, 10), ("hf", "hf", hf.url, 20))
        assert pull(cli, cfg, "--source", "hf").exit_code == 0  # the lock pins HF's files
        r = pull(cli, cfg, "--cache-dir", str(tmp_path / "fresh-cache"))
        assert r.exit_code == 0, r.stdout + r.stderr
        doc = r.json()
        assert doc["served_by"]["README.md"] == "hf"  # ModelScope's differing card is never used
        assert doc["served_by"][SHARD] == "ms" and "configuration.json" in doc["skipped_extras"]
        sf = store.file(QWEN3_VL_8B, commit, "README.md")
        assert sf is not None and (Path(doc["target"]) / "README.md").read_bytes() == sf.disk.read_bytes()


def test_modelscope_lock_then_hf_source(cli, tmp_path: Path, two_hubs) -> None:  # type: ignore[no-untyped-def]
    _, _, hf, ms = two_hubs
    cfg = config(tmp_path / "m.yaml", ("ms", "modelscope", ms.url, 10), ("hf", "hf", hf.url, 20))
    assert pull(cli, cfg, "--source", "ms").exit_code == 0
    r = pull(cli, cfg, "--source", "hf", "--cache-dir", str(tmp_path / "fresh-cache"))
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.json()["served_by"][SHARD] == "hf"


def test_modelscope_pin_is_resolved_by_name_and_drift_is_caught(cli, tmp_path: Path, two_hubs) -> None:  # type: ignore[no-untyped-def]
    store, _, _, ms = two_hubs
    cfg = config(tmp_path / "ms.yaml", ("ms", "modelscope", ms.url, 20))
    assert pull(cli, cfg).exit_code == 0
    files_req = [q["path"] for q in ms.requests_to("/api/v1/models/") if "repo/files" in q["path"]]
    assert files_req and all("Revision=master" in p for p in files_req)  # a name, never a commit id
    assert pull(cli, cfg, "--frozen").exit_code == 0
    add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20, seed=9)  # master moves on
    r = pull(cli, cfg, "--frozen")  # everything pinned is cached: the hub is not asked
    assert r.exit_code == 0 and r.json()["used_cache"] is True
    r = pull(cli, cfg, "--frozen", "--cache-dir", str(tmp_path / "fresh-cache"))
    assert r.exit_code == 3 and r.json()["error"] == "commit-mismatch"
