"""--json prints one JSON document on stdout and nothing at all on stderr, on success and on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.fixtures import QWEN3_VL_8B


def _quiet(r) -> dict:  # type: ignore[no-untyped-def]
    assert r.stderr == "", r.stderr
    return json.loads(r.stdout)  # exactly one document: json.loads refuses trailing text


def test_pull_lock_verify_gc_json_are_quiet(cli, sharded_repo, hub, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    common = ["--config", str(mirrors), "--cache-dir", "cache"]
    # smoke auto: on a machine without a GPU the smoke-load is skipped, and says so only in the JSON.
    doc = _quiet(cli("pull", QWEN3_VL_8B, *common, "--json"))
    assert doc["ok"] and doc["smoke"] is not None
    assert _quiet(cli("pull", QWEN3_VL_8B, *common, "--json", "--frozen"))["downloaded_files"] == 0
    assert _quiet(cli("lock", QWEN3_VL_8B, "--config", str(mirrors), "--json"))["ok"]
    assert _quiet(cli("verify", QWEN3_VL_8B, "--cache-dir", "cache", "--json"))["ok"]
    assert _quiet(cli("verify", "--all", "--cache-dir", "cache", "--json"))["ok"]
    assert _quiet(cli("gc", "--cache-dir", "cache", "--dry-run", "--json"))["ok"]
    assert _quiet(cli("mirrors", "--config", str(mirrors), "--json"))["ok"]
    assert _quiet(cli("sync", QWEN3_VL_8B, "--to", "private-store", "--cache-dir", "cache", "--json"))
    assert _quiet(cli("sync", QWEN3_VL_8B, "--to", "private-store", "--cache-dir", "cache", "--dry-run", "--json"))


@pytest.mark.parametrize("args, code", [
    (["pull", "Nope/missing", "--no-smoke"], 4),
    (["pull", QWEN3_VL_8B, "--frozen", "--update"], 2),
    (["lock", "bad id!"], 2),
    (["verify", QWEN3_VL_8B], 2),
    (["gc", "--cache-dir", "no-such-cache", "--no-lock"], 2),
    (["smoke", "no/such-model"], 3),
    (["sync", QWEN3_VL_8B, "--to", "store-out"], 3),
])
def test_failures_under_json_are_one_document(cli, hub, mirrors: Path, args: list[str], code: int) -> None:  # type: ignore[no-untyped-def]
    r = cli(*args, "--config", str(mirrors), "--json") if args[0] in ("pull", "lock", "sync") else cli(*args, "--json")
    assert r.exit_code == code, (r.stdout, r.stderr)
    doc = _quiet(r)
    assert doc["ok"] is False and doc["exit_code"] == code and doc["message"]


def test_pull_json_with_a_smoke_load_is_quiet(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """transformers' own "Loading weights" bar went to stderr under --json."""
    pytest.importorskip("transformers")
    from qwen_fetch.cli.demo_cmd import DEMO_MODEL, bundled_model_dir
    from tests.conftest import write_mirrors
    from tests.support.hub import HubServer
    from tests.support.repo import RepoStore

    src = bundled_model_dir()
    store = RepoStore(tmp_path / "tiny-store")
    store.add_commit(DEMO_MODEL, {p.relative_to(src).as_posix(): p for p in src.rglob("*") if p.is_file()}, link=False)
    with HubServer(store) as hub:
        mirrors = write_mirrors(tmp_path / "tiny.yaml", ("tiny", hub.url))
        r = cli("pull", DEMO_MODEL, "--config", str(mirrors), "--cache-dir", "cache", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    doc = _quiet(r)
    assert doc["smoke"]["new_tokens"] > 0
    r = cli("smoke", DEMO_MODEL, "--cache-dir", "cache", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    assert _quiet(r)["new_tokens"] > 0
