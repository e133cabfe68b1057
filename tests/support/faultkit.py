"""Tools for the fault campaign (tests/test_faults_*.py and bench/fault_campaign.py).

* :data:`HOSTILE_LISTINGS`: tree listings a compromised mirror could serve, each
  with the words the refusal must contain;
* :func:`tree_state` / :func:`new_outside`: what a run wrote, anywhere under a
  directory, so a test can say "nothing outside the target";
* :func:`cache_digest`: a canonical picture of a cache (every blob's bytes,
  every snapshot link, every ref, every stray file) to compare with a clean pull;
* :class:`SnapshotWatcher`: a thread that polls the snapshots while a pull, gc
  or verify runs (or is killed) and records any moment at which a snapshot
  holds a file whose sha256 differs from its pin, or a dangling link;
* :func:`mount_small_fs`: a small tmpfs (or loop file system) for disk-full runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHA_A = "a" * 64
OID_A = "b" * 40


def _file(path: Any, size: int = 3, **extra: Any) -> dict[str, Any]:
    return {"type": "file", "path": path, "size": size, "oid": OID_A, **extra}


def _lfs(path: str, size: int = 3) -> dict[str, Any]:
    return _file(path, size, lfs={"oid": SHA_A, "size": size, "pointerSize": 134})


def _nest(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# name -> (the tree JSON the mirror serves: entries or raw bytes, words the error must contain)
HOSTILE_LISTINGS: dict[str, tuple[Any, str]] = {
    "dotdot": ([_file("../../escape.txt")], "'..'"),
    "dotdot-inside": ([_file("sub/../../../escape.txt")], "'..'"),
    "dotdot-lfs": ([_lfs("../escape.safetensors")], "'..'"),
    "absolute": ([_file("/tmp/qwen-fetch-escape.txt")], "absolute path"),
    "drive-letter": ([_file("C:/escape.txt")], "absolute path"),
    "backslash": ([_file("..\\..\\escape.txt")], "backslash"),
    "nul": ([_file("config.json\x00.txt")], "control character"),
    "newline": ([_file("a\nb.json")], "control character"),
    "escape-seq": ([_file("\x1b[2Jconfig.json")], "control character"),
    "bidi-override": ([_file("evil\u202etxt.json")], "control character"),
    "long-component": ([_file("a" * 300)], "longer than 255"),
    "long-path": ([_file("/".join(["d" * 200] * 6))], "longer than 1024"),
    "empty-path": ([_file("")], "not a non-empty string"),
    "non-string-path": ([_file(12345)], "not a non-empty string"),
    "dot-component": ([_file("./config.json")], "'.'"),
    "reserved-git": ([_file(".git/hooks/post-checkout")], "version-control folder"),
    # A nested repository's config runs commands (core.fsmonitor, hooks) when git or hg is used below it.
    "vcs-nested-git": ([_file("sub/.git/HEAD"), _file("sub/.git/config")], "version-control folder"),
    "vcs-git-case": ([_file("sub/.GIT/config")], "version-control folder"),
    "vcs-git-hfs-ignorable": ([_file("sub/.g\u200cit/config")], "version-control folder"),
    "vcs-git-ntfs-trailing-dot": ([_file("sub/.git./config")], "version-control folder"),
    "vcs-git-ntfs-short-name": ([_file("sub/git~1/config")], "version-control folder"),
    "vcs-nested-hg": ([_file("sub/.hg/hgrc")], "version-control folder"),
    # Content is fetched once per sha256: one digest at two sizes would hand one path the wrong bytes.
    "digest-two-sizes": ([_lfs("a.safetensors", 3), _lfs("b.safetensors", 4)], "two sizes"),
    "case-collision": ([_file("Config.json"), _file("config.json")], "collide"),
    "nfc-nfd-collision": ([_file("caf\u00e9.json"), _file("cafe\u0301.json")], "collide"),
    "duplicate": ([_file("config.json"), _file("config.json")], "listed twice"),
    "file-and-dir": ([_file("a"), _file("a/b")], "both a file and a directory"),
    "symlink-entry": ([{"type": "symlink", "path": "weights", "target": "/etc/passwd", "size": 3}],
                      "unsupported entry type"),
    "negative-size": ([_file("config.json", -1)], "bad size"),
    "bool-size": ([_file("config.json", True)], "bad size"),
    "huge-size": ([_file("config.json", 1 << 62)], "bad size"),
    "lfs-size-disagrees": ([_file("m.safetensors", 3, lfs={"oid": SHA_A, "size": 4})], "disagrees"),
    "bad-lfs-sha": ([_file("m.safetensors", 3, lfs={"oid": "zz"})], "bad lfs sha256"),
    "bad-git-oid": ([_file("config.json", 3, oid="../x")], "bad git blob id"),
    "not-a-list": ({"files": []}, "not a JSON array"),
    "entry-not-object": (["config.json"], "not an object"),
    "malformed-json": (b'[{"type": "file", "path": "config.json", "si', "malformed JSON"),
    "deeply-nested-json": (_nest(200_000), "malformed JSON"),
    "not-utf8-json": (b'[{"type": "file", "path": "\xff\xfe"}]', "malformed JSON"),
}


_SOURCE = "sources:\n  - name: a\n    kind: hf\n    endpoint: http://127.0.0.1:9\n"


def _lock_entry(files: str, commit: str = "c" * 40) -> str:
    return (f"version: 1\nmodels:\n  Qwen/Qwen3-VL-8B-Instruct:\n  - revision: main\n    commit: {commit}\n"
            f"    source: local\n    files:\n{files}")


def _bomb(levels: int, top: str) -> str:
    lines = ['l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\n{top}: [*l{levels - 1}]\n"


# name -> (mirrors.yaml text, words the exit-2 error must contain)
HOSTILE_MIRRORS: dict[str, tuple[str, str]] = {
    "python-apply": ("sources: !!python/object/apply:os.system ['touch PWNED']\n", "unsupported YAML tag"),
    "python-name": ("sources:\n  - name: !!python/name:os.system\n    kind: hf\n    endpoint: http://x\n",
                    "unsupported YAML tag"),
    "binary": (_SOURCE + "    revision: !!binary aGVsbG8=\n", "unsupported YAML tag"),
    "timestamp": (_SOURCE + "    revision: !!timestamp 2001-12-14\n", "unsupported YAML tag"),
    "alias-bomb": (_bomb(9, "sources"), "anchors and aliases"),
    "deep-nesting": ("sources: " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply"),
    "unclosed": ("sources:\n  - name: a\n    kind: [hf\n", "malformed YAML"),
    "tab-indent": ("sources:\n\t- name: a\n", "malformed YAML"),
    "unknown-top-key": (_SOURCE + "proxies: {}\n", "unknown key 'proxies'"),
    "token-in-file": (_SOURCE + "    token: hf_literal\n", "unknown key 'token'"),
    "file-url": ("sources:\n  - name: a\n    kind: hf\n    endpoint: file:///etc/passwd\n", "must be an http(s) URL"),
    "not-a-mapping": ("- just\n- a list\n", "expected a mapping"),
    "empty": ("", "expected a mapping"),
}


# name -> (lockfile text, words the exit-2 error must contain); None: built from a real lockfile
HOSTILE_LOCKS: dict[str, tuple[str, str] | None] = {
    "python-apply": ("version: 1\nmodels: !!python/object/apply:os.system ['touch PWNED']\n", "unsupported YAML tag"),
    "alias-bomb": ("version: 1\n" + _bomb(8, "models"), "anchors and aliases"),
    "deep-nesting": ("version: 1\nmodels: " + "{a: " * 5000 + "}" * 5000 + "\n", "nested too deeply"),
    "digest-two-sizes": (_lock_entry("    - path: a.safetensors\n      size: 3\n      sha256: " + SHA_A + "\n"
                                     "    - path: b.safetensors\n      size: 4\n      sha256: " + SHA_A + "\n"),
                         "two sizes"),
    "commit-is-a-path": (_lock_entry("    - path: a.json\n      size: 3\n      sha256: " + SHA_A + "\n",
                                     commit="'..'"), "not a commit id"),
    "truncated": None,  # the real lockfile cut in half, as a crashed editor would leave it
    "unknown-key": None,  # the real lockfile with a key added
}


# ---------------------------------------------------------------------------
# what is on disk


def tree_state(root: Path, *, skip: Iterable[Path] = ()) -> dict[str, str]:
    """``relative path -> kind:detail`` for everything under ``root`` (links not followed)."""
    skip_abs = [os.path.abspath(s) for s in skip]
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if any(dirpath == s or dirpath.startswith(s + os.sep) for s in skip_abs):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if os.path.islink(p):
                out[rel] = "link:" + os.readlink(p)
            elif os.path.isdir(p):
                out[rel] = "dir"
            else:
                out[rel] = f"file:{st.st_size}:{st.st_mtime_ns}"
    return out


def new_outside(before: Mapping[str, str], after: Mapping[str, str], allowed: Iterable[str]) -> list[str]:
    """Paths created or changed between two :func:`tree_state` pictures, outside the ``allowed`` prefixes."""
    prefixes = tuple(a.rstrip("/") for a in allowed)
    changed = [p for p, v in after.items() if before.get(p) != v]
    return sorted(p for p in changed if not any(p == a or p.startswith(a + os.sep) for a in prefixes))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def cache_digest(cache: Path) -> dict[str, str]:
    """Everything a user of the cache can see, canonically: blob bytes, links, refs, stray files.

    Lock files (``.locks/``) are left out: huggingface_hub leaves them behind too.  So are verification
    stamps (``models--*/.qwen-fetch/``): they record inodes and times, which differ between any two
    caches, and a missing or stale one only costs a re-hash.
    """
    out: dict[str, str] = {}
    if not cache.exists():
        return out
    for rel, kind in tree_state(cache).items():
        parts = rel.split(os.sep)
        if parts[0] == ".locks" or (len(parts) > 1 and parts[1] == ".qwen-fetch"):
            continue
        if kind.startswith("file:"):
            out[rel] = "sha256:" + sha256_of(cache / rel)
        else:
            out[rel] = kind
    return out


def diff_digests(want: Mapping[str, str], got: Mapping[str, str]) -> list[str]:
    lines = [f"missing {p}" for p in sorted(set(want) - set(got))]
    lines += [f"extra {p} ({got[p]})" for p in sorted(set(got) - set(want))]
    lines += [f"differs {p}: {want[p]} != {got[p]}" for p in sorted(set(want) & set(got)) if want[p] != got[p]]
    return lines


# ---------------------------------------------------------------------------
# the watcher


@dataclass
class SnapshotWatcher:
    """Poll ``<cache>/models--*/snapshots/*/**`` and check every file against its pin.

    ``expected`` maps ``commit -> {path: sha256}``.  A violation is a snapshot
    file that does not hash to its pin, a path the pin does not have, or a
    dangling link.  Blobs are hashed once per (inode, size, mtime).
    """

    cache: Path
    expected: Mapping[str, Mapping[str, str]]
    interval: float = 0.01
    violations: list[str] = field(default_factory=list)
    polls: int = 0
    files_checked: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _hashes: dict[tuple[int, int, int, int], str] = field(default_factory=dict)

    def __enter__(self) -> SnapshotWatcher:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="snapshot-watcher")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.check_once()  # the final state counts too

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            self._stop.wait(self.interval)

    def check_once(self) -> None:
        self.polls += 1
        for snaps in self.cache.glob("models--*/snapshots"):
            try:
                commits = list(snaps.iterdir())
            except FileNotFoundError:
                continue
            for snap in commits:
                want = self.expected.get(snap.name)
                for dirpath, _dirs, files in os.walk(snap):
                    for name in files:
                        self._check(snap, Path(dirpath) / name, want)

    def _check(self, snap: Path, p: Path, want: Mapping[str, str] | None) -> None:
        rel = p.relative_to(snap).as_posix()
        where = f"{snap.name[:12]}/{rel}"
        try:
            st = os.stat(p)  # follows the link
        except FileNotFoundError:
            if os.path.lexists(p) and os.path.exists(snap):
                # re-check: gc may have moved the whole snapshot away between the two calls
                time.sleep(0.005)
                if os.path.lexists(p) and not os.path.exists(p):
                    self._violate(f"{where}: dangling link -> {os.readlink(p)}")
            return
        if want is None:
            self._violate(f"{where}: snapshot of an unpinned commit")
            return
        if rel not in want:
            self._violate(f"{where}: not in the pin")
            return
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        digest = self._hashes.get(key)
        if digest is None:
            try:
                digest = sha256_of(p)
            except FileNotFoundError:
                return
            self._hashes[key] = digest
        self.files_checked += 1
        if digest != want[rel]:
            self._violate(f"{where}: sha256 {digest[:12]} but pinned {want[rel][:12]}")

    def _violate(self, msg: str) -> None:
        if msg not in self.violations:
            self.violations.append(msg)


