"""Shell completion (Typer's): the scripts are produced and complete commands and options."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "qwen_fetch", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("shell, needle", [
    ("bash", "complete -o default -F _qwen_fetch_completion qwen-fetch"),
    ("zsh", "compdef _qwen_fetch_completion qwen-fetch"),
    ("fish", "complete --command qwen-fetch"),
])
def test_completion_script_is_produced(shell: str, needle: str) -> None:
    script = _run({"_QWEN_FETCH_COMPLETE": f"source_{shell}"})
    assert needle in script and f"complete_{shell}" in script


def test_show_completion_prints_the_script() -> None:
    script = _run({"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}, "--show-completion", "bash")
    assert "_QWEN_FETCH_COMPLETE=complete_bash" in script


def _complete(words: str) -> list[str]:
    out = _run({"_QWEN_FETCH_COMPLETE": "complete_bash", "COMP_WORDS": words,
                "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))})
    return out.split()


def test_commands_and_options_complete() -> None:
    assert _complete("qwen-fetch ve") == ["verify"]
    assert "--cache-dir" in _complete("qwen-fetch pull --ca")
    options = _complete("qwen-fetch verify --")
    assert "--all" in options and "--commit" not in options  # the hidden alias stays hidden
