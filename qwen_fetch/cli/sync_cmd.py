"""`qwen-fetch sync`: copy a pinned, verified model into a private store (directory or S3)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qwen_fetch.cli.common import (
    CacheDirOpt,
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    OfflineOpt,
    console,
    emit_json,
    go_offline,
    run_command,
    styled,
)
from qwen_fetch.core.errors import EXIT_CODE_HELP
from qwen_fetch.core.lockfile import DEFAULT_LOCK_NAME
from qwen_fetch.core.units import format_bytes

if TYPE_CHECKING:
    from qwen_fetch.ops.sync import SyncPlan, SyncResult
    from qwen_fetch.store.backends import ObjectStore


def open_dest(dest: str, config: Path | None, s3_endpoint_url: str | None) -> ObjectStore:
    """``--to``: the name of a ``kind: dir``/``kind: s3`` source, ``s3://bucket/prefix``, or a directory."""
    from qwen_fetch.core.errors import QFError, UsageError
    from qwen_fetch.store.backends import open_store

    if "/" not in dest and ":" not in dest:
        from qwen_fetch.sources.config import load_config

        try:
            sc = load_config(config).get(dest)
        except QFError:
            sc = None
        if sc is not None:
            from qwen_fetch.sources.registry import kind_of, store_kinds

            store = kind_of(sc).open_store(sc, s3_endpoint_url=s3_endpoint_url)
            if store is None:
                kinds = " or ".join(f"kind: {k}" for k in store_kinds())
                raise UsageError(f"source {dest!r} is kind {sc.kind}; sync writes only to {kinds}",
                                 hint="pass a directory or s3://bucket/prefix")
            return store
    return open_store(dest, s3_endpoint_url=s3_endpoint_url)


def do_sync(model: str, dest: str, lock: Path, cache_dir: Path | None, revision: str | None, config: Path | None,
            s3_endpoint_url: str | None, dry_run: bool, recheck: bool, workers: int | None) -> SyncPlan | SyncResult:
    from qwen_fetch.core.errors import UsageError
    from qwen_fetch.ops.sync import SyncOptions, default_workers, run_sync
    from qwen_fetch.sources.config import default_cache_dir

    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1", hint="e.g. --workers 4")
    store = open_dest(dest, config, s3_endpoint_url)
    opts = SyncOptions(model=model, dest=dest, cache_dir=Path(os.path.abspath(cache_dir or default_cache_dir())),
                       lock_path=lock, revision=revision, s3_endpoint_url=s3_endpoint_url, dry_run=dry_run,
                       recheck=recheck, workers=workers or default_workers())
    try:
        return run_sync(opts, store)
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    @app.command("sync", epilog=EXIT_CODE_HELP)
    def sync(
        model: Annotated[str, typer.Argument(metavar="MODEL_ID", help="A model pinned in the lock and present in the cache.")],
        to: Annotated[str, typer.Option("--to", help="Destination: a directory (NFS share), s3://bucket/prefix, or the name of a kind: dir/s3 source in mirrors.yaml.")],
        lock: Annotated[Path, typer.Option("--lock", help="Lockfile with the pin.")] = Path(DEFAULT_LOCK_NAME),
        cache_dir: CacheDirOpt = None,
        revision: Annotated[str | None, typer.Option("--revision", help="Which pinned revision (default: the current pin).")] = None,
        config: ConfigOpt = None,
        s3_endpoint_url: Annotated[str | None, typer.Option("--s3-endpoint-url", help="S3-compatible server (MinIO, Ceph, OSS); default $AWS_ENDPOINT_URL or AWS.")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be uploaded; change nothing.")] = False,
        recheck: Annotated[bool, typer.Option("--recheck", help="Also re-verify blobs already in the store (re-read/ETag) and replace bad ones.")] = False,
        workers: Annotated[int | None, typer.Option("--workers", help="Parallel uploads.")] = None,
        offline: OfflineOpt = False,
        json_mode: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        """Copy a pinned, verified model from the local cache into a private store.

        The cached snapshot is re-hashed against the lock first; every uploaded blob is
        verified after upload; the manifest and ref are written last.  Re-running uploads
        only what is missing.  Layout: blobs/<sha256>, models/ORG/NAME/commits/<commit>.json,
        models/ORG/NAME/refs/<revision>.
        """
        from qwen_fetch.ops.sync import SyncPlan

        go_offline(offline)
        out = run_command(lambda: do_sync(model, to, lock, cache_dir, revision, config, s3_endpoint_url, dry_run,
                                          recheck, workers), json_mode=json_mode, debug=debug)
        if json_mode:
            emit_json(out.to_dict())
            return
        con = console()
        plan = out if isinstance(out, SyncPlan) else out.plan
        head = f"{plan.model}@{plan.pin.revision} ({plan.pin.commit[:12]}) -> {plan.dest}"
        if isinstance(out, SyncPlan):
            con.print(f"dry run: {head}", markup=False)
            for b in plan.upload:
                con.print(f"  upload  {b.path} ({format_bytes(b.size)}, {b.reason})", markup=False)
            con.print(f"  {len(plan.upload)} blob(s) to upload ({format_bytes(plan.upload_bytes)}), "
                      f"{len(plan.present)} already there; manifest {'to write' if plan.write_manifest else 'unchanged'}",
                      markup=False)
            return
        con.print(styled("synced", "green"), head)
        sent = (f"uploaded {out.uploaded_blobs} blob(s), {format_bytes(out.uploaded_bytes)}, each verified after upload"
                if out.uploaded_blobs else "nothing to upload")
        con.print(f"  {sent}; {len(plan.present)} already present; "
                  f"manifest {'written' if plan.write_manifest else 'unchanged'}; {out.seconds:.1f}s", markup=False)
