"""`qwen-fetch serve`: expose the local cache as a read-only HF-compatible endpoint."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from qwen_fetch.cli.common import CacheDirOpt, DebugOpt, console, run_command, styled
from qwen_fetch.core.errors import EXIT_CODE_HELP, UsageError


def start(cache_dir: Path | None, host: str, port: int, lock_path: Path | None, access_log: bool) -> None:
    from qwen_fetch.serve.server import ServeServer
    from qwen_fetch.sources.config import default_cache_dir
    from qwen_fetch.store.lockio import read_lock

    cache = Path(os.path.abspath(cache_dir or default_cache_dir()))
    if not cache.is_dir():
        raise UsageError(f"cache {cache} does not exist", hint="pass --cache-dir, or pull a model first")
    lock = None
    if lock_path is not None:
        if not lock_path.is_file():
            raise UsageError(f"lockfile {lock_path} does not exist", hint="pass the lockfile your pulls wrote")
        lock = read_lock(lock_path)
    err = console(stderr=True)
    try:
        server = ServeServer(cache, lock, host=host, port=port,
                             access_log=(lambda line: err.print(line, markup=False)) if access_log else None)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}", hint="pick another --port") from None
    if lock is None:
        repos = server.catalog.repos()
        err.print(f"serving every snapshot of {len(repos)} repo(s) in {cache} (no --lock: blob names are trusted)",
                  markup=False)
    else:
        n = sum(len(pins) for _, pins in lock.models)
        err.print(f"verifying {n} pinned revision(s) from {lock_path} against {cache} (re-hashing every file) ...",
                  markup=False)
        results = server.catalog.verify_all()
        ok = sum(1 for *_, why in results if why == "verified")
        for mid, pin, why in results:
            mark = styled("verified", "green") if why == "verified" else styled("refused", "bold red")
            err.print(mark, f"{mid}@{pin.revision} ({pin.commit[:12]})" + ("" if why == "verified" else f": {why}"))
        err.print(f"serving {ok} of {len(results)} pinned revision(s) from {cache}", markup=False)
    # One machine-readable line on stdout (scripts and tests wait for it; --port 0 picks a free port).
    sys.stdout.write(f"listening on {server.url}\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


def register(app: typer.Typer) -> None:
    @app.command("serve", epilog=EXIT_CODE_HELP)
    def serve(
        cache_dir: CacheDirOpt = None,
        host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="TCP port (0: pick a free one; the URL is printed).")] = 8080,
        lock: Annotated[Path | None, typer.Option("--lock", help="Serve only revisions pinned here, after re-hashing each snapshot against its pin.")] = None,
        access_log: Annotated[bool, typer.Option("--access-log", help="One line per request on stderr.")] = False,
        debug: DebugOpt = False,
    ) -> None:
        """Serve the local Hugging Face cache as a read-only HF-compatible endpoint.

        Point stock clients at it: HF_ENDPOINT=http://HOST:PORT hf download ORG/NAME
        (also huggingface_hub, transformers, and qwen-fetch `kind: hf` sources).
        With --lock, only pinned and verified snapshots are served; anything else is a 404.
        """
        run_command(lambda: start(cache_dir, host, port, lock, access_log), json_mode=False, debug=debug)
