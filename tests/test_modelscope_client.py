"""The real ``modelscope`` client downloads from our loopback ModelScope server: the proof it is faithful."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.modelscope_hub import DEFAULT_EXTRA_FILES, ModelScopeHubServer, MSFaults
from tests.support.repo import RepoStore

pytest.importorskip("modelscope")

SCRIPT = """
import sys
from modelscope import snapshot_download
print(snapshot_download(sys.argv[1], cache_dir=sys.argv[2], revision='master'))
"""


def run_modelscope(url: str, tmp: Path, model_id: str, mode: str) -> Path:
    """Download with the official client: its Python API (``snapshot_download``) or ``modelscope download``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSCOPE_")}
    # MODELSCOPE_DOMAIN is how a user points the official client at a mirror; it accepts a scheme.
    env.update(MODELSCOPE_DOMAIN=url, MODELSCOPE_CACHE=str(tmp / "ms-cache"), MODELSCOPE_HOME=str(tmp / "ms-home"),
               NO_PROXY="127.0.0.1,localhost", MODELSCOPE_DOWNLOAD_INTRA_CLOUD="false")
    if mode == "api":
        cmd = [sys.executable, "-c", SCRIPT, model_id, str(tmp / "dl")]
    else:
        cli = Path(sys.executable).with_name("modelscope")
        cmd = [str(cli), "download", "--model", model_id, "--revision", "master", "--local_dir", str(tmp / "dl")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1]) if mode == "api" else tmp / "dl"


@pytest.mark.parametrize("mode,redirect", [("api", False), ("api", True), ("cli", True)],
                         ids=["snapshot_download", "snapshot_download-302-to-storage", "modelscope-download-cli"])
def test_official_client_downloads_byte_identical(tmp_path: Path, mode: str, redirect: bool) -> None:
    store = RepoStore(tmp_path / "store")
    commit = add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20)
    readme = b"# ModelScope's own model card\n"
    extras = {**DEFAULT_EXTRA_FILES, "README.md": readme}
    with ModelScopeHubServer(store, extra_files=extras) as oss, \
            ModelScopeHubServer(store, MSFaults(redirect_base=oss.url if redirect else None),
                                extra_files=extras) as ms:
        out = run_modelscope(ms.url, tmp_path, QWEN3_VL_8B, mode)
        listed = ms.requests_to("/repo/files?")
    assert listed and "Revision=master" in listed[0]["path"] and "Recursive=True" in listed[0]["path"]
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
           if p.is_file() and not p.name.startswith(".")}
    expected = {sf.path: sf.disk.read_bytes() for sf in store.files(QWEN3_VL_8B, commit)}
    expected.update(extras)
    assert sorted(got) == sorted(expected)
    for path, data in expected.items():
        assert got[path] == data, path
    if redirect:
        assert any("/oss/" in r["path"] for r in oss.log)
