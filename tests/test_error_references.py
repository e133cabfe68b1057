"""Error references come from one table (core/errors.py), and the README documents exactly that table."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import qwen_fetch
from qwen_fetch.core.errors import EXIT_CODE_HELP, REFERENCES, ExitCode, QFError, Ref, Reference

PKG = Path(qwen_fetch.__file__).parent
README = PKG.parent / "README.md"


def _error_classes() -> dict[str, type[QFError]]:
    """Every QFError subclass the package defines, by name (the modules that define them are imported)."""
    for mod in pkgutil.walk_packages([str(PKG)], "qwen_fetch."):
        if mod.name not in ("qwen_fetch.__main__", "qwen_fetch.smoke.load"):  # runs the CLI; imports torch
            importlib.import_module(mod.name)
    out: dict[str, type[QFError]] = {}
    todo: list[type[QFError]] = [QFError]
    while todo:
        cls = todo.pop()
        assert cls.__name__ not in out or out[cls.__name__] is cls, f"two error classes named {cls.__name__}"
        out[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return out


def _raise_sites() -> list[tuple[str, str, ast.expr]]:
    """(where, error class name, the ``reference=`` expression) for every call that passes a reference."""
    sites = []
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "reference":
                        func = node.func
                        name = func.id if isinstance(func, ast.Name) else ast.unparse(func)
                        sites.append((f"{path.relative_to(PKG)}:{node.lineno}", name, kw.value))
    return sites


def test_the_table_has_one_entry_per_stable_kebab_case_name() -> None:
    names = [r.name for r in REFERENCES]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z]+(-[a-z0-9]+)*", n) for n in names), names
    assert all(r.meaning and "\n" not in r.meaning and "|" not in r.meaning for r in REFERENCES)
    # The constant's name spells the reference, so a raise site reads as what it reports.
    assert {k: v.name for k, v in vars(Ref).items() if isinstance(v, Reference)} == {
        r.name.upper().replace("-", "_"): r.name for r in REFERENCES}


def test_every_raise_site_names_a_table_entry_with_its_classes_exit_code() -> None:
    classes = _error_classes()
    sites = _raise_sites()
    assert len(sites) > 40
    problems = []
    for where, cls_name, expr in sites:
        if isinstance(expr, ast.Attribute) and expr.attr == "ref":
            continue  # re-raising another error's reference (it passed this check where it was raised)
        if not (isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "Ref"):
            problems.append(f"{where}: reference={ast.unparse(expr)} is not a Ref constant")
            continue
        ref = getattr(Ref, expr.attr, None)
        if not isinstance(ref, Reference):
            problems.append(f"{where}: Ref.{expr.attr} is not in the table")
        elif cls_name not in classes:
            problems.append(f"{where}: {cls_name} is not an error class")
        elif classes[cls_name].exit_code != ref.exit_code:
            problems.append(f"{where}: {cls_name} exits {int(classes[cls_name].exit_code)}, "
                            f"{ref.name} says {int(ref.exit_code)}")
    assert problems == []


def test_every_error_class_default_is_a_table_entry_with_its_exit_code() -> None:
    for cls in _error_classes().values():
        assert cls.ref in REFERENCES, cls
        assert cls.ref.exit_code == cls.exit_code, cls


def test_every_table_entry_is_used() -> None:
    used = {cls.ref for cls in _error_classes().values()}
    used |= {getattr(Ref, e.attr) for _w, _c, e in _raise_sites() if isinstance(e, ast.Attribute) and e.attr != "ref"}
    assert sorted(r.name for r in set(REFERENCES) - used) == []


def test_an_error_reports_the_reference_it_was_raised_with() -> None:
    from qwen_fetch.core.errors import IntegrityError, SourceError

    err = SourceError("no", reference=Ref.ACCESS_DENIED)
    assert (err.reference, err.to_dict()["error"], err.to_dict()["exit_code"]) == ("access-denied", "access-denied", 4)
    assert IntegrityError("x").reference == "integrity-error"


def _readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_readme_reference_table_is_the_table() -> None:
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| (\d+) \| (.+) \|$", _readme_section("Exit codes"), re.M)
    assert rows == [(r.name, str(int(r.exit_code)), r.meaning) for r in REFERENCES]


@pytest.mark.parametrize("documented", ["readme", "help"])
def test_exit_code_documentation_lists_every_exit_code(documented: str) -> None:
    if documented == "readme":
        codes = re.findall(r"^\| (\d+) \| ", _readme_section("Exit codes"), re.M)
    else:
        codes = re.findall(r"(?:^|; |: )(\d+) [a-z]", EXIT_CODE_HELP)
    assert sorted(int(c) for c in codes) == sorted(int(c) for c in ExitCode)
