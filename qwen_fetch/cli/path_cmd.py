"""``qwen-fetch path``: print the verified snapshot folder of a pinned model (for scripts)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qwen_fetch.cli.common import CacheDirOpt, DebugOpt, JsonOpt, emit_json, run_command
from qwen_fetch.core.errors import EXIT_CODE_HELP


def register(app: typer.Typer) -> None:
    @app.command(epilog=EXIT_CODE_HELP)
    def path(
        model_id: Annotated[str, typer.Argument(help="Model id, e.g. Qwen/Qwen3-VL-8B-Instruct.")],
        revision: Annotated[str | None, typer.Option("--revision", "-r", help="Which pin: branch, tag or commit (default: the current pin).")] = None,
        lock: Annotated[Path, typer.Option("--lock", help="Lockfile with the pins.")] = Path("qwen-fetch.lock"),
        cache_dir: CacheDirOpt = None,
        json_out: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        """Print the snapshot folder of the pinned commit, once its files are verified (never the network).

        Files a verification stamp vouches for are not read; others are re-hashed. Exit 3 when the snapshot is missing, incomplete or does not match the lock.

        Example: vllm serve "$(qwen-fetch path Qwen/Qwen3-VL-8B-Instruct)"
        """
        def body() -> None:
            from qwen_fetch.ops.snapshot import path as snapshot_path

            folder = snapshot_path(model_id, revision, lock=lock, cache_dir=cache_dir)
            if json_out:
                emit_json({"ok": True, "model": model_id, "path": str(folder)})
            else:
                typer.echo(str(folder))

        run_command(body, json_mode=json_out, debug=debug)
