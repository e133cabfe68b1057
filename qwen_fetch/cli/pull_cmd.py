"""``qwen-fetch pull``: download a model, pinned and verified."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qwen_fetch.cli.common import (
    CacheDirOpt,
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
from qwen_fetch.core.units import format_bytes, format_rate

if TYPE_CHECKING:
    from qwen_fetch.ops.pull import PullResult

LocalDirOpt = Annotated[Path | None, typer.Option("--local-dir", help="Write a plain folder instead of the HF cache (so not with --cache-dir).")]
FrozenOpt = Annotated[bool, typer.Option("--frozen", help="CI mode: never add or change a pin; a missing pin is an error.")]
ConnOpt = Annotated[int | None, typer.Option("--connections", "-c", min=1, max=256, help="Total parallel HTTP connections (default: 24 per CPU core, at most 64).")]
ReverifyOpt = Annotated[bool, typer.Option("--reverify", help="Re-hash every cached file, even those a verification stamp vouches for.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, max=256, help="Alias of --connections (as in hf download --max-workers).")]


def fallback_lines(result: PullResult) -> list[str]:
    """``path: source (reason)`` for every source that failed a file another one then served, sorted."""
    return sorted({f"{o.path}: {s} ({r})" for o in result.outcomes for s, r in o.failed_sources})


def pull_json(result: PullResult) -> dict[str, object]:
    """The ``--json`` document of ``pull`` (before the smoke report and the notes are added)."""
    served: dict[str, str] = {o.path: o.source for o in result.outcomes if o.source}
    return {
        "ok": True,
        "model": result.model_id,
        "revision": result.revision,
        "commit": result.commit,
        "source": result.source,
        "target": str(result.target),
        "files": len(result.files),
        "downloaded_files": result.downloaded_files,
        "cached_files": result.cached_files,
        "bytes": result.bytes_transferred(),
        "total_size": sum(f.size for f in result.files),
        "seconds": round(result.seconds, 3),
        "retries": sum(o.retries for o in result.outcomes),
        "served_by": dict(sorted(served.items())),
        "fallbacks": fallback_lines(result),
        "source_failures": {s: r for s, r in result.source_failures},
        "skipped_extras": list(result.skipped_extras),
        "lock_written": result.lock_written,
        "used_cache": result.used_cache,
        "stamp_trusted_files": result.stamp_trusted_files,
        "rehashed_files": result.rehashed_files,
    }


def register(app: typer.Typer) -> None:
    @app.command()
    def pull(
        model_id: Annotated[str, typer.Argument(help="Model id, e.g. Qwen/Qwen3-VL-8B-Instruct.")],
        revision: RevisionOpt = None,
        source: SourceOpt = None,
        config: ConfigOpt = None,
        include: IncludeOpt = None,
        exclude: ExcludeOpt = None,
        cache_dir: CacheDirOpt = None,
        local_dir: LocalDirOpt = None,
        lock: LockFileOpt = Path("qwen-fetch.lock"),
        update: UpdateOpt = False,
        frozen: FrozenOpt = False,
        connections: ConnOpt = None,
        workers: WorkersOpt = None,
        reverify: ReverifyOpt = False,
        offline: OfflineOpt = False,
        smoke: Annotated[str, typer.Option("--smoke", help="auto: smoke-load when a GPU and the \\[smoke] extra are present; require: fail (exit 5) without them; off.")] = "auto",
        no_smoke: Annotated[bool, typer.Option("--no-smoke", help="Skip the smoke-load (same as --smoke off).")] = False,
        device: Annotated[str, typer.Option("--device", help="Smoke-load device: auto, cuda, cuda:N, cpu.")] = "auto",
        json_out: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        """Download a model, pinned and verified, into the HF cache (or --local-dir).

        Without a pin in the lockfile the pull writes one; with a pin, every file must
        match it (exit 3 otherwise). Interrupted pulls resume when rerun.
        """
        def body() -> None:
            from qwen_fetch.api import check_pull_flags, run_pull
            from qwen_fetch.cli.progress import make_progress
            from qwen_fetch.core.errors import UsageError
            from qwen_fetch.smoke.check import check_device

            # Every flag is checked before the network or the disk is touched.
            mode = "off" if no_smoke else smoke
            if mode not in ("auto", "require", "off"):
                raise UsageError(f"--smoke must be auto, require or off, not {mode!r}", hint="e.g. --smoke require")
            check_device(device)
            check_pull_flags(update=update, frozen=frozen, cache_dir=cache_dir, local_dir=local_dir)
            go_offline(offline)
            progress = make_progress(f"pull {model_id}", json_mode=json_out)
            result = run_pull(model_id, revision=revision, source=source, config=config, cache_dir=cache_dir,
                              local_dir=local_dir, lock=lock, include=include or (), exclude=exclude or (),
                              update=update, frozen=frozen, connections=connections or workers, progress=progress,
                              reverify=reverify, offline=offline)
            out = pull_json(result)
            smoke_report = None
            if mode != "off":
                from qwen_fetch.cli.smoke_hook import after_pull

                smoke_report = after_pull(result, mode=mode, device=device, json_mode=json_out)
            out["smoke"] = smoke_report
            if json_out:
                # What a terminal shows as note lines (retries, fallbacks, a cached copy fetched again).
                out["notes"] = list(getattr(progress, "notes", []))
                emit_json(out)
                return
            # The summary goes to stderr; stdout holds only the folder, so `$(qwen-fetch pull ...)` is a path.
            con = console(stderr=True)
            mb = result.bytes_transferred()
            rate = mb / result.seconds if result.seconds > 0 else 0.0
            if result.used_cache:
                con.print(styled("✓", "green"), f"{model_id}@{result.revision} ({result.commit[:12]}) from the cache, no network: "
                          f"{len(result.files)} files verified ({result.stamp_trusted_files} by stamp, "
                          f"{result.rehashed_files} re-hashed) in {result.seconds:.1f}s")
            else:
                con.print(styled("✓", "green"), f"{model_id}@{result.revision} ({result.commit[:12]}) from {result.source}: "
                          f"{len(result.files)} files verified, {result.downloaded_files} downloaded "
                          + (f"({format_bytes(mb)} in {result.seconds:.1f}s, {format_rate(rate)}), " if mb else "")
                          + f"{result.cached_files} already cached")
            for line in fallback_lines(result):
                con.print(f"  fallback: {line}")
            for p in result.skipped_extras:
                con.print(f"  skipped {p}: extra file published only by {result.source} (not pinned)")
            if result.lock_written:
                con.print(f"  pinned in {lock}")
            typer.echo(str(result.target))  # last line on stdout, as `hf download` prints it

        run_command(body, json_mode=json_out, debug=debug)
