"""`qwen-fetch mirrors`: listing, probing, what auto picks, and tokens never printed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.hub import Faults, HubServer
from tests.support.modelscope_hub import ModelScopeHubServer
from tests.support.repo import RepoStore

SECRET = "hf_private_SECRET_value_42"


@pytest.fixture(autouse=True)
def _no_modelscope_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN", "MODELSCOPE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[HubServer, ModelScopeHubServer]]:
    store = RepoStore(tmp_path / "mirrors-store")
    add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20)
    with HubServer(store, Faults()) as hf, ModelScopeHubServer(store) as ms:
        yield hf, ms


@pytest.fixture
def config(tmp_path: Path, servers: tuple[HubServer, ModelScopeHubServer]) -> Path:
    hf, ms = servers
    path = tmp_path / "probe-mirrors.yaml"
    path.write_text(f"""sources:
  - name: down-mirror
    kind: hf
    endpoint: {dead_url()}
    priority: 5
  - name: ms
    kind: modelscope
    endpoint: {ms.url}
    priority: 20
  - name: private
    kind: hf
    endpoint: {hf.url}
    priority: 30
    token_env: QF_PRIVATE_TOKEN
""")
    return path


def test_list_sources_json_shows_token_state_not_value(cli, config: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("mirrors", "--config", str(config), "--json", env={"QF_PRIVATE_TOKEN": SECRET})
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    rows = {s["name"]: s for s in doc["sources"]}
    assert list(rows) == ["down-mirror", "ms", "private"]  # priority order
    assert rows["private"]["token_env"] == "QF_PRIVATE_TOKEN" and rows["private"]["token_set"] is True
    assert rows["ms"]["token_env"] == "MODELSCOPE_API_TOKEN" and rows["ms"]["token_set"] is False
    assert rows["ms"]["default_revision"] == "master" and "configuration.json" in rows["ms"]["optional_files"]
    assert "auto" not in doc and "probe" not in rows["ms"]  # no network without --probe
    assert SECRET not in r.stdout + r.stderr


def test_probe_table_and_json(cli, config: Path, servers: tuple[HubServer, ModelScopeHubServer]  # type: ignore[no-untyped-def]
                              ) -> None:
    hf, ms = servers
    env = {"QF_PRIVATE_TOKEN": SECRET}
    r = cli("mirrors", "--config", str(config), "--probe", "--model", QWEN3_VL_8B, "--json", "--timeout", "2", env=env)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["auto"] == ["ms", "private"]
    assert doc["skipped"][0]["name"] == "down-mirror" and "cannot connect" in doc["skipped"][0]["reason"]
    rows = {s["name"]: s for s in doc["sources"]}
    assert rows["down-mirror"]["probe"]["ok"] is False
    for name in ("ms", "private"):
        p = rows[name]["probe"]
        assert p["ok"] and p["latency_ms"] is not None and p["throughput_bytes_per_s"] > 0, p
        assert p["sample"] == "model-00003-of-00004.safetensors"
    assert SECRET not in r.stdout + r.stderr
    # the token did reach its own endpoint during the probe
    assert any(q["headers"].get("Authorization") == f"Bearer {SECRET}" for q in hf.log)

    t = cli("mirrors", "--config", str(config), "--probe", "--timeout", "2", env=env)
    assert t.exit_code == 0, t.stderr
    assert "auto would use: ms -> private" in t.stdout
    assert "down-mirror: down: cannot connect" in t.stdout
    assert "$QF_PRIVATE_TOKEN (set)" in t.stdout and SECRET not in t.stdout + t.stderr


def test_probe_all_down_exits_4(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "dead.yaml"
    path.write_text(f"sources:\n  - {{name: one, kind: hf, endpoint: '{dead_url()}'}}\n"
                    f"  - {{name: two, kind: modelscope, endpoint: '{dead_url()}'}}\n")
    r = cli("mirrors", "--config", str(path), "--probe", "--json", "--timeout", "1")
    assert r.exit_code == 4
    doc = r.json()
    assert doc["ok"] is False and doc["auto"] == [] and [s["name"] for s in doc["skipped"]] == ["one", "two"]


def test_modelscope_domain_shown(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("mirrors", env={"MODELSCOPE_DOMAIN": "ms.internal.example", "QWEN_FETCH_CONFIG": ""})
    assert r.exit_code == 0, r.stderr
    assert "https://ms.internal.example" in r.stdout and "endpoint from $MODELSCOPE_DOMAIN" in r.stdout


def test_bad_model_id_is_a_usage_error(cli, config: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("mirrors", "--config", str(config), "--model", "../etc", "--json")
    assert r.exit_code == 2
