"""Sources are contacted only when needed: in priority order, the next one only after the previous failed.

Each test hub logs every request it receives, so "never contacted" is a hub
with an empty log.  With ``HF_ENDPOINT`` set and no mirrors.yaml of the
user's, the built-in public hubs (real internet hosts) are proven absent from
the configured and attempted sources, never by contacting them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_fetch.sources.config import ENV_ONLY, load_config
from tests.conftest import write_mirrors
from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.hub import Faults, HubServer
from tests.support.repo import RepoStore

SHARD = "model-00001-of-00004.safetensors"
PUBLIC = ("hf-mirror", "modelscope", "huggingface")
PUBLIC_HOSTS = ("hf-mirror.com", "modelscope.cn", "huggingface.co")


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[HubServer, HubServer, HubServer]]:
    store = RepoStore(tmp_path / "lazy-store")
    add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20)
    with HubServer(store, Faults()) as a, HubServer(store, Faults()) as b, HubServer(store, Faults()) as c:
        yield a, b, c


def _pull(cli, cfg: Path, *extra: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", "cache", "--no-smoke", "--json", *extra,
               env=env)


def test_healthy_first_source_is_the_only_one_contacted(cli, tmp_path: Path, three) -> None:  # type: ignore[no-untyped-def]
    a, b, c = three
    cfg = write_mirrors(tmp_path / "m.yaml", ("a", a.url), ("b", b.url), ("c", c.url))
    assert cli("lock", QWEN3_VL_8B, "--config", str(cfg)).exit_code == 0
    r = _pull(cli, cfg)  # pinned now
    assert r.exit_code == 0, r.stderr
    assert r.json()["source"] == "a" and set(r.json()["served_by"].values()) == {"a"}
    r = _pull(cli, cfg, "--update", "--lock", "fresh.lock")  # a fresh resolve, unpinned
    assert r.exit_code == 0, r.stderr
    assert a.log and not b.log and not c.log
    assert "skipped" not in r.stderr


def test_failing_first_source_leads_to_exactly_the_second(cli, tmp_path: Path, three) -> None:  # type: ignore[no-untyped-def]
    a, b, c = three
    a.faults.down = True
    cfg = write_mirrors(tmp_path / "m.yaml", ("a", a.url), ("b", b.url), ("c", c.url))
    r = _pull(cli, cfg)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["source"] == "b" and set(doc["served_by"].values()) == {"b"}
    assert list(doc["source_failures"]) == ["a"]
    assert a.log and b.log and not c.log


def test_a_fallback_is_contacted_only_for_the_file_that_needs_it(cli, tmp_path: Path, three) -> None:  # type: ignore[no-untyped-def]
    a, b, c = three
    a.faults.corrupt[SHARD] = 100
    cfg = write_mirrors(tmp_path / "m.yaml", ("a", a.url), ("b", b.url), ("c", c.url))
    r = _pull(cli, cfg)
    assert r.exit_code == 0, r.stderr
    served = r.json()["served_by"]
    assert served[SHARD] == "b" and {s for p, s in served.items() if p != SHARD} == {"a"}
    assert not c.log
    files_from_b = {e["path"].split("/resolve/")[1].split("/", 1)[1] for e in b.log if "/resolve/" in e["path"]}
    assert files_from_b == {SHARD}


def test_fallback_for_a_plain_file_the_first_source_fails(cli, tmp_path: Path, three) -> None:  # type: ignore[no-untyped-def]
    a, b, c = three
    a.faults.statuses["config.json"] = [(404, {"X-Error-Code": "EntryNotFound"})] * 4
    cfg = write_mirrors(tmp_path / "m.yaml", ("a", a.url), ("b", b.url), ("c", c.url))
    r = _pull(cli, cfg)
    assert r.exit_code == 0, r.stderr
    assert r.json()["served_by"]["config.json"] == "b" and not c.log


def test_hf_endpoint_without_mirrors_yaml_uses_only_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    cfg = load_config()
    assert [s.name for s in cfg.sources] == ["env"] and cfg.origin == ENV_ONLY


def test_hf_endpoint_keeps_a_modelscope_the_user_pointed_somewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:8")
    cfg = load_config()
    assert [(s.name, s.endpoint) for s in cfg.ordered()] == [("env", "http://127.0.0.1:9"),
                                                            ("modelscope", "http://127.0.0.1:8")]


def test_hf_endpoint_with_a_users_mirrors_yaml_keeps_what_it_names(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    home_cfg = tmp_path / "home" / ".config" / "qwen-fetch" / "mirrors.yaml"
    home_cfg.parent.mkdir(parents=True)
    home_cfg.write_text("sources:\n  - name: hf-mirror\n    kind: hf\n    endpoint: https://hf-mirror.com\n")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert [s.name for s in load_config().ordered()] == ["env", "hf-mirror"]


def test_dead_hf_endpoint_never_reaches_the_public_defaults(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {"HF_ENDPOINT": dead_url()}
    r = cli("pull", QWEN3_VL_8B, "--cache-dir", "cache", "--no-smoke", "--json", env=env)
    assert r.exit_code == 4, r.stderr
    doc = r.json()
    attempted = " ".join(doc["context"]) + doc["message"]
    assert "source 'env' unreachable" in doc["message"]
    assert not any(name in attempted for name in PUBLIC + PUBLIC_HOSTS)
    listed = cli("mirrors", "--json", env=env).json()
    assert [s["name"] for s in listed["sources"]] == ["env"] and listed["config"] == ENV_ONLY
    assert not any(h in r.stdout + r.stderr + str(listed) for h in PUBLIC_HOSTS)


def test_mirrors_probe_with_hf_endpoint_probes_only_it(cli, tmp_path: Path, three) -> None:  # type: ignore[no-untyped-def]
    a, b, _ = three
    cfg = write_mirrors(tmp_path / "m.yaml", ("b", b.url))
    r = cli("mirrors", "--probe", "--json", env={"HF_ENDPOINT": a.url})
    assert r.exit_code == 0, r.stderr
    assert [s["name"] for s in r.json()["sources"]] == ["env"] and r.json()["auto"] == ["env"]
    assert a.log and not b.log
    r = cli("mirrors", "--probe", "--json", "--config", str(cfg), env={"HF_ENDPOINT": a.url})
    assert r.exit_code == 0, r.stderr
    assert r.json()["auto"] == ["env", "b"] and b.log
