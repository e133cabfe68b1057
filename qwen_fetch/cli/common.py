"""Shared CLI plumbing: options, output, and turning errors into exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from qwen_fetch.errors import QFError

T = TypeVar("T")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="mirrors.yaml to use (else $QWEN_FETCH_CONFIG, ./mirrors.yaml, ~/.config/qwen-fetch/mirrors.yaml, built-in).")]
CacheDirOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Hugging Face hub cache (default: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub).")]
LockOpt = Annotated[Path, typer.Option("--lock", help="Lockfile (pins).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout; no progress bars.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def fail(err: QFError, *, json_mode: bool) -> None:
    """Print a user-facing error as one line plus a hint, then exit with its code."""
    if json_mode:
        # One JSON document and nothing else: the error's message and hint are in it.
        emit_json({"ok": False, **err.to_dict()})
        raise typer.Exit(int(err.exit_code))
    con = console(stderr=True)
    con.print(f"[bold red]error[/]: {err.message}", markup=True, highlight=False)
    for line in err.context:
        con.print(f"  {line}", markup=False)
    if err.hint:
        con.print(f"[dim]hint[/]: {err.hint}", markup=True)
    raise typer.Exit(int(err.exit_code))


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


def _debug_exit(exc: BaseException, code: int) -> None:
    """``--debug``: the traceback, with URL credentials and secret values masked, then the error's exit code."""
    import traceback

    from qwen_fetch.redact import scrub

    sys.stderr.write(scrub("".join(traceback.format_exception(exc))))
    sys.stderr.flush()
    raise typer.Exit(code)


def run_command(fn: Callable[[], T], *, json_mode: bool, debug: bool) -> T:
    """Run a command body, mapping every failure to a documented exit code."""
    debug = debug or os.environ.get("QWEN_FETCH_DEBUG") == "1"
    _terminate_like_ctrl_c()
    try:
        return fn()
    except typer.Exit:
        raise
    except QFError as err:
        if debug:
            _debug_exit(err, int(err.exit_code))
        fail(err, json_mode=json_mode)
    except KeyboardInterrupt:
        from qwen_fetch.errors import Interrupted

        fail(Interrupted("interrupted", hint="partial downloads are kept; the same command resumes them"),
             json_mode=json_mode)
    except OSError as exc:
        if debug:
            _debug_exit(exc, 1)
        import errno

        from qwen_fetch.errors import DiskFullError, SourceError

        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fail(DiskFullError(f"disk full while writing {exc.filename or 'a file'}",
                               hint="free space (qwen-fetch gc) and rerun: partial downloads resume"), json_mode=json_mode)
        fail(SourceError(f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc),
                         hint="check permissions and free space", reference="os-error"), json_mode=json_mode)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            _debug_exit(exc, 1)
        err = QFError(f"unexpected {type(exc).__name__}: {exc}", hint="rerun with --debug and report the traceback")
        fail(err, json_mode=json_mode)
    raise AssertionError("unreachable")
