"""The README's promises that can drift: its two set-up commands are what CI runs, and its links resolve."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def _setup_commands() -> list[str]:
    """The fenced bash blocks the README starts with, before any prose."""
    head = README.split("\n\n", 1)[1]  # after the title
    blocks = re.findall(r"```bash\n(.*?)\n```", head.split("\n\n", 1)[0], flags=re.S)
    return blocks


def _ci_lines() -> list[str]:
    return [line.strip() for line in CI.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_starts_with_the_two_setup_commands() -> None:
    assert _setup_commands() == ["pip install . && qwen-fetch demo",
                                 "pip install 'torch==2.13.0' -e '.[smoke,test,s3]' && python -m pytest -q tests"]


def test_ci_runs_the_readme_test_command_and_the_demo() -> None:
    install, test = (part.strip() for part in _setup_commands()[1].split("&&"))
    lines = _ci_lines()
    assert test in lines, f".ci/run must run {test!r} as README command 2 does"
    wanted = shlex.split(install)[2:]  # what README's `pip install` installs
    assert any(line.split()[0:1] in (["pip"], ["quiet"]) and "install" in line
               and all(arg in shlex.split(line) for arg in wanted) for line in lines), \
        f".ci/run must pip-install {wanted} as README command 2 does"
    assert "qwen-fetch demo" in lines, ".ci/run must end with README command 1's demo"
    assert lines.index(test) < lines.index("qwen-fetch demo")


def test_every_relative_link_in_the_readme_resolves() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert targets and not missing, f"README links to missing files: {missing}"


def test_readme_links_every_recipe() -> None:
    for name in sorted(p.name for p in (ROOT / "docs" / "recipes").iterdir()):
        assert f"docs/recipes/{name}" in README, f"README does not link docs/recipes/{name}"
