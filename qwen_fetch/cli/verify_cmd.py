"""`qwen-fetch verify`: re-hash a cached snapshot or a folder and diff it with the lock.

Offline by construction: this module imports no network code.
"""

from __future__ import annotations

import os
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
)
from qwen_fetch.errors import EXIT_CODE_HELP, ExitCode, IntegrityError, UsageError
from qwen_fetch.lockfile import DEFAULT_LOCK_NAME, Lock, read_lock
from qwen_fetch.manifest import Pin
from qwen_fetch.verify import TargetReport, VerifyReport


def load_pins(lock_paths: list[Path], *, explicit: bool) -> list[tuple[str, Pin]]:
    """(model id, pin) for every pin of every lockfile, in lock order (current pin first)."""
    out: list[tuple[str, Pin]] = []
    seen: set[tuple[str, str]] = set()
    for path in lock_paths:
        if not path.is_file():
            if explicit:
                raise UsageError(f"lockfile {path} does not exist",
                                 hint="pass the right --lock, or create one with `qwen-fetch lock MODEL`")
            continue
        lock: Lock = read_lock(path)
        for mid, pins in lock.models:
            for pin in pins:
                if (mid, pin.commit) not in seen:
                    seen.add((mid, pin.commit))
                    out.append((mid, pin))
    return out


def looks_like_path(arg: str) -> bool:
    """A positional argument is a PATH when it is clearly one; ``org/name`` stays a model id."""
    from qwen_fetch.cache import check_repo_id

    if arg.startswith(("/", "./", "../", "~")) or arg in (".", ".."):
        return True
    try:
        check_repo_id(arg)
    except UsageError:
        return Path(arg).is_dir()
    return False


def select_pins(model: str, pins: list[tuple[str, Pin]], revision: str | None, cache_dir: Path | None,
                locks: str) -> list[Pin]:
    """The pins of ``model`` to check: the one naming ``revision`` (commit, revision or cached ref), or all."""
    mine = [p for mid, p in pins if mid == model]
    if not mine:
        raise UsageError(f"{model} is not pinned in {locks}",
                         hint=f"pin it first: qwen-fetch lock {model}  (or pass --lock FILE)")
    if revision is None:
        return mine
    commit = revision
    if cache_dir is not None:
        from qwen_fetch.cache import RepoCache

        commit = RepoCache(cache_dir, model).read_ref(revision) or revision
    chosen = [p for p in mine if p.commit in (revision, commit) or p.revision == revision]
    if not chosen:
        pinned = ", ".join(f"{p.revision}@{p.commit[:12]}" for p in mine)
        raise UsageError(f"revision {revision!r} of {model} is not pinned (pinned: {pinned})",
                         hint=f"pin it with: qwen-fetch lock {model} --revision {revision} --update")
    return chosen[:1]


def infer_from_snapshot(folder: Path) -> tuple[str, str] | None:
    """``.../models--org--name/snapshots/<commit>`` -> (model id, commit)."""
    from qwen_fetch.cache import repo_id_from_folder

    parts = folder.resolve().parts
    if len(parts) >= 3 and parts[-2] == "snapshots":
        rid = repo_id_from_folder(parts[-3])
        if rid:
            return rid, parts[-1]
    return None


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return f"{n}"


