"""`qwen-fetch gc`: print a deletion plan (what, why, bytes), then carry it out."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from qwen_fetch.cli.common import (
    CacheDirOpt,
    DebugOpt,
    JsonOpt,
    console,
    emit_json,
    run_command,
    styled,
)
from qwen_fetch.core.errors import EXIT_CODE_HELP, UsageError
from qwen_fetch.core.gc import GcPlan, GcPolicy, parse_duration
from qwen_fetch.core.lockfile import DEFAULT_LOCK_NAME
from qwen_fetch.core.units import format_bytes


def build_policy(lock: list[Path] | None, no_lock: bool, keep_last: int, older_than: str | None,
                 incomplete_older_than: str) -> GcPolicy:
    from qwen_fetch.ops.verify_select import load_pins

    paths = lock or [Path(DEFAULT_LOCK_NAME)]
    present = [p for p in paths if p.is_file()]
    if lock and len(present) != len(paths):
        missing = ", ".join(str(p) for p in paths if not p.is_file())
        raise UsageError(f"lockfile {missing} does not exist", hint="pass every project's lockfile with --lock FILE")
    if not present and not no_lock:
        raise UsageError(f"no lockfile ({DEFAULT_LOCK_NAME} is not here): gc would protect only revisions that a ref names",
                         hint="pass your projects' lockfiles with --lock FILE (repeatable), or --no-lock to accept that")
    pins = load_pins(present, explicit=True)
    pinned: set[tuple[str, str]] = set()
    blobs: set[tuple[str, str]] = set()
    for mid, pin in pins:
        pinned.add((mid, pin.commit))
        pinned.update((mid, rev.commit) for _name, rev in pin.sources)  # a hub's own commit names a snapshot too
        blobs.update((mid, f.blob_name) for f in pin.files)
    if keep_last < 0:
        raise UsageError("--keep-last must be 0 or more", hint="e.g. --keep-last 1")
    return GcPolicy(pinned=frozenset(pinned), pinned_blobs=frozenset(blobs), now=time.time(), keep_last=keep_last,
                    older_than=parse_duration(older_than) if older_than else None,
                    incomplete_older_than=parse_duration(incomplete_older_than),
                    lock_names=tuple(str(p) for p in present))


def make_plan(cache_dir: Path | None, policy: GcPolicy) -> GcPlan:
    from qwen_fetch.core.gc import plan_gc
    from qwen_fetch.ops.verify_select import existing_cache
    from qwen_fetch.sources.config import default_cache_dir
    from qwen_fetch.store.gc_disk import scan_state

    cache = existing_cache(Path(os.path.abspath(cache_dir or default_cache_dir())), explicit=cache_dir is not None)
    return plan_gc(scan_state(cache), policy)


def print_plan(plan: GcPlan, *, verbose_kept: bool = True) -> None:
    con = console()
    con.print(f"cache {plan.cache_dir}", markup=False)
    for s in plan.skipped:
        con.print(styled("left alone", "yellow"), f"(corrupted; see `qwen-fetch verify --all`): {s}")
    if verbose_kept:
        for k in plan.kept:
            con.print(f"  keep    {k.kind:<8} {k.repo} {k.name[:12] if k.kind == 'revision' else k.name}: {k.why}",
                      markup=False)
    for a in plan.actions:
        try:
            shown = a.path.relative_to(plan.cache_dir).as_posix()
        except ValueError:
            shown = str(a.path)
        con.print(f"  delete  {a.kind:<8} {shown} ({format_bytes(a.bytes)}): {a.why}", markup=False)
    if plan.actions:
        con.print(styled(f"{len(plan.actions)} deletion(s), {format_bytes(plan.bytes)} to free", "bold"))
    else:
        con.print("nothing to collect")


def do_gc(cache_dir: Path | None, lock: list[Path] | None, no_lock: bool, keep_last: int, older_than: str | None,
          incomplete_older_than: str, dry_run: bool, yes: bool, json_mode: bool) -> None:
    from qwen_fetch.store.gc_disk import execute

    policy = build_policy(lock, no_lock, keep_last, older_than, incomplete_older_than)
    plan = make_plan(cache_dir, policy)
    if not json_mode:
        print_plan(plan)
    if dry_run or not plan.actions:
        if json_mode:
            emit_json({"ok": True, "dry_run": dry_run, "plan": plan.to_dict(), "result": None})
        return
    if not yes:
        if not sys.stdin.isatty() or json_mode:
            raise UsageError("refusing to delete without confirmation (not a terminal)",
                             hint="review the plan with --dry-run, then rerun with --yes")
        if not typer.confirm(f"Delete {len(plan.actions)} item(s), freeing {format_bytes(plan.bytes)}?", default=False):
            console().print("nothing deleted")
            return
    result = execute(plan)
    if json_mode:
        emit_json({"ok": True, "dry_run": False, "plan": plan.to_dict(), "result": result.to_dict()})
        return
    con = console()
    for a, why in result.skipped:
        con.print(f"  skipped {a.kind} {a.path}: {why}", markup=False)
    con.print(styled(f"freed {format_bytes(result.freed)}", "green"),
              f"({len(result.done)} deletion(s), {len(result.skipped)} skipped)")


def register(app: typer.Typer) -> None:
    @app.command("gc", epilog=EXIT_CODE_HELP)
    def gc(
        cache_dir: CacheDirOpt = None,
        lock: Annotated[list[Path] | None, typer.Option("--lock", help=f"Lockfile whose pins are kept (default ./{DEFAULT_LOCK_NAME}); repeat for several projects.")] = None,
        no_lock: Annotated[bool, typer.Option("--no-lock", help="Run with no lockfile: only ref targets (and --keep-last/--older-than) protect revisions.")] = False,
        keep_last: Annotated[int, typer.Option("--keep-last", help="Also keep the N newest unpinned, unreferenced revisions of each model.")] = 0,
        older_than: Annotated[str | None, typer.Option("--older-than", help="Only delete revisions last modified longer ago than this (45m, 12h, 30d, 2w).")] = None,
        incomplete_older_than: Annotated[str, typer.Option("--incomplete-older-than", help="Age after which partial downloads and unlinked blobs are collected.")] = "1d",
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and stop.")] = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
        json_mode: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        """Delete cached revisions no lockfile pins and no ref names, unused blobs and stale partial downloads.

        Prints the plan (what, why, bytes) first.  Never deletes a pinned revision, a blob a pin
        expects, or anything a running pull holds the lock of.
        """
        run_command(lambda: do_gc(cache_dir, lock, no_lock, keep_last, older_than, incomplete_older_than, dry_run,
                                  yes, json_mode), json_mode=json_mode, debug=debug)

