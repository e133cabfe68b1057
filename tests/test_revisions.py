"""Commit ids and revision names: one rule each, checked before any request, a path or a ref."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qwen_fetch.core.errors import IntegrityError
from qwen_fetch.core.manifest import RemoteFile, RepoListing
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.core.revisions import is_commit_id, revision_problem
from qwen_fetch.store.hfcache import RepoCache
from tests.support.hub import HubServer
from tests.support.repo import RepoStore

MODEL = "Org/tiny"
VALID = ["main", "master", "v1.0", "refs/pr/1", "dev/x", "release-2024.01", "a" * 40, "分支", "@x", "a.b", "x@y",
         "feature/a-b_c", "1.0", "true"]
INVALID = ["x/", "/x", "a//b", "a..b", "-x", "a b", ".hidden", "a/.b", "x.lock", "a.lock/b", "@", "a@{1}", "a:b",
           "a*", "a?", "[a]", "a~1", "a^", "x.", "a\\b", "a\x00b", "a\tb", "a\x7fb", ""]


@pytest.mark.parametrize("name", VALID + INVALID)
def test_revision_rule_agrees_with_git(name: str) -> None:
    """git itself is the oracle: a name is ours iff `git check-ref-format` takes it as a branch."""
    if "\x00" in name:
        assert revision_problem(name) is not None  # cannot even be passed to git as an argument
        return
    git = shutil.which("git")
    assert git is not None, "git is needed to check the ref-name rule against"
    ok = subprocess.run([git, "check-ref-format", f"refs/heads/{name}"], capture_output=True).returncode == 0
    # `--branch` also refuses a leading '-' and reads a lone '@' as HEAD
    assert (revision_problem(name) is None) == (ok and not name.startswith("-") and name != "@"), name
    assert (name in VALID) == (revision_problem(name) is None)


@pytest.mark.parametrize("name", ["a\u2028b", "a\u202eb", "a\u200bb", "x" * 256])
def test_revision_rule_refuses_what_would_garble_output_or_a_file_name(name: str) -> None:
    assert revision_problem(name) is not None


@pytest.mark.parametrize("value,ok", [("c" * 40, True), ("d" * 64, True), ("C" * 40, False), ("c" * 39, False),
                                      ("..", False), ("c" * 12, False), ("g" * 40, False), (None, False), (40, False)])
def test_commit_id(value: object, ok: bool) -> None:
    assert is_commit_id(value) is ok


@pytest.mark.parametrize("commit", ["..", "../../x", "abc/def", "C" * 40, ""])
def test_no_source_can_hand_over_a_listing_with_an_unusable_commit(commit: str) -> None:
    with pytest.raises(IntegrityError, match="not a commit id"):
        RepoListing(source="s", repo_id=MODEL, revision="main", commit=commit, files=())


def _lfs(path: str, size: int, sha: str) -> RemoteFile:
    return RemoteFile(path=SafeRelPath(path), size=size, sha256=sha, git_oid=None, lfs=True)


def test_a_listing_that_gives_one_sha256_two_sizes_is_refused() -> None:
    files = (_lfs("a.safetensors", 3, "a" * 64), _lfs("b.safetensors", 4, "a" * 64))
    with pytest.raises(IntegrityError) as ei:
        RepoListing(source="s", repo_id=MODEL, revision="main", commit="c" * 40, files=files)
    assert ei.value.reference == "digest-size-conflict" and ei.value.exit_code == 3
    assert ei.value.context == [f"sha256 {'a' * 64} is listed with two sizes: 3 for 'a.safetensors', "
                                "4 for 'b.safetensors'"]
    # the same content at two paths is fine
    RepoListing(source="s", repo_id=MODEL, revision="main", commit="c" * 40,
                files=(_lfs("a.safetensors", 3, "a" * 64), _lfs("b.safetensors", 3, "a" * 64)))


# ---------------------------------------------------------------------------
# through the CLI, against a loopback hub


@pytest.fixture
def tiny(store: RepoStore) -> dict[str, str]:
    a = store.add_commit(MODEL, {"config.json": b'{"a": 1}\n', "w.safetensors": b"A" * 5000}, revision="a")
    ab = store.add_commit(MODEL, {"config.json": b'{"a": 2}\n', "w.safetensors": b"B" * 5000}, revision="a/b")
    store.set_ref(MODEL, "main", a)
    return {"a": a, "a/b": ab}


def _pull(cli, mirrors: Path, *extra: str):  # type: ignore[no-untyped-def]
    where = () if "--local-dir" in extra else ("--cache-dir", "cache")
    return cli("pull", MODEL, "--config", str(mirrors), *where, "--lock", "qwen-fetch.lock", "--no-smoke", *extra)


@pytest.mark.parametrize("revision", ["x/", "a..b", "-x", "a b", "x.lock", ".x", "a:b"])
def test_bad_revision_is_refused_before_any_request(cli, tiny, hub: HubServer, mirrors: Path, revision: str) -> None:  # type: ignore[no-untyped-def]
    r = _pull(cli, mirrors, f"--revision={revision}")
    assert r.exit_code == 2, r.stderr
    assert "is not a branch, tag or commit" in r.stderr and "git check-ref-format" in r.stderr
    assert hub.log == []  # not one request
    assert not Path("cache").exists() and not Path("qwen-fetch.lock").exists()


def _hint_path(stderr: str) -> Path:
    m = re.search(r"delete (\S+) \(", stderr)
    assert m, stderr
    return Path(m.group(1))


def test_ref_that_is_a_file_where_a_folder_is_needed(cli, tiny, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    """`a` then `a/b`: a clear error before anything is downloaded, and its hint works."""
    repo = RepoCache(Path("cache"), MODEL)
    assert _pull(cli, mirrors, "--revision", "a").exit_code == 0
    hub.reset_stats()
    r = _pull(cli, mirrors, "--revision", "a/b", "--update")
    assert r.exit_code == 2, r.stderr
    assert "ref 'a' is a file where 'a/b' needs a folder" in r.stderr
    assert hub.total_bytes() == 0 and not repo.snapshot_dir(tiny["a/b"]).exists()
    stale = _hint_path(r.stderr)
    assert stale.resolve() == (repo.refs_dir / "a").resolve()
    stale.unlink()  # what the hint says
    r = _pull(cli, mirrors, "--revision", "a/b", "--update")
    assert r.exit_code == 0, r.stderr
    assert repo.read_ref("a/b") == tiny["a/b"] and repo.snapshot_dir(tiny["a/b"]).is_dir()


def test_ref_that_is_a_folder_where_a_file_is_needed(cli, tiny, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    repo = RepoCache(Path("cache"), MODEL)
    assert _pull(cli, mirrors, "--revision", "a/b").exit_code == 0
    hub.reset_stats()
    r = _pull(cli, mirrors, "--revision", "a", "--update")
    assert r.exit_code == 2, r.stderr
    assert "refs/a is a folder ('a/b')" in r.stderr
    assert hub.total_bytes() == 0 and not repo.snapshot_dir(tiny["a"]).exists()
    shutil.rmtree(_hint_path(r.stderr))
    r = _pull(cli, mirrors, "--revision", "a", "--update")
    assert r.exit_code == 0, r.stderr
    assert repo.read_ref("a") == tiny["a"]


def test_local_dir_writes_no_ref_so_has_no_conflict(cli, tiny, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    assert _pull(cli, mirrors, "--revision", "a").exit_code == 0
    r = _pull(cli, mirrors, "--revision", "a/b", "--update", "--local-dir", "plain")
    assert r.exit_code == 0, r.stderr
    assert Path("plain/w.safetensors").read_bytes() == b"B" * 5000


def test_locked_commit_that_is_a_path_is_refused(cli, tiny, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    """`commit: '..'` would link the snapshot straight into models--Org--tiny/ and write `..` into refs/main."""
    assert _pull(cli, mirrors, "--local-dir", "first").exit_code == 0  # writes a pin, leaves the cache empty
    lock = Path("qwen-fetch.lock")
    text = lock.read_text()
    line = text[:text.index(f"commit: {tiny['a']}")].count("\n") + 1
    lock.write_text(text.replace(f"commit: {tiny['a']}", "commit: '..'"))
    hub.reset_stats()
    r = _pull(cli, mirrors, "--frozen")
    assert r.exit_code == 2, r.stderr
    assert f"qwen-fetch.lock:{line}: commit '..' is not a commit id" in r.stderr
    assert hub.log == [] and not Path("cache").exists()


def test_a_ref_holding_a_path_is_not_taken_for_a_commit(tmp_path: Path) -> None:
    repo = RepoCache(tmp_path / "cache", MODEL)
    repo.refs_dir.mkdir(parents=True)
    (repo.refs_dir / "main").write_text("..")
    assert repo.read_ref("main") is None
    (repo.refs_dir / "main").write_text("c" * 40)
    assert repo.read_ref("main") == "c" * 40
    assert repo.read_ref("../../x") is None


def test_mirrors_yaml_revision_follows_the_same_rule(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "m.yaml"
    cfg.write_text("sources:\n  - name: a\n    kind: hf\n    endpoint: http://127.0.0.1:9\n    revision: x/\n")
    r = cli("pull", MODEL, "--config", str(cfg), "--no-smoke")
    assert r.exit_code == 2 and f"{cfg}:5: revision must be a branch or tag name" in r.stderr, r.stderr


def test_bad_revision_under_json_is_one_document(cli, tiny, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    r = _pull(cli, mirrors, "--revision=a..b", "--json")
    assert r.exit_code == 2
    assert json.loads(r.stdout)["error"] == "usage-error"
