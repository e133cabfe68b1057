"""Cache layout writes are atomic and leave nothing in snapshots/ or refs/ when interrupted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.store.hfcache import RepoCache, repo_folder_name, repo_id_from_folder


def test_folder_names_roundtrip() -> None:
    assert repo_folder_name("Qwen/Qwen3-VL-8B-Instruct") == "models--Qwen--Qwen3-VL-8B-Instruct"
    assert repo_id_from_folder("models--Qwen--Qwen3-VL-8B-Instruct") == "Qwen/Qwen3-VL-8B-Instruct"


def test_interrupted_link_and_ref_leave_no_stray_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = RepoCache(tmp_path, "o/m")
    repo.ensure_dirs()
    (repo.blobs_dir / ("a" * 64)).write_bytes(b"x")

    def crash(src: object, dst: object) -> None:  # a SIGKILL between "create aside" and "rename"
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        repo.link_snapshot("c" * 40, SafeRelPath("sub/config.json"), "a" * 64)
    with pytest.raises(KeyboardInterrupt):
        repo.write_ref("main", "c" * 40)
    monkeypatch.undo()
    assert [p for p in repo.snapshot_dir("c" * 40).rglob("*") if not p.is_dir()] == []
    assert list(repo.refs_dir.iterdir()) == []
    link = repo.link_snapshot("c" * 40, SafeRelPath("sub/config.json"), "a" * 64)
    assert os.readlink(link) == "../../../blobs/" + "a" * 64 and link.read_bytes() == b"x"
    repo.write_ref("main", "c" * 40)
    assert repo.refs() == {"main": "c" * 40}
