"""The ``qwen-fetch`` command line.  Each command lives in its own module;
heavy modules (httpx, torch, transformers) are imported inside the commands so
that ``qwen-fetch --help`` stays instant."""

from __future__ import annotations

import typer

from qwen_fetch import __version__
from qwen_fetch.cli.helpfmt import QFGroup, use_for_every_command
from qwen_fetch.core.errors import EXIT_CODE_HELP

app = typer.Typer(
    name="qwen-fetch",
    help="Fast, resumable, pinned and verified model downloads (Hugging Face, hf-mirror, ModelScope, "
         "private mirrors), laid out in the Hugging Face cache.\n\n" + EXIT_CODE_HELP,
    cls=QFGroup,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qwen-fetch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                        help="Show the version and exit."),
          offline: bool = typer.Option(False, "--offline",
                                       help="Make no network request in any command (as HF_HUB_OFFLINE=1).")) -> None:
    if offline:
        from qwen_fetch.net.offline import set_offline

        set_offline(True)


def _register() -> None:
    from qwen_fetch.cli import (
        demo_cmd,
        gc_cmd,
        lock_cmd,
        mirrors_cmd,
        path_cmd,
        pull_cmd,
        serve_cmd,
        smoke_cmd,
        sync_cmd,
        verify_cmd,
    )

    for mod in (pull_cmd, lock_cmd, path_cmd, verify_cmd, gc_cmd, mirrors_cmd, smoke_cmd, serve_cmd, sync_cmd,
                demo_cmd):
        mod.register(app)
    use_for_every_command(app)


_register()


def main() -> None:
    # One name however it is started (`python -m qwen_fetch` too): usage lines and the
    # completion variable (_QWEN_FETCH_COMPLETE) derive from it.
    app(prog_name="qwen-fetch")
