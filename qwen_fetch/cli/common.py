"""Shared CLI plumbing: options, output, and turning errors into exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from qwen_fetch.core.errors import QFError, Ref

T = TypeVar("T")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="mirrors.yaml to use (else $QWEN_FETCH_CONFIG, ./mirrors.yaml, ~/.config/qwen-fetch/mirrors.yaml, built-in).")]
CacheDirOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Hugging Face hub cache (default: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout; no progress bars.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Also print the traceback of a failure (secrets masked; the exit code is unchanged).")]
RevisionOpt = Annotated[str | None, typer.Option("--revision", "-r", help="Branch, tag or commit (default: the pinned commit, else the source's default branch: main, or master on ModelScope).")]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Source name from mirrors.yaml, or 'auto' (default: by priority, with fallback).")]
IncludeOpt = Annotated[list[str] | None, typer.Option("--include", help="Glob of files to fetch (repeatable).")]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", help="Glob of files to skip (repeatable).")]
LockFileOpt = Annotated[Path, typer.Option("--lock", help="Lockfile with the pins.")]
UpdateOpt = Annotated[bool, typer.Option("--update", help="Re-resolve the revision and move the pin (the old one is kept for rollback).")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Make no network request (as HF_HUB_OFFLINE=1 / QWEN_FETCH_OFFLINE=1); what needs one fails with exit 4.")]


def go_offline(flag: bool) -> None:
    """Honour a command's ``--offline`` (the global flag and the environment are read where connections are made)."""
    if flag:
        from qwen_fetch.net.offline import set_offline

        set_offline(True)


def emit_json(obj: Any) -> None:
    from qwen_fetch.core.redact import redact_obj

    sys.stdout.write(json.dumps(redact_obj(obj), indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def console(stderr: bool = False) -> Any:
    """The console every command prints through.

    Strings are shown as they are: rich markup (``[bold]``) and emoji codes (``:smile:``) are
    never read from them, since a path, a model id, a hub's message or a package name such as
    ``qwen-fetch[smoke]`` may hold either.  Style comes only from :func:`styled` pieces.
    """
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False)


def styled(text: str, style: str) -> Any:
    """A piece of text in a style, for ``console().print(styled("✓", "green"), "rest", sep=" ")``."""
    from rich.text import Text

    return Text(text, style=style)


def fail(err: QFError, *, json_mode: bool) -> None:
    """Print a user-facing error as one line plus a hint (secrets masked), then exit with its code."""
    from qwen_fetch.core.redact import redact

    if json_mode:
        # One JSON document and nothing else: the error's message and hint are in it.
        emit_json({"ok": False, **err.to_dict()})
        raise typer.Exit(int(err.exit_code))
    con = console(stderr=True)
    con.print(styled("error", "bold red"), f": {redact(err.message)}", sep="")
    for line in err.context:
        con.print(f"  {redact(line)}")
    if err.hint:
        con.print(styled("hint", "dim"), f": {redact(err.hint)}", sep="")
    raise typer.Exit(int(err.exit_code))


def _print_traceback() -> None:
    """``--debug``: the traceback of the exception being handled, on stderr, secrets masked."""
    import traceback

    from qwen_fetch.core.redact import redact

    sys.stderr.write(redact(traceback.format_exc()))
    sys.stderr.flush()


def _terminate_like_ctrl_c() -> None:
    """SIGTERM (``docker stop``, a cancelled CI job, ``kill``) stops a command the way Ctrl-C does.

    Python's default for SIGTERM is to die on the spot: no resume state saved, no exit 130, no message.
    Only replaced where nobody installed a handler of their own, and only from the main thread.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_command(fn: Callable[[], T], *, json_mode: bool, debug: bool) -> T:
    """Run a command body, mapping every failure to a documented exit code."""
    # --debug adds the traceback and nothing else: the exit code and the error line stay what they are.
    debug = debug or os.environ.get("QWEN_FETCH_DEBUG") == "1"
    _terminate_like_ctrl_c()
    try:
        return fn()
    except typer.Exit:
        raise
    except QFError as err:
        if debug:
            _print_traceback()
        fail(err, json_mode=json_mode)
    except KeyboardInterrupt:
        from qwen_fetch.core.errors import Interrupted

        if debug:
            _print_traceback()
        fail(Interrupted("interrupted", hint="partial downloads are kept; the same command resumes them"),
             json_mode=json_mode)
    except OSError as exc:
        if debug:
            _print_traceback()
        import errno

        from qwen_fetch.core.errors import DiskFullError, SourceError

        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fail(DiskFullError(f"disk full while writing {exc.filename or 'a file'}",
                               hint="free space (qwen-fetch gc) and rerun: partial downloads resume"), json_mode=json_mode)
        fail(SourceError(f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc),
                         hint="check permissions and free space", reference=Ref.OS_ERROR), json_mode=json_mode)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            _print_traceback()
        err = QFError(f"unexpected {type(exc).__name__}: {exc}", hint="rerun with --debug and report the traceback")
        fail(err, json_mode=json_mode)
    raise AssertionError("unreachable")
