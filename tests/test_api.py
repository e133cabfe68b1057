"""The Python API against the loopback hub: frozen dataclasses back, the CLI's errors raised."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

import qwen_fetch
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer
from tests.support.repo import RepoStore


def test_pull_then_verify(store: RepoStore, sharded_repo: str, hub: HubServer, mirrors: Path) -> None:
    model = qwen_fetch.pull(QWEN3_VL_8B, config=mirrors, cache_dir="cache")
    assert isinstance(model, qwen_fetch.PulledModel)
    assert model.commit == sharded_repo and model.revision == "main" and model.lock_written
    assert model.path == Path("cache").absolute() / f"models--{QWEN3_VL_8B.replace('/', '--')}" / "snapshots" / sharded_repo
    want = sorted(f.path for f in store.files(QWEN3_VL_8B, sharded_repo))
    assert list(model.files) == want and model.downloaded_files == len(want) and model.cached_files == 0
    assert model.bytes_downloaded == sum(f.size for f in store.files(QWEN3_VL_8B, sharded_repo))
    for name in want:
        assert (model.path / name).read_bytes() == next(f.disk.read_bytes() for f in store.files(QWEN3_VL_8B, sharded_repo)
                                                        if f.path == name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.commit = "x"  # type: ignore[misc]

    # The start-up check: pinned, cached, verified, nothing transferred.
    hub.reset_stats()
    again = qwen_fetch.pull(QWEN3_VL_8B, config=mirrors, cache_dir="cache", frozen=True)
    assert again.downloaded_files == 0 and again.bytes_downloaded == 0 and not again.lock_written
    assert hub.total_bytes() == 0

    checked = qwen_fetch.verify(QWEN3_VL_8B, cache_dir="cache")
    assert isinstance(checked, qwen_fetch.VerifiedModel)
    assert checked.commit == sharded_repo and checked.files_checked == len(want)
    assert checked.path == model.path


def test_verify_raises_with_every_difference(sharded_repo: str, hub: HubServer, mirrors: Path) -> None:
    model = qwen_fetch.pull(QWEN3_VL_8B, config=mirrors, cache_dir="cache")
    blob = (model.path / "config.json").resolve()
    data = bytearray(blob.read_bytes())
    data[0] ^= 1
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    (model.path / "tokenizer.json").unlink()
    with pytest.raises(qwen_fetch.IntegrityError) as info:
        qwen_fetch.verify(QWEN3_VL_8B, cache_dir="cache")
    err = info.value
    assert err.exit_code == 3 and err.hint and "qwen-fetch pull" in err.hint
    text = "\n".join(err.context)
    assert "missing     tokenizer.json" in text and "mismatched  config.json" in text


def test_verify_a_local_dir(sharded_repo: str, hub: HubServer, mirrors: Path) -> None:
    model = qwen_fetch.pull(QWEN3_VL_8B, config=mirrors, local_dir="plain")
    assert model.path == Path("plain").absolute()
    assert qwen_fetch.verify(QWEN3_VL_8B, path="plain").files_checked == len(model.files)
    (Path("plain") / "extra.bin").write_bytes(b"x")
    with pytest.raises(qwen_fetch.IntegrityError) as info:
        qwen_fetch.verify(QWEN3_VL_8B, path="plain")
    assert any("extra.bin" in line for line in info.value.context)


@pytest.mark.parametrize("call, error, code", [
    (lambda m: qwen_fetch.pull(QWEN3_VL_8B, config=m, cache_dir="cache", frozen=True), "IntegrityError", 3),
    (lambda m: qwen_fetch.pull("Nope/missing", config=m, cache_dir="cache"), "SourceError", 4),
    (lambda m: qwen_fetch.pull(QWEN3_VL_8B, config=m, frozen=True, update=True), "UsageError", 2),
    (lambda m: qwen_fetch.pull(QWEN3_VL_8B, config=m, cache_dir="c", local_dir="d"), "UsageError", 2),
    (lambda m: qwen_fetch.pull("bad id!", config=m), "UsageError", 2),
    (lambda m: qwen_fetch.verify(QWEN3_VL_8B, cache_dir="cache"), "UsageError", 2),  # not pinned
])
def test_errors_are_the_clis(call, error: str, code: int, sharded_repo: str, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(qwen_fetch.QFError) as info:
        call(mirrors)
    assert isinstance(info.value, getattr(qwen_fetch, error))
    assert info.value.exit_code == code and info.value.message
    if code == 2:
        assert hub.log == []  # refused before the network


def test_names_stay_functions_after_the_modules_are_imported() -> None:
    """The API's names are functions; the modules behind them (ops/pull.py, core/verify.py) live in subpackages."""
    import qwen_fetch.core.verify
    import qwen_fetch.ops.pull  # noqa: F401
    from qwen_fetch.api import pull, verify

    assert qwen_fetch.pull is pull and qwen_fetch.verify is verify
    from qwen_fetch.ops.pull import Puller

    assert Puller.__module__ == "qwen_fetch.ops.pull"


def test_importing_the_package_stays_cheap() -> None:
    code = ("import sys, qwen_fetch\n"
            "heavy = [m for m in ('qwen_fetch.api', 'httpx', 'rich', 'typer', 'yaml', 'torch') if m in sys.modules]\n"
            "assert heavy == [], heavy\n"
            "assert callable(qwen_fetch.pull) and 'qwen_fetch.api' in sys.modules and 'httpx' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_path_names_the_folder_pull_returned(sharded_repo: str, hub: HubServer, mirrors: Path) -> None:
    model = qwen_fetch.pull(QWEN3_VL_8B, config=mirrors, cache_dir="cache")
    hub.reset_stats()
    assert Path(os.path.abspath(qwen_fetch.path(QWEN3_VL_8B, cache_dir="cache"))) == model.path
    assert hub.log == []  # from the cache alone