def print_target(con: object, t: TargetReport) -> None:
    p = con.print  # type: ignore[attr-defined]
    status = "[green]ok[/]" if t.ok else "[bold red]FAILED[/]"
    p(f"{status} {t.model}@{t.commit[:12]} ({t.kind} {t.location}): {t.files_checked} files, "
      f"{_size(t.bytes_hashed)} hashed")
    for path in t.missing:
        p(f"  missing     {path}", markup=False)
    for path in t.extra:
        p(f"  extra       {path}", markup=False)
    for m in t.mismatched:
        p(f"  mismatched  {m.path} ({', '.join(m.fields) or 'unreadable'})", markup=False)
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
        con.print(f"stray       {s.path} ({s.reason}, {_size(s.size)}): `qwen-fetch gc` removes it", markup=False)
    for path, why in report.skipped:
        con.print(f"skipped     {path}: {why} (left alone)", markup=False)
    for s in report.partials:
        if not s.stray:
            con.print(f"partial     {s.path} ({_size(s.size)}): the next pull resumes it", markup=False)
    c = report.counts()
    if report.ok:
        con.print(f"[green]verified[/]: {len(report.targets)} target(s), all files match the lock")
    else:
        con.print("[bold red]verify failed[/]: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in c.items() if v))


def do_verify(target: str | None, lock: list[Path] | None, cache_dir: Path | None, local_dir: Path | None,
              model_opt: str | None, revision: str | None, all_: bool, workers: int | None,
              json_mode: bool) -> VerifyReport:
    from qwen_fetch.config import default_cache_dir
    from qwen_fetch.progress import make_progress
    from qwen_fetch.verify_disk import Target, verify_all, verify_targets

    progress = make_progress("verify", json_mode=json_mode)

    lock_paths = lock or [Path(DEFAULT_LOCK_NAME)]
    locks_shown = ", ".join(str(p) for p in lock_paths)
    pins = load_pins(lock_paths, explicit=bool(lock))
    cache = Path(os.path.abspath(cache_dir or default_cache_dir()))
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1", hint="e.g. --workers 4")

    if all_:
        if target or local_dir:
            raise UsageError("--all checks the whole cache; it takes no MODEL_ID, PATH or --local-dir",
                             hint="qwen-fetch verify --all --cache-dir DIR")
        if not pins:
            raise UsageError(f"no pins in {locks_shown}", hint="pin models with `qwen-fetch lock MODEL`, or pass --lock")
        return verify_all(cache, pins, workers=workers, progress=progress)

    folder: Path | None = local_dir
    model = model_opt
    if target is not None and local_dir is None and looks_like_path(target):
        folder = Path(target).expanduser()
    elif target is not None:
        if model and model != target:
            raise UsageError(f"MODEL_ID {target} and --model {model} disagree", hint="pass only one")
        model = target

    if folder is not None:
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a directory", hint="pass the folder that `pull --local-dir` wrote")
        inferred = infer_from_snapshot(folder)
        if model is None and inferred:
            model = inferred[0]
        if model is None:
            ids = sorted({mid for mid, _ in pins})
            if len(ids) != 1:
                raise UsageError(f"cannot tell which model {folder} holds",
                                 hint="name it: qwen-fetch verify --local-dir DIR MODEL_ID  (or --model MODEL_ID)")
            model = ids[0]
        rev = revision or (inferred[1] if inferred and inferred[0] == model else None)
        pin = select_pins(model, pins, rev, None, locks_shown)[0]
        snap = inferred is not None and inferred[0] == model
        blobs = folder.resolve().parent.parent / "blobs" if snap else None
        root = folder.resolve() if snap else Path(os.path.abspath(folder))
        t = Target(model, pin, root, snapshot=snap, blobs_dir=blobs)
        return VerifyReport(targets=verify_targets([t], workers=workers, progress=progress))

    if model is None:
        raise UsageError("name a MODEL_ID or a PATH, or pass --all", hint="qwen-fetch verify Qwen/Qwen3-VL-8B-Instruct")
    from qwen_fetch.cache import RepoCache

    chosen = select_pins(model, pins, revision, cache, locks_shown)
    repo = RepoCache(cache, model)
    present = [p for p in chosen if repo.snapshot_dir(p.commit).is_dir()]
    if not present:
        wanted = ", ".join(p.commit[:12] for p in chosen)
        raise IntegrityError(f"{model} (pinned {wanted}) is not in the cache {cache}",
                             hint=f"download it: qwen-fetch pull {model} --cache-dir {cache}",
                             reference="not-cached")
    targets = [Target(model, p, repo.snapshot_dir(p.commit), snapshot=True, blobs_dir=repo.blobs_dir)
               for p in present]
    return VerifyReport(targets=verify_targets(targets, workers=workers, progress=progress))


def register(app: typer.Typer) -> None:
    @app.command("verify", epilog=EXIT_CODE_HELP)
    def verify(
        target: Annotated[str | None, typer.Argument(metavar="[MODEL_ID | PATH]",
                                                     help="A pinned model id (its cached snapshots), or a folder / snapshot dir.")] = None,
        lock: Annotated[list[Path] | None, typer.Option("--lock", help=f"Lockfile(s) with the pins (default ./{DEFAULT_LOCK_NAME}); repeatable.")] = None,
        cache_dir: CacheDirOpt = None,
        local_dir: Annotated[Path | None, typer.Option("--local-dir", help="Verify this folder (a `pull --local-dir` download) instead of the cache.")] = None,
        model: Annotated[str | None, typer.Option("--model", help="Model id of the PATH / --local-dir folder (when it cannot be inferred).")] = None,
        revision: Annotated[str | None, typer.Option("--revision", "--commit", help="Check only this pinned revision or commit.")] = None,
        all_: Annotated[bool, typer.Option("--all", help="Every pinned model present in the cache, plus refs, snapshot links and stray partial downloads.")] = False,
        workers: Annotated[int | None, typer.Option("--workers", help="Hashing threads (default: CPU cores).")] = None,
        json_mode: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        """Re-hash cached files (or a folder) offline and compare them with the lock.

        Prints every missing, extra and mismatched file (expected/actual) and every snapshot link that does not point at the right blob, sorted, in one report; exit 3 if any.
        """
        report = run_command(lambda: do_verify(target, lock, cache_dir, local_dir, model, revision, all_, workers,
                                               json_mode), json_mode=json_mode, debug=debug)
        if json_mode:
            emit_json(report.to_dict())
        else:
            print_report(report)
        if not report.ok:
            raise typer.Exit(int(ExitCode.INTEGRITY))
