from __future__ import annotations

from pathlib import Path

import pytest

from qwen_fetch.core.errors import ConfigError, UsageError
from qwen_fetch.sources.config import BUILTIN, builtin_text, load_config, parse_config
from tests.conftest import REPO_ROOT


def test_shipped_file_equals_builtin_default() -> None:
    assert (REPO_ROOT / "mirrors.yaml").read_text() == builtin_text()


def test_builtin_default_order() -> None:
    cfg = load_config()
    assert cfg.origin == BUILTIN
    assert [s.name for s in cfg.ordered()] == ["hf-mirror", "modelscope", "huggingface"]
    assert cfg.get("modelscope").revision == "master"


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cfg(name: str) -> str:
        return f"sources:\n  - name: {name}\n    kind: hf\n    endpoint: http://127.0.0.1:1\n"

    home_cfg = tmp_path / "home" / ".config" / "qwen-fetch" / "mirrors.yaml"
    home_cfg.parent.mkdir(parents=True)
    home_cfg.write_text(cfg("home"))
    assert load_config().sources[0].name == "home"
    Path("mirrors.yaml").write_text(cfg("cwd"))
    assert load_config().sources[0].name == "cwd"
    env_file = tmp_path / "env.yaml"
    env_file.write_text(cfg("envfile"))
    monkeypatch.setenv("QWEN_FETCH_CONFIG", str(env_file))
    assert load_config().sources[0].name == "envfile"
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text(cfg("explicit"))
    assert load_config(explicit).sources[0].name == "explicit"


def test_hf_endpoint_becomes_first_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example/")
    cfg = load_config()
    first = cfg.ordered()[0]
    assert (first.name, first.kind, first.endpoint) == ("env", "hf", "https://hf-mirror.example")


@pytest.mark.parametrize("text,needle", [
    ("sources:\n  - name: a\n    kind: hf\n    endpoint: http://x\n    colour: red\n", ":5: unknown key 'colour'"),
    ("sources:\n  - name: a\n    kind: ftp\n    endpoint: http://x\n", ":3: unknown kind 'ftp'"),
    ("sources:\n  - name: a\n    kind: hf\n    endpoint: x\n", ":4: endpoint 'x' must be an http(s) URL"),
    ("sources:\n  - name: a\n    kind: hf\n    endpoint: http://x\n    priority: high\n", ":5: priority must be an integer"),
    ("sources:\n  - name: a\n    kind: hf\n   endpoint: http://x\n", "malformed YAML"),
    ("sources:\n  - name: a\n    kind: hf\n    endpoint: http://x\n  - name: a\n    kind: hf\n    endpoint: http://y\n", ":5: duplicate source name 'a'"),
    ("sources: []\n", "non-empty list"),
])
def test_bad_config_names_file_and_line(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "m.yaml")
    assert ei.value.message.startswith("m.yaml")
    assert needle in ei.value.message


def test_unknown_source_is_usage_error() -> None:
    with pytest.raises(UsageError):
        load_config().get("nope")