# ---------------------------------------------------------------------------
# processes


def qf_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "qwen_fetch", *args]


def run_qf(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
           timeout: float = 240) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(qf_argv(*args), capture_output=True, text=True, env=full, cwd=cwd, timeout=timeout, check=False)


def kill_after(argv: list[str], delay: float, *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
               timeout: float = 240) -> tuple[bool, int]:
    """Start ``argv``, SIGKILL it after ``delay`` seconds; ``(killed, returncode)``.

    ``killed`` is False when the process had already exited on its own.
    """
    full = dict(os.environ)
    full.update(env or {})
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=full, cwd=cwd)
    try:
        proc.wait(timeout=delay)
        return False, proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        return True, proc.wait(timeout=timeout)


# ---------------------------------------------------------------------------
# a small file system


def mount_small_fs(mountpoint: Path, size_mib: int) -> str:
    """Mount a ``size_mib`` file system at ``mountpoint``; returns how, or raises ``OSError`` with the reason.

    tmpfs first (needs root or CAP_SYS_ADMIN); then an ext4 image on a loop device.
    """
    mountpoint.mkdir(parents=True, exist_ok=True)
    reasons: list[str] = []
    if shutil.which("mount") is None:
        raise OSError("no mount(8) on this machine")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(mountpoint)],
                       capture_output=True, text=True, check=False)
    if r.returncode == 0:
        return "tmpfs"
    reasons.append(f"tmpfs: {r.stderr.strip() or r.returncode}")
    if shutil.which("mkfs.ext4"):
        img = mountpoint.with_name(mountpoint.name + ".img")
        with open(img, "wb") as f:
            f.truncate(size_mib << 20)
        mk = subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], capture_output=True, text=True, check=False)
        if mk.returncode == 0:
            r = subprocess.run(["mount", "-o", "loop", str(img), str(mountpoint)], capture_output=True, text=True, check=False)
            if r.returncode == 0:
                return "ext4 on a loop device"
            reasons.append(f"loop: {r.stderr.strip() or r.returncode}")
        else:
            reasons.append(f"mkfs.ext4: {mk.stderr.strip()}")
    else:
        reasons.append("loop: no mkfs.ext4")
    raise OSError("cannot mount a small file system: " + "; ".join(reasons))


