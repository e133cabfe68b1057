"""`qwen-fetch verify`: re-hash a cached snapshot or a folder and diff it with the lock.

Offline by construction: this module imports no network code.
"""

from __future__ import annotations

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
from qwen_fetch.core.errors import EXIT_CODE_HELP, ExitCode, UsageError
from qwen_fetch.core.lockfile import DEFAULT_LOCK_NAME
from qwen_fetch.core.units import format_bytes
from qwen_fetch.core.verify import TargetReport, VerifyReport
from qwen_fetch.ops.verify_select import build_report


def print_target(con: object, t: TargetReport) -> None:
    p = con.print  # type: ignore[attr-defined]
    status = styled("ok", "green") if t.ok else styled("FAILED", "bold red")
    p(status, f"{t.model}@{t.commit[:12]} ({t.kind} {t.location}): {t.files_checked} files, "
      f"{format_bytes(t.bytes_hashed)} hashed")
    for path in t.missing:
        p(f"  missing     {path}", markup=False)
    for path in t.extra:
        p(f"  extra       {path}", markup=False)
    for m in t.mismatched:
        p(f"  mismatched  {m.path} ({', '.join(m.fields) or 'unreadable'})", markup=False)
        if m.expected.root is not None:  # checked by its chunk root, on every core
            p(f"      expected size={m.expected.size} root={m.expected.root}", markup=False)
            p(f"      actual   size={m.actual.size} root={m.actual.root}", markup=False)
        else:
            p(f"      expected size={m.expected.size} sha256={m.expected.sha256}", markup=False)
            p(f"      actual   size={m.actual.size} sha256={m.actual.sha256}", markup=False)
    for b in t.bad_links:
        p(f"  bad link    {b.path} ({b.problem}): expected blobs/{b.expected}, actual {b.actual}", markup=False)


def print_report(report: VerifyReport) -> None:
    con = console()
    for t in report.targets:
        print_target(con, t)
    for b in report.bad_links:
        con.print(f"bad link    {b.path} ({b.problem}) -> {b.actual}", markup=False)
    for r in report.bad_refs:
        con.print(f"bad ref     {r.repo} refs/{r.ref} -> {r.commit} ({r.problem})", markup=False)
    for s in report.stray:
        con.print(f"stray       {s.path} ({s.reason}, {format_bytes(s.size)}): `qwen-fetch gc` removes it", markup=False)
    for path, why in report.skipped:
        con.print(f"skipped     {path}: {why} (left alone)", markup=False)
    for s in report.partials:
        if not s.stray:
            con.print(f"partial     {s.path} ({format_bytes(s.size)}): the next pull resumes it", markup=False)
    c = report.counts()
    if report.ok:
        con.print(styled("verified", "green"), f": {len(report.targets)} target(s), all files match the lock", sep="")
    else:
        con.print(styled("verify failed", "bold red"), ": " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in c.items() if v),
                  sep="")


def do_verify(target: str | None, lock: list[Path] | None, cache_dir: Path | None, local_dir: Path | None,
              model_opt: str | None, revision: str | None, all_: bool, workers: int | None,
              json_mode: bool) -> VerifyReport:
    from qwen_fetch.cli.progress import make_progress

    progress = make_progress("verify", json_mode=json_mode, count_files=False)
    return build_report(target, lock, cache_dir, local_dir, model_opt, revision, all_, workers, progress)


def _one_revision(revision: str | None, commit: str | None) -> str | None:
    if revision and commit and revision != commit:
        raise UsageError(f"--revision {revision} and --commit {commit} disagree", hint="pass only one")
    return revision or commit


def register(app: typer.Typer) -> None:
    @app.command("verify", epilog=EXIT_CODE_HELP)
    def verify(
        target: Annotated[str | None, typer.Argument(metavar="MODEL_ID|PATH",
                                                     help="A pinned model id (its cached snapshots), or a folder / snapshot dir.")] = None,
        lock: Annotated[list[Path] | None, typer.Option("--lock", help=f"Lockfile(s) with the pins (default ./{DEFAULT_LOCK_NAME}); repeatable.")] = None,
        cache_dir: CacheDirOpt = None,
        local_dir: Annotated[Path | None, typer.Option("--local-dir", help="Verify this folder (a `pull --local-dir` download) instead of the cache.")] = None,
        model: Annotated[str | None, typer.Option("--model", help="Model id of the PATH / --local-dir folder (when it cannot be inferred).")] = None,
        revision: Annotated[str | None, typer.Option("--revision", help="Check only this pinned revision or commit (--commit is the same).")] = None,
        commit: Annotated[str | None, typer.Option("--commit", hidden=True, help="Same as --revision.")] = None,
        all_: Annotated[bool, typer.Option("--all", help="Every pinned model present in the cache, plus refs, snapshot links and stray partial downloads.")] = False,
        workers: Annotated[int | None, typer.Option("--workers", help="Hashing threads (default: CPU cores).")] = None,
        json_mode: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        """Re-hash cached files (or a folder) offline and compare them with the lock.

        Prints every missing, extra and mismatched file (expected/actual) and every snapshot link that does not point at the right blob, sorted, in one report; exit 3 if any.
        """
        report = run_command(lambda: do_verify(target, lock, cache_dir, local_dir, model, _one_revision(revision, commit),
                                               all_, workers, json_mode), json_mode=json_mode, debug=debug)
        if json_mode:
            emit_json(report.to_dict())
        else:
            print_report(report)
        if not report.ok:
            raise typer.Exit(int(ExitCode.INTEGRITY))
