"""Fault campaign, hostile listings: a mirror that lies about paths, types, sizes or JSON.

Every case must be refused with a clear error naming the problem (exit 3), and
nothing may be written anywhere under the test's tmp tree except the (empty)
cache skeleton: no blob, no snapshot, no lockfile, no file outside the target.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qwen_fetch.cli.app import app
from tests.support.faultkit import HOSTILE_LISTINGS, new_outside, tree_state
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer, _tree_entries

ESCAPE_ABS = Path("/tmp/qwen-fetch-escape.txt")


def _pull_inproc(mirrors: Path, *extra: str) -> tuple[int, str]:
    where = [] if "--local-dir" in extra else ["--cache-dir", "cache"]  # the two exclude each other
    res = CliRunner().invoke(app, ["pull", QWEN3_VL_8B, "--config", str(mirrors), *where,
                                   "--lock", "qwen-fetch.lock", "--no-smoke", *extra])
    return res.exit_code, res.output


def _assert_nothing_written(tmp_path: Path, before: dict[str, str], target: str) -> None:
    after = tree_state(tmp_path, skip=[tmp_path / "store"])
    assert new_outside(before, after, allowed=[target]) == []
    written = [p for p, kind in after.items() if p.startswith(target + os.sep) and kind != "dir"
               and before.get(p) != kind]
    assert written == [], "the target holds files after a refused listing"
    assert not Path("qwen-fetch.lock").exists()
    assert not ESCAPE_ABS.exists()


@pytest.mark.parametrize("case", sorted(HOSTILE_LISTINGS))
def test_hostile_listing_is_refused_and_writes_nothing(case: str, store, sharded_repo, hub: HubServer, mirrors: Path,
                                                       tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    listing, needle = HOSTILE_LISTINGS[case]
    hub.faults.listing[QWEN3_VL_8B] = listing
    before = tree_state(tmp_path, skip=[tmp_path / "store"])
    code, out = _pull_inproc(mirrors)
    assert code == 3, out
    assert needle in out, out
    assert "Traceback" not in out and "hint" in out
    _assert_nothing_written(tmp_path, before, "cache")
    assert hub.total_bytes() == 0  # refused before any file was fetched


@pytest.mark.parametrize("case", ["dotdot", "absolute", "backslash", "file-and-dir", "nfc-nfd-collision",
                                  "vcs-nested-git", "vcs-git-hfs-ignorable", "vcs-nested-hg", "digest-two-sizes"])
def test_hostile_entry_among_real_files_refuses_the_whole_pull(case: str, store, sharded_repo, hub: HubServer,
                                                               mirrors: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One bad entry hidden in an otherwise faithful listing: all-or-nothing, for the cache and --local-dir."""
    real = _tree_entries(store.files(QWEN3_VL_8B, sharded_repo), "")
    bad, needle = HOSTILE_LISTINGS[case]
    hub.faults.listing[QWEN3_VL_8B] = real + bad
    before = tree_state(tmp_path, skip=[tmp_path / "store"])
    for extra, target in (((), "cache"), (("--local-dir", "plain"), "plain")):
        code, out = _pull_inproc(mirrors, *extra)
        assert code == 3 and needle in out, out
        _assert_nothing_written(tmp_path, before, target)
    assert hub.total_bytes() == 0


def test_collision_error_tells_the_two_names_apart(store, sharded_repo, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    """'café' (NFC) and 'café' (NFD) print identically: the message must show how they differ."""
    hub.faults.listing[QWEN3_VL_8B] = HOSTILE_LISTINGS["nfc-nfd-collision"][0]
    code, out = _pull_inproc(mirrors)
    assert code == 3
    assert "\\xe9" in out and "\\u0301" in out, out


def test_oversized_listing_is_refused(cli, store, sharded_repo, hub: HubServer, mirrors: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from qwen_fetch.sources.hubhttp import MAX_JSON_BYTES

    entry = b'{"type": "file", "path": "f%07d.json", "size": 3, "oid": "' + b"b" * 40 + b'"},'
    count = MAX_JSON_BYTES // len(entry) + 10
    body = b"[" + b"".join(entry.replace(b"%07d", b"%07d" % i) for i in range(count))[:-1] + b"]"
    assert len(body) > MAX_JSON_BYTES
    hub.faults.listing[QWEN3_VL_8B] = body
    before = tree_state(tmp_path, skip=[tmp_path / "store"])
    r = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "cache", "--no-smoke")
    assert r.exit_code == 3, r.stderr
    assert f"limit {MAX_JSON_BYTES}" in r.stderr or f"over {MAX_JSON_BYTES} bytes" in r.stderr
    _assert_nothing_written(tmp_path, before, "cache")
