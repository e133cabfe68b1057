"""The layers ARCHITECTURE.md describes, checked on the source tree itself.

A rule that is only written down drifts; these read every module's syntax tree, so a
change that breaks a layer fails here with the module and line that broke it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "qwen_fetch"
CORE = sorted((PKG / "core").glob("*.py"))

# Modules that reach the network, the terminal, a GPU or the disk: the adapters' business, never core's.
IO_MODULES = {"httpx", "httpcore", "rich", "typer", "torch", "transformers", "filelock", "socket", "ssl",
              "subprocess", "shutil", "mmap", "tempfile", "glob", "http", "urllib.request", "xxhash", "boto3",
              "botocore", "truststore", "io"}
# Calls that touch the disk, whether on os or on a Path.
IO_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "exists", "is_file", "is_dir",
            "stat", "lstat", "iterdir", "glob", "rglob", "mkdir", "unlink", "rmdir", "rename", "replace",
            "readlink", "symlink_to", "listdir", "scandir", "walk", "makedirs", "remove", "resolve", "fsync",
            "pread", "pwrite", "touch", "chmod", "lexists", "getsize", "isfile", "isdir", "islink"}
ALLOWED_OS = {"environ", "fspath", "sep", "cpu_count"}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module == "qwen_fetch":
                out += [(node.lineno, f"qwen_fetch.{a.name}") for a in node.names]
    return out


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_imports_no_io_and_nothing_outside_core(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for line, name in _imports(tree):
        top = name.split(".")[0]
        if name.startswith("qwen_fetch.") and not name.startswith("qwen_fetch.core"):
            bad.append(f"{path.name}:{line}: imports {name} (core may import only core)")
        elif top in IO_MODULES or name in IO_MODULES or (top == "os" and name != "os"):
            bad.append(f"{path.name}:{line}: imports {name} (I/O belongs in an adapter)")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            if isinstance(fn, ast.Name) and fn.id == "open":
                bad.append(f"{path.name}:{node.lineno}: calls open()")
            elif isinstance(fn, ast.Attribute) and fn.attr in IO_CALLS and not (
                    isinstance(fn.value, ast.Name) and (fn.value.id in {"re", "str", "self"}
                                                        or "resolver" in fn.value.id.lower())):
                # str.replace, re's and YAML's resolver share names with file operations; a path's are the concern
                if fn.attr == "replace" and not (isinstance(fn.value, ast.Name) and fn.value.id == "os"):
                    continue
                bad.append(f"{path.name}:{node.lineno}: calls .{fn.attr}() (disk I/O)")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                and node.attr not in ALLOWED_OS:
            bad.append(f"{path.name}:{node.lineno}: uses os.{node.attr}")
    assert bad == []


def test_core_imports_without_the_heavy_dependencies() -> None:
    names = [_module(p) for p in CORE]
    code = ("import sys\n" + "".join(f"import {n}\n" for n in names) +
            "heavy = sorted(m for m in ('httpx', 'rich', 'typer', 'torch', 'filelock', 'xxhash') if m in sys.modules)\n"
            "outside = sorted(m for m in sys.modules if m.startswith('qwen_fetch.') and "
            "not m.startswith('qwen_fetch.core'))\n"
            "assert heavy == [] and outside == [], (heavy, outside)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nothing_below_the_cli_imports_the_cli() -> None:
    """Errors and progress flow up through protocols in core; the rich and Typer edge stays on top."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.parts[0] in ("cli", "__main__.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, name in _imports(tree):
            if name.startswith("qwen_fetch.cli"):
                # the API draws the same progress bars as the CLI when asked to: a lazy import, on request only
                if str(rel) == "api.py" and name == "qwen_fetch.cli.progress":
                    continue
                bad.append(f"{rel}:{line}: imports {name}")
    assert bad == []
