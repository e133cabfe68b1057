"""transformers loads a model pulled by qwen-fetch, offline, from our HF cache layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qwen_fetch.cli.demo_cmd import bundled_model_dir

MODEL = "Qwen/Qwen3-VL-8B-Instruct"

pytest.importorskip("transformers")
pytest.importorskip("torch")


def test_transformers_loads_pulled_model_offline(cli, store, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    src = bundled_model_dir()
    commit = store.add_commit(MODEL, {p.name: p for p in src.iterdir() if p.is_file()})
    r = cli("pull", MODEL, "--config", str(mirrors), "--cache-dir", "cache", "--no-smoke", "--json")
    assert r.exit_code == 0, r.stderr
    code = (
        "import sys, transformers\n"
        "from transformers import AutoModelForImageTextToText, AutoTokenizer\n"
        f"m = AutoModelForImageTextToText.from_pretrained('{MODEL}', cache_dir=sys.argv[1])\n"
        f"t = AutoTokenizer.from_pretrained('{MODEL}', cache_dir=sys.argv[1])\n"
        "assert t('hello').input_ids\n"
        "from transformers.utils import cached_file\n"
        f"print(type(m).__name__, cached_file('{MODEL}', 'config.json', cache_dir=sys.argv[1]).split('/')[-2])\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code, str(Path("cache").absolute())], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["Qwen3VLForConditionalGeneration", commit]
