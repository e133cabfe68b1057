"""Shared fixtures: a repo store, a loopback HF hub, a mirrors.yaml pointing at it, and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.hub import Faults, HubServer
from tests.support.repo import RepoStore

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may touch the user's cache, config or a real hub."""
    for var in ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "QWEN_FETCH_CONFIG",
                "MODELSCOPE_DOMAIN", "MODELSCOPE_ENDPOINT", "MODELSCOPE_API_TOKEN", "SSL_CERT_FILE", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy",
                "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "ALL_PROXY", "all_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> RepoStore:
    return RepoStore(tmp_path / "store")


@pytest.fixture
def sharded_repo(store: RepoStore) -> str:
    """A small repo shaped like Qwen3-VL-8B-Instruct (4 shards, ~4 MiB); returns its commit."""
    return add_sharded_repo(store, QWEN3_VL_8B, shard_total=4 << 20)


@pytest.fixture
def hub(store: RepoStore) -> Iterator[HubServer]:
    with HubServer(store, Faults()) as h:
        yield h


def write_mirrors(path: Path, *hubs: tuple[str, str], extra: str = "") -> Path:
    lines = ["sources:"]
    for i, (name, url) in enumerate(hubs):
        lines += [f"  - name: {name}", "    kind: hf", f"    endpoint: {url}", f"    priority: {10 * (i + 1)}"]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@pytest.fixture
def mirrors(tmp_path: Path, hub: HubServer) -> Path:
    return write_mirrors(tmp_path / "mirrors.yaml", ("local", hub.url))


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.stdout)


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run ``qwen-fetch`` in a subprocess (real argv, real exit codes, real signals)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> CliResult:
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run([sys.executable, "-m", "qwen_fetch", *args], capture_output=True, text=True,
                              env=full_env, timeout=timeout, cwd=os.getcwd())
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run
