"""`qwen-fetch smoke`: load a cached model (or a folder) with transformers and generate a few tokens.

torch and transformers are imported only when the command runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

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
from qwen_fetch.core.errors import EXIT_CODE_HELP, IntegrityError, Ref, UsageError
from qwen_fetch.core.revisions import is_commit_id
from qwen_fetch.core.units import format_bytes, format_rate


@dataclass(frozen=True)
class SmokeTarget:
    """The folder to load, and the model id/commit when it is a cache snapshot."""

    folder: Path
    model_id: str | None
    commit: str | None


def resolve_target(target: str, *, cache_dir: Path | None, revision: str | None,
                   lock_commit: str | None = None) -> SmokeTarget:
    """A PATH is used as is; a MODEL_ID goes through the cache: refs/<rev> -> snapshots/<commit>."""
    from qwen_fetch.ops.verify_select import infer_from_snapshot, looks_like_path

    if looks_like_path(target):
        folder = Path(target).expanduser()
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a directory", hint="pass a model folder or a cached MODEL_ID")
        inferred = infer_from_snapshot(folder)
        return SmokeTarget(folder, *(inferred or (None, None)))

    from qwen_fetch.sources.config import default_cache_dir
    from qwen_fetch.store.hfcache import RepoCache, check_repo_id

    model_id = check_repo_id(target)
    cache = Path(os.path.abspath(cache_dir or default_cache_dir()))
    repo = RepoCache(cache, model_id)
    rev = revision or "main"
    commit = rev if is_commit_id(rev) else repo.read_ref(rev)
    if commit is None and revision is None:
        commit = lock_commit  # cached by commit only (e.g. pulled with --revision <sha>)
    if commit is None or not repo.snapshot_dir(commit).is_dir():
        raise IntegrityError(f"{model_id}@{rev} is not in the cache {cache}",
                             hint=f"download it first: qwen-fetch pull {model_id}"
                                  + (f" --revision {revision}" if revision else "")
                                  + (f" --cache-dir {cache_dir}" if cache_dir else ""),
                             reference=Ref.NOT_CACHED)
    return SmokeTarget(repo.snapshot_dir(commit), model_id, commit)


def pinned_code_paths(folder: Path, pin_files: dict[str, str]) -> set[str]:
    """Paths the lock pins, keeping a ``*.py`` file only when its bytes still match the pin.

    ``pin_files`` is ``{path: sha256}``.  Code is re-hashed here because it is about to run.
    """
    from qwen_fetch.core.digests import digest_matches
    from qwen_fetch.store.hasher import hash_file

    out: set[str] = set()
    for path, sha in pin_files.items():
        if path.endswith(".py"):
            f = folder / path
            if not f.is_file() or not digest_matches(sha, hash_file(f).sha256):
                continue
        out.add(path)
    return out


def _lock_pin(lock_path: Path, explicit: bool, model_id: str | None, commit: str | None) -> Any:
    """The pin of ``model_id`` (at ``commit`` when known) from the lockfile, or ``None``."""
    if not lock_path.is_file():
        if explicit:
            raise UsageError(f"lockfile {lock_path} does not exist", hint="pass the right --lock")
        return None
    if model_id is None:
        return None
    from qwen_fetch.store.lockio import read_lock

    pins = read_lock(lock_path).pins(model_id)
    for pin in pins:
        if commit is None or pin.commit == commit:
            return pin
    return None


def _fmt_bytes(n: int | None) -> str:
    return "-" if n is None else format_bytes(n)


def print_report(d: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title="smoke-load", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    rows = [
        ("model", d["model_dir"]),
        ("class", f"{d['model_class']} ({d['auto_class']})"),
        ("device", f"{d['device']}: {d['device_name']}"),
        ("dtype", d["dtype"] + (f"  ({d['dtype_note']})" if d.get("dtype_note") else "")),
        ("parameters", f"{d['parameters'] / 1e9:.2f} B" if d["parameters"] >= 1e8 else f"{d['parameters']:,}"),
        ("weights", _fmt_bytes(d["weight_bytes"])),
        ("load", f"{d['load_seconds']:.2f} s"
                 + (f"  ({format_rate(d['weight_bytes'] / d['load_seconds'])})" if d["load_seconds"] > 0 else "")),
        ("inputs", f"{d['inputs']} via {d['processor']}, {d['prompt_tokens']} prompt tokens"),
        ("generate", f"{d['new_tokens']} tokens in {d['generate_seconds']:.2f} s ({d['tokens_per_second']:.1f} tok/s)"),
        ("peak GPU memory", _fmt_bytes(d["peak_gpu_memory_bytes"])),
        # repr: random test weights decode to control characters that would garble the terminal
        ("output", repr(d["generated_text"])[:200]),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    con = console()
    con.print(t)
    con.print(styled("smoke-load ok", "green"))


def do_smoke(target: str, *, cache_dir: Path | None, revision: str | None, lock: Path | None, device: str,
             dtype: str, trust_remote_code: bool, max_new_tokens: int, quiet_libs: bool) -> dict[str, Any]:
    from qwen_fetch.core.lockfile import DEFAULT_LOCK_NAME
    from qwen_fetch.smoke.check import run_smoke

    # Everything is local: make sure no library reaches for a hub behind our back.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    lock_path = lock or Path(DEFAULT_LOCK_NAME)
    from qwen_fetch.ops.verify_select import looks_like_path

    model_id = None if looks_like_path(target) else target
    current = _lock_pin(lock_path, lock is not None, model_id, None) if model_id and not revision else None
    where = resolve_target(target, cache_dir=cache_dir, revision=revision,
                           lock_commit=current.commit if current else None)
    pinned: set[str] | None = None
    if trust_remote_code:
        pin = _lock_pin(lock_path, lock is not None, where.model_id, where.commit)
        if pin is not None:
            pinned = pinned_code_paths(where.folder, {f.path: f.sha256 for f in pin.files})
    if quiet_libs:
        # Read by transformers / huggingface_hub at import time, which has not happened yet.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    report = run_smoke(where.folder, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                       pinned_paths=pinned, max_new_tokens=max_new_tokens)
    out = report.to_dict()
    out.update(model_id=where.model_id, commit=where.commit)
    return out


def register(app: typer.Typer) -> None:
    @app.command("smoke", epilog=EXIT_CODE_HELP)
    def smoke(
        target: Annotated[str, typer.Argument(metavar="MODEL_ID|PATH", help="A cached model id, or a model folder.")],
        cache_dir: CacheDirOpt = None,
        revision: Annotated[str | None, typer.Option("--revision", help="Branch, tag or commit in the cache (default main).")] = None,
        lock: Annotated[Path | None, typer.Option("--lock", help="Lockfile whose pins allow remote code (default ./qwen-fetch.lock).")] = None,
        device: Annotated[str, typer.Option("--device", help="auto (GPU if present), cuda, cuda:N or cpu.")] = "auto",
        dtype: Annotated[str, typer.Option("--dtype", help="bfloat16 (default), float16, float32 or auto (the checkpoint's).")] = "bfloat16",
        trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Allow the repo's own *.py code, only if every code file is pinned in the lock.")] = False,
        max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, max=4096, help="Tokens to generate.")] = 8,
        json_out: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        """Load a model with transformers (safetensors only) and generate a few tokens.

        Vision-language models get a synthetic image and a prompt through their processor.
        Reports load time, peak GPU memory, tokens/s and the output; exit 5 if it fails.
        """
        def body() -> None:
            d = do_smoke(target, cache_dir=cache_dir, revision=revision, lock=lock, device=device, dtype=dtype,
                         trust_remote_code=trust_remote_code, max_new_tokens=max_new_tokens,
                         quiet_libs=not debug)
            if json_out:
                emit_json({"ok": True, **d})
            else:
                print_report(d)

        run_command(body, json_mode=json_out, debug=debug)