def resize_small_fs(mountpoint: Path, size_mib: int) -> bool:
    """Grow a tmpfs from :func:`mount_small_fs` in place; False when that is not possible."""
    r = subprocess.run(["mount", "-o", f"remount,size={size_mib}m", str(mountpoint)], capture_output=True, check=False)
    return r.returncode == 0


def unmount(mountpoint: Path) -> None:
    subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)


def expected_pins(store: Any, repo_id: str, commits: Iterable[str]) -> dict[str, dict[str, str]]:
    """``commit -> {path: sha256}`` from a :class:`~tests.support.repo.RepoStore`."""
    return {c: {f.path: f.sha256 for f in store.files(repo_id, c)} for c in commits}


# ---------------------------------------------------------------------------
# crash trials: SIGKILL pull / verify / gc at random moments, rerun, compare


@dataclass
class Trial:
    kind: str
    kills: int = 0  # SIGKILLs that hit a running process
    passed: bool = False
    lost: list[str] = field(default_factory=list)  # in the clean cache, missing after the rerun
    corrupt: list[str] = field(default_factory=list)  # wrong bytes (seen by the watcher or at the end)
    notes: list[str] = field(default_factory=list)  # extra files, failed reruns, ...


class CrashLab:
    """Reference caches built once; each trial works on its own copy under ``work``.

    ``hub_url`` serves ``repo_id`` with ``commit`` at ``main`` and ``old_commit``
    at ``old`` (for gc: a revision that no lockfile pins and no ref names).
    """

    def __init__(self, work: Path, store: Any, repo_id: str, commit: str, old_commit: str, hub_url: str) -> None:
        self.work = work
        self.repo_id = repo_id
        self.commit = commit
        self.old_commit = old_commit
        work.mkdir(parents=True, exist_ok=True)
        self.mirrors = work / "mirrors.yaml"
        self.mirrors.write_text(f"sources:\n  - name: local\n    kind: hf\n    endpoint: {hub_url}\n")
        self.expected = expected_pins(store, repo_id, [commit, old_commit])
        self.sizes = {f.path: f.size for f in store.files(repo_id, commit)}
        self.lfs_files = sorted(f.path for f in store.files(repo_id, commit) if f.lfs)
        self.n = 0
        self.hub: Any = None  # the HubServer behind hub_url, when the caller has it (byte counters)
        # the clean pull every pull trial must end equal to
        self.ref = work / "ref"
        t0 = time.monotonic()
        self._ok(self.pull(self.ref), "clean pull")
        self.pull_seconds = time.monotonic() - t0
        self.ref_digest = cache_digest(self.ref / "cache")
        self.ref_lock = (self.ref / "qwen-fetch.lock").read_text()
        t0 = time.monotonic()
        self._ok(self.verify(self.ref), "clean verify")
        self.verify_seconds = time.monotonic() - t0
        # the gc starting point: the old revision (ref removed, unpinned) + a stale partial, then main
        self.gc_base = work / "gc-base"
        self._ok(self.pull(self.gc_base, "--revision", "old", lock="old.lock"), "pull old")
        os.unlink(self.gc_base / "cache" / self._repo_dir() / "refs" / "old")
        self._ok(self.pull(self.gc_base), "pull main")
        blobs = self.gc_base / "cache" / self._repo_dir() / "blobs"
        stale = blobs / ("e" * 64 + ".incomplete")
        stale.write_bytes(os.urandom(300_000))
        os.utime(stale, (time.time() - 3 * 86400,) * 2)
        clean = self._copy(self.gc_base, "gc-ref")
        t0 = time.monotonic()
        self._ok(self.gc(clean), "clean gc")
        self.gc_seconds = time.monotonic() - t0
        self.gc_digest = cache_digest(clean / "cache")
        assert self.gc_digest != cache_digest(self.gc_base / "cache"), "the gc base has nothing to collect"

    # -- commands -------------------------------------------------------------
    def _repo_dir(self) -> str:
        return "models--" + self.repo_id.replace("/", "--")

    def pull(self, d: Path, *extra: str, lock: str = "qwen-fetch.lock") -> list[str]:
        d.mkdir(parents=True, exist_ok=True)
        return qf_argv("pull", self.repo_id, "--config", str(self.mirrors), "--cache-dir", str(d / "cache"),
                       "--lock", str(d / lock), "--no-smoke", "--json", *extra)

    def verify(self, d: Path) -> list[str]:
        return qf_argv("verify", self.repo_id, "--cache-dir", str(d / "cache"), "--lock", str(d / "qwen-fetch.lock"))

    def gc(self, d: Path) -> list[str]:
        return qf_argv("gc", "--cache-dir", str(d / "cache"), "--lock", str(d / "qwen-fetch.lock"), "--yes", "--json")

    def _ok(self, argv: list[str], what: str) -> None:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{what} failed ({r.returncode}): {r.stderr[-2000:]}")

    def _copy(self, src: Path, name: str) -> Path:
        self.n += 1
        dst = self.work / f"{name}-{self.n}"
        shutil.copytree(src, dst, symlinks=True)
        return dst

    def _fresh(self, name: str) -> Path:
        self.n += 1
        d = self.work / f"{name}-{self.n}"
        d.mkdir(parents=True)
        return d

    def _judge(self, t: Trial, want: Mapping[str, str], got: Mapping[str, str], w: SnapshotWatcher) -> None:
        t.lost += [p for p in sorted(set(want) - set(got))]
        t.corrupt += [f"{p}: {got[p]}" for p in sorted(set(want) & set(got)) if want[p] != got[p]]
        t.corrupt += w.violations
        t.notes += [f"extra {p}" for p in sorted(set(got) - set(want))]
        t.passed = not (t.lost or t.corrupt or t.notes)

    def _rerun(self, t: Trial, argv: list[str], what: str, ok_codes: tuple[int, ...] = (0,)) -> None:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        if r.returncode not in ok_codes:
            t.notes.append(f"{what} exited {r.returncode}: {r.stderr.strip()[-300:]}")

    # -- trials ---------------------------------------------------------------
    def trial_pull(self, rng: Any, kills: int = 1, pinned: bool = False) -> Trial:
        """``kills`` runs of pull, each SIGKILLed at a random moment; then one rerun to the end."""
        t = Trial("pull")
        d = self._fresh("pull")
        if pinned:
            (d / "qwen-fetch.lock").write_text(self.ref_lock)
        with SnapshotWatcher(d / "cache", self.expected) as w:
            for _ in range(kills):
                killed, _rc = kill_after(self.pull(d), rng.uniform(0.05, self.pull_seconds * 1.1))
                t.kills += killed
            self._rerun(t, self.pull(d), "rerun of pull")
            self._rerun(t, self.verify(d), "verify after the rerun")
        self._judge(t, self.ref_digest, cache_digest(d / "cache"), w)
        lock = d / "qwen-fetch.lock"
        if not lock.exists() or lock.read_text() != self.ref_lock:
            t.notes.append("the lockfile differs from a clean pull's")
            t.passed = False
        strays = sorted(p.name for p in d.iterdir() if p.name not in ("cache", "qwen-fetch.lock"))
        if strays:
            t.notes.append(f"stray files beside the lockfile: {strays}")
            t.passed = False
        if t.passed:
            shutil.rmtree(d, ignore_errors=True)
        return t

    def trial_verify(self, rng: Any) -> Trial:
        t = Trial("verify")
        d = self._copy(self.ref, "verify")
        with SnapshotWatcher(d / "cache", self.expected) as w:
            killed, _rc = kill_after(self.verify(d), rng.uniform(0.05, self.verify_seconds * 1.1))
            t.kills += killed
            self._rerun(t, self.verify(d), "rerun of verify")
        self._judge(t, self.ref_digest, cache_digest(d / "cache"), w)
        if t.passed:
            shutil.rmtree(d, ignore_errors=True)
        return t

    def trial_gc(self, rng: Any) -> Trial:
        t = Trial("gc")
        d = self._copy(self.gc_base, "gc")
        with SnapshotWatcher(d / "cache", self.expected) as w:
            killed, _rc = kill_after(self.gc(d), rng.uniform(0.05, self.gc_seconds * 1.1))
            t.kills += killed
            self._rerun(t, self.gc(d), "rerun of gc")
            self._rerun(t, self.verify(d), "verify after gc")
        self._judge(t, self.gc_digest, cache_digest(d / "cache"), w)
        if t.passed:
            shutil.rmtree(d, ignore_errors=True)
        return t

    def trial_concurrent(self, hub: Any, n: int, *, pinned: bool = True, gc_args: tuple[str, ...] = ()) -> Trial:
        """``n`` pulls of the same model into one cache at once, and gc in a loop beside them.

        Every pull must succeed, every file must cross the wire exactly once
        (``hub.bytes_sent``; with ``pinned`` only: unpinned pulls each fetch the
        small git files to hash them), and the cache must equal a clean pull's.
        """
        t = Trial(f"{n} concurrent pulls + gc")
        d = self._fresh(f"conc{n}")
        if pinned:
            (d / "qwen-fetch.lock").write_text(self.ref_lock)
        hub.reset_stats()
        stop = threading.Event()
        gc_codes: list[int] = []
        gc_argv = self.gc(d) + list(gc_args) if pinned else \
            qf_argv("gc", "--cache-dir", str(d / "cache"), "--no-lock", "--yes", "--json", *gc_args)

        def gc_loop() -> None:
            while not stop.is_set():
                r = subprocess.run(gc_argv, capture_output=True, text=True, timeout=300, check=False)
                gc_codes.append(r.returncode)
                if r.returncode not in (0, 2):  # 2: no cache yet / nothing to do is fine
                    t.notes.append(f"gc exited {r.returncode}: {r.stderr.strip()[-300:]}")

        with SnapshotWatcher(d / "cache", self.expected) as w:
            gc_thread = threading.Thread(target=gc_loop, daemon=True)
            gc_thread.start()
            procs = [subprocess.Popen(self.pull(d), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(n)]
            for p in procs:
                _out, err = p.communicate(timeout=600)
                if p.returncode != 0:
                    t.notes.append(f"a pull exited {p.returncode}: {err.strip()[-300:]}")
            stop.set()
            gc_thread.join(timeout=300)
            self._rerun(t, self.verify(d), "verify after the concurrent pulls")
        if not gc_codes:
            t.notes.append("gc never ran")
        self._judge(t, self.ref_digest, cache_digest(d / "cache"), w)
        if pinned:
            for f, want in sorted(self.sizes.items()):
                got = hub.bytes_sent.get(f, 0)
                if got != want:
                    t.notes.append(f"{f}: {got} bytes sent for a {want}-byte file")
        else:
            for f in self.lfs_files:
                if hub.bytes_sent.get(f, 0) != self.sizes[f]:
                    t.notes.append(f"{f}: {hub.bytes_sent.get(f, 0)} bytes sent for a {self.sizes[f]}-byte file")
        lock = d / "qwen-fetch.lock"
        if not lock.exists() or lock.read_text() != self.ref_lock:
            t.notes.append("the lockfile differs from a clean pull's")
        t.passed = not (t.lost or t.corrupt or t.notes)
        if t.passed:
            shutil.rmtree(d, ignore_errors=True)
        return t


def partial_size(p: Path) -> int:
    """A partial's size, 0 once the engine has promoted (renamed) it between the glob and the stat."""
    try:
        return p.stat().st_size
    except FileNotFoundError:
        return 0
