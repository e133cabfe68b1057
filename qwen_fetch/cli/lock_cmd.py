"""``qwen-fetch lock`` is registered by :mod:`qwen_fetch.cli.pull_cmd` (it shares pull's options)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Nothing to add: see ``pull_cmd.register``."""
