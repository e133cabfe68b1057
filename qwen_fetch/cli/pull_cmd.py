"""``qwen-fetch pull`` and ``qwen-fetch lock``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qwen_fetch.cli.common import (CacheDirOpt, ConfigOpt, DebugOpt, JsonOpt, OfflineOpt, console, emit_json,
                                   go_offline, run_command)

RevisionOpt = Annotated[str | None, typer.Option("--revision", "-r", help="Branch, tag or commit (default: the pinned commit, else main).")]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Source name from mirrors.yaml, or 'auto' (default: by priority, with fallback).")]
IncludeOpt = Annotated[list[str] | None, typer.Option("--include", help="Glob of files to fetch (repeatable).")]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", help="Glob of files to skip (repeatable).")]
LocalDirOpt = Annotated[Path | None, typer.Option("--local-dir", help="Write a plain folder instead of the HF cache.")]
LockFileOpt = Annotated[Path, typer.Option("--lock", help="Lockfile with the pins.")]
UpdateOpt = Annotated[bool, typer.Option("--update", help="Re-resolve the revision and move the pin (the old one is kept for rollback).")]
FrozenOpt = Annotated[bool, typer.Option("--frozen", help="CI mode: never add or change a pin; a missing pin is an error.")]
ConnOpt = Annotated[int | None, typer.Option("--connections", "-c", min=1, max=256, help="Total parallel HTTP connections (default: 24 per CPU core, at most 64).")]
ReverifyOpt = Annotated[bool, typer.Option("--reverify", help="Re-hash every cached file, even those a verification stamp vouches for.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, max=256, help="Alias of --connections (as in hf download --max-workers).")]


def _engine(connections: int | None, workers: int | None):  # type: ignore[no-untyped-def]
    from qwen_fetch.net.deadline import Deadlines
    from qwen_fetch.net.jobs import EngineOptions

    # QWEN_FETCH_TIMEOUT / QWEN_FETCH_MIN_RATE / QWEN_FETCH_RATE_WINDOW: see net/deadline.py
    return EngineOptions.from_deadlines(Deadlines.from_env(), connections=connections or workers)


def _options(model_id: str, revision: str | None, source: str | None, include: list[str] | None,
             exclude: list[str] | None, cache_dir: Path | None, local_dir: Path | None, lock: Path, update: bool,
             frozen: bool, connections: int | None, workers: int | None, download: bool,
             reverify: bool = False, offline: bool = False):  # type: ignore[no-untyped-def]
    from qwen_fetch.config import default_cache_dir
    from qwen_fetch.pull import PullOptions

    return PullOptions(model_id=model_id, revision=revision, source=source, include=tuple(include or ()),
                       exclude=tuple(exclude or ()), cache_dir=(cache_dir or default_cache_dir()).expanduser(),
                       local_dir=local_dir.expanduser().absolute() if local_dir else None, lock_path=lock,
                       update=update, frozen=frozen, download=download, reverify=reverify, offline=offline,
                       engine=_engine(connections, workers))


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return str(n)


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
        smoke: Annotated[str, typer.Option("--smoke", help="auto: smoke-load when a GPU and the [smoke] extra are present; require: fail (exit 5) without them; off.")] = "auto",
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
            from qwen_fetch.config import load_config
            from qwen_fetch.errors import UsageError
            from qwen_fetch.progress import make_progress
            from qwen_fetch.pull import Puller

            mode = "off" if no_smoke else smoke
            if mode not in ("auto", "require", "off"):
                raise UsageError(f"--smoke must be auto, require or off, not {mode!r}", hint="e.g. --smoke require")
            go_offline(offline)
            cfg = load_config(config)
            opts = _options(model_id, revision, source, include, exclude, cache_dir, local_dir, lock, update,
                            frozen, connections, workers, download=True, reverify=reverify, offline=offline)
            progress = make_progress(f"pull {model_id}", json_mode=json_out)
            puller = Puller(cfg, opts, progress)
            try:
                result = puller.run()
            finally:
                puller.close()
            out = result.to_dict()
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
                con.print(f"[green]✓[/] {model_id}@{result.revision} ({result.commit[:12]}) from the cache, no network: "
                          f"{len(result.files)} files verified ({result.stamp_trusted_files} by stamp, "
                          f"{result.rehashed_files} re-hashed) in {result.seconds:.1f}s")
            else:
                con.print(f"[green]✓[/] {model_id}@{result.revision} ({result.commit[:12]}) from {result.source}: "
                          f"{len(result.files)} files verified, {out['downloaded_files']} downloaded "
                          f"({_human(mb)} in {result.seconds:.1f}s, {_human(rate)}/s), {result.cached_files} already cached")
            for line in out["fallbacks"]:  # type: ignore[union-attr]
                con.print(f"  fallback: {line}")
            for p in result.skipped_extras:
                con.print(f"  skipped {p}: extra file published only by {result.source} (not pinned)")
            if result.lock_written:
                con.print(f"  pinned in {lock}")
            typer.echo(str(result.target))  # last line on stdout, as `hf download` prints it

        run_command(body, json_mode=json_out, debug=debug)

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
            from qwen_fetch.config import load_config
            from qwen_fetch.lockfile import read_lock
            from qwen_fetch.progress import NullProgress
            from qwen_fetch.pull import Puller

            go_offline(offline)
            cfg = load_config(config)
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
            opts = _options(model_id, revision, source, include, exclude, None, None, lock, do_update, False,
                            None, None, download=False)
            puller = Puller(cfg, opts, NullProgress())
            try:
                result = puller.run()
            finally:
                puller.close()
            if json_out:
                d = result.to_dict()
                emit_json({k: d[k] for k in ("ok", "model", "revision", "commit", "source", "files", "total_size",
                                              "lock_written", "source_failures")})
                return
            console().print(f"[green]✓[/] pinned {model_id}@{result.revision} ({result.commit[:12]}) from "
                            f"{result.source}: {len(result.files)} files, {_human(sum(f.size for f in result.files))} "
                            f"in {lock}")

        run_command(body, json_mode=json_out, debug=debug)
