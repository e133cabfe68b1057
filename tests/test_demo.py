"""`qwen-fetch demo`: what it prints at the end works when pasted, and nothing leaks into its output."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from qwen_fetch.cli.demo_cmd import DEMO_MODEL, smoke_extra_installed


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")}
    proc = subprocess.run([sys.executable, "-m", "qwen_fetch", "demo", *args], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Loading weights" not in proc.stdout + proc.stderr  # transformers' own bar
    return proc


def test_kept_workdir_ends_with_commands_that_work(tmp_path: Path) -> None:
    work = tmp_path / "demo dir"  # a space: the printed commands must quote it
    out = _demo("--workdir", str(work)).stdout
    assert re.search(r"qwen-fetch serve on http://127\.0\.0\.1:\d+ publishing " + re.escape(DEMO_MODEL), out), out
    if smoke_extra_installed():
        assert "random weights" in out
    lines = out[out.index("demo passed"):].splitlines()
    load = next(line.strip() for line in lines if line.strip().startswith("HF_HUB_CACHE="))
    verify = next(line.strip() for line in lines if line.strip().startswith("qwen-fetch verify"))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    loaded = subprocess.run(["bash", "-c", load], capture_output=True, text=True, env=env, cwd="/", timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    snapshot = Path(loaded.stdout.strip().splitlines()[-1])
    assert snapshot.is_dir() and snapshot.is_relative_to(work / "cache") and (snapshot / "config.json").is_file()
    argv = shlex.split(verify)
    checked = subprocess.run([sys.executable, "-m", "qwen_fetch", *argv[1:]], capture_output=True, text=True,
                             cwd="/", timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert DEMO_MODEL in verify


def test_temporary_folder_is_removed_and_the_output_says_so() -> None:
    out = _demo().stdout
    m = re.search(r"Its work folder (\S+) \(cache, lockfile, mirrors.yaml\) has been removed", out)
    assert m, out
    assert not Path(m.group(1)).exists()
    assert "qwen-fetch demo --workdir" in out
    assert "HF_HUB_CACHE=" not in out  # no command pointing into the removed folder


def test_demo_cache_is_published_by_serve_as_the_bundled_files(tmp_path: Path) -> None:
    import hashlib

    from qwen_fetch.cli.demo_cmd import bundled_model_dir
    from qwen_fetch.ops.demo import seed_cache
    from qwen_fetch.serve.catalog import Catalog

    src = bundled_model_dir()
    files = {p.relative_to(src).as_posix(): p for p in sorted(src.rglob("*")) if p.is_file()}
    commit = seed_cache(tmp_path / "a", DEMO_MODEL, files)
    assert seed_cache(tmp_path / "b", DEMO_MODEL, files) == commit  # same files, same commit: reruns keep the pin
    catalog = Catalog(tmp_path / "a")
    assert catalog.resolve(DEMO_MODEL, "main") == commit
    served = {f.path: f for f in catalog.snapshot(DEMO_MODEL, commit).files}
    assert sorted(served) == sorted(files)
    for path, disk in files.items():
        data = disk.read_bytes()
        f = served[path]
        assert f.size == len(data)
        assert f.lfs == path.endswith(".safetensors")
        if f.lfs:  # published with its sha256, as the Hub's LFS metadata
            assert f.sha256 == hashlib.sha256(data).hexdigest()
        else:  # published under its git blob id, which pull checks after hashing the bytes
            assert f.git_oid == hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
