"""``qwen-fetch lock``: resolve a revision and pin it without downloading the weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qwen_fetch.cli.common import (
    ConfigOpt,
    DebugOpt,
    ExcludeOpt,
    IncludeOpt,
    JsonOpt,
    LockFileOpt,
    OfflineOpt,
    RevisionOpt,
    SourceOpt,
    UpdateOpt,
    console,
    emit_json,
    go_offline,
    run_command,
    styled,
)
from qwen_fetch.core.units import format_bytes

if TYPE_CHECKING:
    from qwen_fetch.ops.pull import PullResult


def lock_json(result: PullResult) -> dict[str, object]:
    """The ``--json`` document of ``lock`` when it resolved and pinned."""
    return {"ok": True, "model": result.model_id, "revision": result.revision, "commit": result.commit,
            "source": result.source, "files": len(result.files), "total_size": sum(f.size for f in result.files),
            "lock_written": result.lock_written, "source_failures": {s: r for s, r in result.source_failures}}


def register(app: typer.Typer) -> None:
    @app.command(name="lock")
    def lock_cmd(
        model_id: Annotated[str, typer.Argument(help="Model id, e.g. Qwen/Qwen3-VL-8B-Instruct.")],
        revision: RevisionOpt = None,
        source: SourceOpt = None,
        config: ConfigOpt = None,
        include: IncludeOpt = None,
        exclude: ExcludeOpt = None,
        lock: LockFileOpt = Path("qwen-fetch.lock"),
        update: UpdateOpt = False,
        offline: OfflineOpt = False,
        json_out: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        """Resolve a revision and write its pin (commit + every file's sha256) without downloading the weights.

        LFS files take their sha256 from the hub metadata; plain git files are downloaded
        (they are small), hashed, and their git blob id is checked.
        """
        def body() -> None:
            from qwen_fetch.api import run_pull
            from qwen_fetch.core.progress import NullProgress
            from qwen_fetch.sources.config import load_config
            from qwen_fetch.store.lockio import read_lock

            go_offline(offline)
            load_config(config)  # a broken mirrors.yaml is reported even when the pin exists
            existing = read_lock(lock).current(model_id)
            do_update = update or (existing is not None and revision is not None
                                   and revision not in (existing.revision, existing.commit))
            if existing is not None and not do_update:
                pin = existing
                if json_out:
                    emit_json({"ok": True, "model": model_id, "commit": pin.commit, "revision": pin.revision,
                               "files": len(pin.files), "lock_written": False})
                else:
                    console().print(f"{model_id} already pinned to {pin.revision}@{pin.commit[:12]} in {lock} "
                                    "(use --update to re-resolve)")
                return
            result = run_pull(model_id, revision=revision, source=source, config=config, lock=lock,
                              include=include or (), exclude=exclude or (), update=do_update, download=False,
                              progress=NullProgress())
            if json_out:
                emit_json(lock_json(result))
                return
            console().print(styled("✓", "green"), f"pinned {model_id}@{result.revision} ({result.commit[:12]}) from "
                            f"{result.source}: {len(result.files)} files, {format_bytes(sum(f.size for f in result.files))} "
                            f"in {lock}")

        run_command(body, json_mode=json_out, debug=debug)
