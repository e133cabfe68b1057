"""One look for every command's ``--help``, whatever Typer version renders it.

Typer shows a type next to every parameter (``<bool>`` on flags, ``<list[Path]>``),
wraps required arguments in braces (``{model_id}``) and takes argument names
verbatim.  Every command is built with :class:`QFCommand`, which gives options
click-style upper-case metavars (``--lock FILE``), flags none, arguments
``MODEL_ID`` / ``[MODEL_ID|PATH]`` on the usage line, and the exit-code epilog.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from qwen_fetch.core.errors import EXIT_CODE_HELP

# What each option's value is, by name: one word per kind of value, the same in every command.
METAVARS = {
    "--cache-dir": "DIR", "--local-dir": "DIR", "--workdir": "DIR",
    "--config": "FILE", "--lock": "FILE",
    "--revision": "REV", "--source": "NAME", "--model": "MODEL_ID",
    "--include": "GLOB", "--exclude": "GLOB",
    "--connections": "N", "--workers": "N", "--keep-last": "N", "--max-new-tokens": "N",
    "--smoke": "MODE", "--device": "DEVICE", "--dtype": "DTYPE",
    "--older-than": "AGE", "--incomplete-older-than": "AGE",
    "--to": "DEST", "--s3-endpoint-url": "URL", "--timeout": "SECONDS",
    "--host": "HOST", "--port": "PORT",
}


def _is_flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False) or getattr(param, "count", False))


def _no_type(ctx: Any = None) -> None:
    return None


def tidy_param(param: Any) -> None:
    """Give ``param`` the metavar the help should show (flags: none)."""
    if param.param_type_name == "argument":
        if param.metavar is None:
            param.metavar = (param.name or "ARG").upper()
        # The name already says what it is; a type column (``<str>``) would only repeat it.
        param.display_type_rich = _no_type
        return
    if _is_flag(param):
        param.metavar = ""
        return
    if param.metavar is None:
        long = next((o for o in param.opts if o.startswith("--")), "")
        param.metavar = METAVARS.get(long, "VALUE")


class _Tidy:
    """Tidies every parameter as the help is rendered: Typer adds some (completion options) late."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            tidy_param(param)
        return params


class QFCommand(_Tidy, TyperCommand):
    """A Typer command whose help reads like every other qwen-fetch command's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not kwargs.get("epilog"):
            kwargs["epilog"] = EXIT_CODE_HELP
        super().__init__(*args, **kwargs)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """``[OPTIONS] MODEL_ID`` / ``[OPTIONS] [MODEL_ID|PATH]``, as click and ``hf`` print them."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                continue
            name = param.metavar or (param.name or "ARG").upper()
            if param.nargs != 1:
                name += "..."
            pieces.append(name if param.required else f"[{name}]")
        return pieces


class QFGroup(_Tidy, TyperGroup):
    """The top-level ``qwen-fetch`` group: its own options (``--version``, completion) tidied the same way."""


def use_for_every_command(app: typer.Typer) -> None:
    """Build every registered command with :class:`QFCommand` (commands added later included)."""
    for info in app.registered_commands:
        # Typer fills in its own class where a command named none.
        if info.cls is None or info.cls is TyperCommand:
            info.cls = QFCommand
    for group in app.registered_groups:
        if group.typer_instance is not None:
            use_for_every_command(group.typer_instance)
