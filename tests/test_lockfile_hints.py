"""A malformed lockfile's hint works when followed, word for word."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from qwen_fetch.store.lockio import read_lock
from tests.support.hub import HubServer
from tests.support.repo import RepoStore

MODEL = "Org/tiny"
OTHER = "Org/other"


@pytest.fixture
def locked(cli, store: RepoStore, hub: HubServer, mirrors: Path) -> str:  # type: ignore[no-untyped-def]
    """A lockfile pinning two models, written by qwen-fetch itself; returns its text."""
    store.add_commit(MODEL, {"config.json": b'{"a": 1}\n', "w.safetensors": b"A" * 1462})
    store.add_commit(OTHER, {"config.json": b'{"b": 1}\n'})
    for model in (OTHER, MODEL):
        r = cli("lock", model, "--config", str(mirrors))
        assert r.exit_code == 0, r.stderr
    return Path("qwen-fetch.lock").read_text()


def _hint(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("hint: ")]
    assert len(lines) == 1, stderr
    return lines[0][len("hint: "):]


@pytest.mark.parametrize("bad", ["size: 24:22", "size: 0x5b6", "lfs: yes"])
def test_delete_the_named_lines_and_pin_afresh(cli, locked: str, bad: str) -> None:  # type: ignore[no-untyped-def]
    lock = Path("qwen-fetch.lock")
    key = bad.split(":")[0]
    good = "size: 1462" if key == "size" else "lfs: true"
    assert good in locked
    lock.write_text(locked.replace(good, bad, 1))
    r = cli("pull", MODEL, "--frozen", "--no-smoke", "--cache-dir", "cache")
    assert r.exit_code == 2, r.stderr
    line = locked[:locked.index(good)].count("\n") + 1
    assert f"qwen-fetch.lock:{line}: " in r.stderr
    hint = _hint(r.stderr)
    assert "--update" not in hint  # `lock --update` reads the same file and stops at the same line
    m = re.search(r"delete lines (\d+)-(\d+) \(the entry of Org/tiny\) and pin it afresh: (.+)$", hint)
    assert m, hint
    first, last, command = int(m.group(1)), int(m.group(2)), shlex.split(m.group(3))
    kept = [ln for i, ln in enumerate(lock.read_text().splitlines(keepends=True), 1) if not first <= i <= last]
    lock.write_text("".join(kept))
    assert command[:3] == ["qwen-fetch", "lock", MODEL]
    r = cli(*command[1:])
    assert r.exit_code == 0, r.stderr
    assert lock.read_text() == locked  # the same pin again, and the other model's entry untouched
    assert cli("pull", MODEL, "--frozen", "--no-smoke", "--cache-dir", "cache").exit_code == 0


@pytest.mark.parametrize("bad", ["size: 24:22", "lfs: yes"])
def test_fix_the_value_as_the_hint_describes(cli, locked: str, bad: str) -> None:  # type: ignore[no-untyped-def]
    lock = Path("qwen-fetch.lock")
    good = "size: 1462" if bad.startswith("size") else "lfs: true"
    lock.write_text(locked.replace(good, bad, 1))
    r = cli("pull", MODEL, "--frozen", "--no-smoke", "--cache-dir", "cache")
    hint = _hint(r.stderr)
    assert ("plain decimal digits" in hint) if bad.startswith("size") else ("write lfs: true or lfs: false" in hint)
    lock.write_text(locked)
    assert cli("pull", MODEL, "--frozen", "--no-smoke", "--cache-dir", "cache").exit_code == 0


@pytest.mark.parametrize("version", ["7", "true", "'1'"])
def test_version_hint(cli, locked: str, version: str) -> None:  # type: ignore[no-untyped-def]
    lock = Path("qwen-fetch.lock")
    lock.write_text(locked.replace("version: 1", f"version: {version}", 1))
    r = cli("pull", MODEL, "--frozen", "--no-smoke", "--cache-dir", "cache")
    assert r.exit_code == 2 and "unsupported lockfile version" in r.stderr, r.stderr
    hint = _hint(r.stderr)
    assert "--update" not in hint and "write version: 1" in hint
    lock.write_text(lock.read_text().replace(f"version: {version}", "version: 1", 1))
    assert read_lock(lock).current(MODEL) is not None
    assert cli("pull", MODEL, "--frozen", "--no-smoke", "--cache-dir", "cache").exit_code == 0
