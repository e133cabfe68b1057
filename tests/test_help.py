"""Every command's --help reads the same way: usage line, metavars, flags, exit codes."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from qwen_fetch.cli.app import app

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _help(*args: str) -> str:
    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"},
                             prog_name="qwen-fetch")
    assert res.exit_code == 0, res.output
    return res.output


def test_every_command_is_checked() -> None:
    assert {"pull", "lock", "verify", "gc", "demo", "sync", "smoke", "serve", "mirrors"} <= set(COMMANDS)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_is_consistent(cmd: str) -> None:
    text = _help(cmd)
    usage = next(line.strip() for line in text.splitlines() if "Usage:" in line)
    # Arguments upper-case, optional ones in one pair of brackets, no Typer braces.
    assert re.fullmatch(rf"Usage: qwen-fetch {cmd} \[OPTIONS\]( \[?[A-Z_|]+\]?)*", usage), usage
    assert not re.search(r"<(bool|str|int|float|path|Path|list)", text), "a Typer type shown instead of a metavar"
    assert ",--" not in text, "two option names run together"
    assert "Exit codes: 0 success" in text


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_option_names_its_value(cmd: str) -> None:
    """A flag shows no value; every other option an upper-case word (FILE, DIR, N, ...)."""
    command = typer.main.get_command(app).commands[cmd]  # type: ignore[attr-defined]
    for param in command.get_params(command.context_class(command)):  # as the help renders them
        if param.param_type_name != "option" or param.hidden:
            continue
        if param.is_flag:
            assert param.metavar == "", param.opts
        else:
            assert param.metavar and param.metavar.isupper() and param.metavar != "VALUE", param.opts


def test_pull_revision_names_both_default_branches() -> None:
    text = " ".join(_help("pull").replace("│", " ").split())
    assert "main, or master on ModelScope" in text


def test_verify_usage_and_commit_alias() -> None:
    text = _help("verify")
    assert "Usage: qwen-fetch verify [OPTIONS] [MODEL_ID|PATH]" in text
    res = CliRunner().invoke(app, ["verify", "org/name", "--revision", "a", "--commit", "b"])
    assert res.exit_code == 2 and "disagree" in res.output
