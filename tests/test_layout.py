"""Where modules may reach, beside tests/test_layers.py: command modules stand alone, test support stays out."""

from __future__ import annotations

import ast
from pathlib import Path

import qwen_fetch

PKG = Path(qwen_fetch.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def test_command_modules_do_not_import_each_other() -> None:
    # Shared options live in cli/common.py and shared logic in ops/: one command module
    # importing another would tie their behaviour together without saying so.
    commands = sorted((PKG / "cli").glob("*_cmd.py"))
    assert len(commands) >= 10
    names = {f"qwen_fetch.cli.{p.stem}" for p in commands}
    offenders = {p.name: sorted(imported_modules(p) & (names - {f"qwen_fetch.cli.{p.stem}"})) for p in commands}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_each_command_is_registered_by_its_own_module() -> None:
    import typer

    from qwen_fetch.cli import lock_cmd, pull_cmd

    for mod, expected in ((pull_cmd, ["pull"]), (lock_cmd, ["lock"])):
        app = typer.Typer()
        mod.register(app)
        assert [c.name or c.callback.__name__ for c in app.registered_commands] == expected


def test_the_package_does_not_import_test_support() -> None:
    # Test hubs and fault kits live in tests/support/, outside the wheel: a module of the
    # package that imported them would work from a checkout and break once installed.
    offenders = {}
    for path in sorted(PKG.rglob("*.py")):
        bad = sorted(m for m in imported_modules(path) if m.split(".")[0] == "tests" or m.startswith("tests.support"))
        if bad:
            offenders[path.relative_to(PKG).as_posix()] = bad
    assert offenders == {}
    assert not (PKG / "testing").exists()
