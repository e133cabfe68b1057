"""`qwen-fetch verify` end to end on real on-disk caches and folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock
from typer.testing import CliRunner

from qwen_fetch.cli.app import app
from qwen_fetch.core.manifest import Pin
from qwen_fetch.store.hfcache import RepoCache
from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.repo import RepoStore
from tests.verify_gc_cache import install, write_pins

SHARD1 = "model-00001-of-00004.safetensors"
SHARD2 = "model-00002-of-00004.safetensors"


class Env:
    def __init__(self, tmp: Path, store: RepoStore) -> None:
        self.tmp = tmp
        self.cache = tmp / "cache"
        self.store = store
        self.commit = add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20, seed=1)
        self.pin: Pin = install(self.cache, store, QWEN3_VL_8B, self.commit)
        self.lock = write_pins(tmp / "qwen-fetch.lock", {QWEN3_VL_8B: [self.pin]})
        self.repo = RepoCache(self.cache, QWEN3_VL_8B)

    def blob(self, path: str) -> Path:
        return self.repo.blob_path(self.pin.by_path()[path].sha256)

    def link(self, path: str) -> Path:
        return self.repo.snapshot_dir(self.commit) / path

    def run(self, *args: str) -> tuple[int, dict | str]:
        res = CliRunner().invoke(app, ["verify", *args, "--cache-dir", str(self.cache), "--lock", str(self.lock)])
        if "--json" in args:
            return res.exit_code, json.loads(res.stdout) if res.stdout.strip() else {}
        return res.exit_code, res.output


@pytest.fixture
def env(tmp_path: Path, store: RepoStore) -> Env:
    return Env(tmp_path, store)


def target(report: dict) -> dict:
    assert len(report["targets"]) == 1
    return report["targets"][0]


def test_clean_cache_passes(env: Env) -> None:
    code, rep = env.run(QWEN3_VL_8B, "--json")
    assert code == 0, rep
    assert rep["ok"] and target(rep)["files_checked"] == len(env.pin.files)
    assert target(rep)["bytes_hashed"] == sum(f.size for f in env.pin.files)
    code, out = env.run(QWEN3_VL_8B)
    assert code == 0 and "verified" in out


def flip_byte(p: Path, offset: int) -> None:
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def test_flipped_byte_in_a_blob(env: Env) -> None:
    flip_byte(env.blob(SHARD2), 12345)
    code, rep = env.run(QWEN3_VL_8B, "--json")
    assert code == 3
    m = target(rep)["mismatched"]
    assert [x["path"] for x in m] == [SHARD2] and m[0]["fields"] == ["sha256"]
    assert m[0]["expected"]["sha256"] == env.pin.by_path()[SHARD2].sha256
    assert m[0]["actual"]["sha256"] != m[0]["expected"]["sha256"]
    assert m[0]["actual"]["size"] == m[0]["expected"]["size"]


def test_truncated_blob(env: Env) -> None:
    with open(env.blob(SHARD1), "r+b") as f:
        f.truncate(100)
    code, rep = env.run(QWEN3_VL_8B, "--json")
    assert code == 3
    m = target(rep)["mismatched"]
    assert [x["path"] for x in m] == [SHARD1] and m[0]["fields"] == ["size", "sha256"]
    assert m[0]["actual"]["size"] == 100


def test_dangling_link(env: Env) -> None:
    env.blob(SHARD1).unlink()
    code, rep = env.run(QWEN3_VL_8B, "--json")
    assert code == 3
    assert target(rep)["bad_links"] == [{"path": SHARD1, "problem": "dangling",
                                         "expected": env.pin.by_path()[SHARD1].sha256,
                                         "actual": os.readlink(env.link(SHARD1))}]


def test_link_swapped_to_another_blob(env: Env) -> None:
    link = env.link(SHARD1)
    other = os.path.relpath(env.blob(SHARD2), link.parent)
    link.unlink()
    os.symlink(other, link)
    code, rep = env.run(QWEN3_VL_8B, "--json")
    assert code == 3
    t = target(rep)
    assert [(b["path"], b["problem"], b["actual"]) for b in t["bad_links"]] == [(SHARD1, "wrong-blob", other)]
    assert [m["path"] for m in t["mismatched"]] == [SHARD1]


def test_missing_extra_modified_in_one_sorted_report(env: Env) -> None:
    env.link("vocab.json").unlink()
    env.link("config.json").unlink()
    (env.repo.snapshot_dir(env.commit) / "zz-extra.txt").write_text("x")
    (env.repo.snapshot_dir(env.commit) / "aa-extra.txt").write_text("y")
    flip_byte(env.blob("tokenizer.json"), 0)
    code, rep = env.run(QWEN3_VL_8B, "--json")
    assert code == 3
    t = target(rep)
    assert t["missing"] == ["config.json", "vocab.json"]
    assert t["extra"] == ["aa-extra.txt", "zz-extra.txt"]
    assert [m["path"] for m in t["mismatched"]] == ["tokenizer.json"]
    assert rep["counts"]["missing"] == 2 and rep["counts"]["extra"] == 2
    code, out = env.run(QWEN3_VL_8B)
    assert code == 3
    assert out.index("missing     config.json") < out.index("missing     vocab.json")
    assert "expected size=" in out and "actual   size=" in out


def test_local_dir(env: Env) -> None:
    folder = env.tmp / "local"
    shutil.copytree(env.repo.snapshot_dir(env.commit), folder, symlinks=False)
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "meta").write_text("ignored")
    code, rep = env.run("--local-dir", str(folder), "--json")
    assert code == 0, rep
    assert target(rep)["kind"] == "folder"
    flip_byte(folder / SHARD1, 7)
    (folder / "README.md").unlink()
    (folder / "notes.txt").write_text("extra")
    code, rep = env.run("--local-dir", str(folder), "--json")
    assert code == 3
    t = target(rep)
    assert (t["missing"], t["extra"], [m["path"] for m in t["mismatched"]]) == (["README.md"], ["notes.txt"], [SHARD1])
    # The same folder as a positional PATH.
    code, rep = env.run(str(folder), "--model", QWEN3_VL_8B, "--json")
    assert code == 3 and target(rep)["missing"] == ["README.md"]


def test_snapshot_path_infers_model_and_commit(env: Env) -> None:
    flip_byte(env.blob(SHARD1), 1)
    code, rep = env.run(str(env.repo.snapshot_dir(env.commit)), "--json")
    assert code == 3
    t = target(rep)
    assert (t["model"], t["commit"], t["kind"]) == (QWEN3_VL_8B, env.commit, "snapshot")


def test_usage_errors_exit_2(env: Env) -> None:
    code, out = env.run("Other/Model")
    assert code == 2 and "qwen-fetch lock Other/Model" in out
    code, out = env.run(QWEN3_VL_8B, "--revision", "nope")
    assert code == 2
    code, out = env.run()
    assert code == 2
    res = CliRunner().invoke(app, ["verify", QWEN3_VL_8B, "--lock", str(env.tmp / "missing.lock")])
    assert res.exit_code == 2


def test_pinned_but_not_cached_exit_3(env: Env, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["verify", QWEN3_VL_8B, "--cache-dir", str(tmp_path / "empty"),
                                   "--lock", str(env.lock)])
    assert res.exit_code == 3 and "qwen-fetch pull" in res.output


def test_all_checks_every_pin_refs_and_partials(env: Env) -> None:
    # A second pinned revision sharing three shards, and a second model.
    c2 = add_sharded_repo(env.store, QWEN3_VL_8B, shard_total=1 << 20, seed=2, revision="v2")
    pin2 = install(env.cache, env.store, QWEN3_VL_8B, c2, ref="v2")
    other = "Other/Tiny"
    c3 = env.store.add_commit(other, {"config.json": b"{}", "w.bin": b"w" * 1000})
    pin3 = install(env.cache, env.store, other, c3)
    write_pins(env.lock, {QWEN3_VL_8B: [env.pin, pin2], other: [pin3]})
    code, rep = env.run("--all", "--json")
    assert code == 0, rep
    assert sorted((t["model"], t["commit"]) for t in rep["targets"]) == sorted(
        [(QWEN3_VL_8B, env.commit), (QWEN3_VL_8B, c2), (other, c3)])

    repo3 = RepoCache(env.cache, other)
    (repo3.refs_dir / "stale").write_text("f" * 40)  # ref to a commit with no snapshot
    sha = pin3.by_path()["w.bin"].sha256
    (repo3.blobs_dir / (sha + ".incomplete")).write_bytes(b"w" * 10)  # leftover: the blob is complete
    (repo3.blobs_dir / ("a" * 64 + ".incomplete")).write_bytes(b"?")  # held by a "running pull": skipped
    os.unlink(RepoCache(env.cache, QWEN3_VL_8B).snapshot_dir(c2) / "config.json")
    with FileLock(str(repo3.lock_path("a" * 64))):
        code, rep = env.run("--all", "--json")
    assert code == 3
    assert rep["bad_refs"] == [{"repo": other, "ref": "stale", "commit": "f" * 40, "problem": "no-snapshot"}]
    assert [(s["path"], s["reason"]) for s in rep["stray"]] == [
        (f"models--Other--Tiny/blobs/{sha}.incomplete", "blob-complete")]
    assert [t["missing"] for t in rep["targets"] if t["commit"] == c2] == [["config.json"]]


def test_all_reports_dangling_links_of_unpinned_snapshots(env: Env) -> None:
    c2 = add_sharded_repo(env.store, QWEN3_VL_8B, shard_total=1 << 20, seed=3, revision="v3")
    pin2 = install(env.cache, env.store, QWEN3_VL_8B, c2, ref=None)  # in the cache, not in the lock
    env.repo.blob_path(pin2.by_path()["config.json"].sha256).unlink()
    code, rep = env.run("--all", "--json")
    assert code == 3
    assert [(b["path"], b["problem"]) for b in rep["bad_links"]] == [(f"{QWEN3_VL_8B}@{c2}:config.json", "dangling")]


def test_verify_never_imports_network_code(env: Env) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from qwen_fetch.cli.verify_cmd import do_verify\n"
        f"r = do_verify({QWEN3_VL_8B!r}, [Path({str(env.lock)!r})], Path({str(env.cache)!r}), None, None, None,"
        " False, 2, True)\n"
        "assert r.ok\n"
        "bad = [m for m in ('httpx', 'httpcore', 'requests', 'urllib3', 'qwen_fetch.net') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class Recorder:
    def __init__(self) -> None:
        self.total = -1
        self.done = 0
        self.ended = False

    def begin(self, total_bytes: int, total_files: int) -> None:
        self.total = total_bytes

    def advance(self, nbytes: int) -> None:
        self.done += nbytes

    def file_done(self, path: str, source: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def end(self) -> None:
        self.ended = True


def test_progress_counts_every_byte_once(env: Env) -> None:
    from qwen_fetch.store.verify_disk import snapshot_targets, verify_targets

    # Two snapshots sharing blobs: each shared blob is read (and counted) once.
    c2 = add_sharded_repo(env.store, QWEN3_VL_8B, shard_total=1 << 20, seed=1, revision="again",
                          small_scale=0.02)
    pin2 = install(env.cache, env.store, QWEN3_VL_8B, c2, ref=None)
    targets = snapshot_targets(env.cache, [(QWEN3_VL_8B, env.pin), (QWEN3_VL_8B, pin2)])
    rec = Recorder()
    reports = verify_targets(targets, workers=2, progress=rec)
    assert all(r.ok for r in reports) and rec.ended
    blobs = {f.sha256: f.size for p in (env.pin, pin2) for f in p.files}
    assert rec.total == rec.done == sum(blobs.values())
