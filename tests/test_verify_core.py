"""The pure verification diff and the parallel hasher, with literal data."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_fetch.core.manifest import PinnedFile
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.core.verify import (
    BLOB_COMPLETE,
    DANGLING,
    NOT_A_LINK,
    NOT_PINNED,
    ORPHAN_PARTS,
    OUTSIDE_BLOBS,
    RESUMABLE,
    WRONG_BLOB,
    BadRef,
    Facts,
    Mismatch,
    Observed,
    Partial,
    VerifyReport,
    check_refs,
    classify_partial,
    compare,
)
from qwen_fetch.store.hasher import HashResult, hash_files, hash_one

SHA_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
SHA_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA_A = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"


def pf(path: str, data: bytes) -> PinnedFile:
    return PinnedFile(path=SafeRelPath(path), size=len(data), sha256=hashlib.sha256(data).hexdigest())


def obs(path: str, data: bytes | None, *, blob: str | None = "auto", link: bool = False) -> Observed:
    sha = hashlib.sha256(data).hexdigest() if data is not None else None
    b = (sha if blob == "auto" else blob) if link else None
    return Observed(path, len(data) if data is not None else None, sha, is_link=link,
                    link=f"../../blobs/{b}" if link else None, blob=b)


def test_literal_digests() -> None:
    assert pf("x", b"abc").sha256 == SHA_ABC
    assert pf("x", b"").sha256 == SHA_EMPTY
    assert pf("x", b"a").sha256 == SHA_A


def test_compare_folder_sorts_every_problem_into_one_report() -> None:
    expected = [pf("b.txt", b"abc"), pf("a.txt", b"a"), pf("z/w.bin", b"abc"), pf("c.json", b"")]
    observed = {
        "b.txt": obs("b.txt", b"abd"),  # flipped byte: same size, other sha
        "a.txt": obs("a.txt", b""),  # truncated
        "c.json": obs("c.json", b""),  # fine
        "zz.extra": obs("zz.extra", b"x"),
        "m.extra": obs("m.extra", b"y"),
    }
    r = compare(expected, observed, model="o/m", commit="c" * 40, location="/d", snapshot=False)
    assert r.missing == ("z/w.bin",)
    assert r.extra == ("m.extra", "zz.extra")
    assert [m.path for m in r.mismatched] == ["a.txt", "b.txt"]
    assert r.mismatched[0] == Mismatch("a.txt", Facts(1, SHA_A), Facts(0, SHA_EMPTY))
    assert r.mismatched[0].fields == ("size", "sha256")
    assert r.mismatched[1].fields == ("sha256",)
    assert r.mismatched[1].expected.sha256 == SHA_ABC
    assert r.bad_links == ()
    assert not r.ok
    assert r.files_checked == 5


def test_compare_snapshot_links() -> None:
    good, other = b"abc", b"a"
    expected = [pf("ok", good), pf("swapped", good), pf("dangling", good), pf("copied", good), pf("away", good)]
    observed = {
        "ok": obs("ok", good, link=True),
        "swapped": obs("swapped", other, link=True),  # points at another (intact) blob
        "dangling": Observed("dangling", None, None, is_link=True, link=f"../../blobs/{SHA_ABC}", blob=SHA_ABC),
        "copied": obs("copied", good, link=False),
        "away": Observed("away", 3, SHA_ABC, is_link=True, link="/elsewhere/x", blob=None),
    }
    r = compare(expected, observed, model="o/m", commit="c", location="/s", snapshot=True)
    problems = {b.path: b.problem for b in r.bad_links}
    assert problems == {"swapped": WRONG_BLOB, "dangling": DANGLING, "copied": NOT_A_LINK, "away": OUTSIDE_BLOBS}
    assert [b.path for b in r.bad_links] == sorted(problems)
    swapped = next(b for b in r.bad_links if b.path == "swapped")
    assert swapped.expected == SHA_ABC and swapped.actual == f"../../blobs/{SHA_A}"
    # The swapped link also reads the wrong bytes; the dangling one has no bytes to compare.
    assert [m.path for m in r.mismatched] == ["swapped"]
    assert r.missing == () and r.extra == ()


def test_clean_snapshot_is_ok() -> None:
    expected = [pf("a", b"abc"), pf("b", b"a")]
    r = compare(expected, {"a": obs("a", b"abc", link=True), "b": obs("b", b"a", link=True)},
                model="o/m", commit="c", location="/s", snapshot=True)
    assert r.ok and r.bytes_hashed == 4


def test_refs_and_partials() -> None:
    refs = {"main": "c1", "v1": "c9", "broken": None}
    assert check_refs("o/m", refs, ["c1", "c2"]) == (
        BadRef("o/m", "broken", None, "empty-or-unreadable"), BadRef("o/m", "v1", "c9", "no-snapshot"))
    names = frozenset({"aa", "aa.incomplete", "bb.incomplete", "bb.incomplete.parts", "cc.incomplete.parts",
                       "dd.incomplete"})
    blobs = frozenset({"aa"})
    pinned = frozenset({"aa", "bb", "cc"})
    assert classify_partial("aa.incomplete", blobs, names, pinned) == BLOB_COMPLETE
    assert classify_partial("bb.incomplete", blobs, names, pinned) == RESUMABLE
    assert classify_partial("bb.incomplete.parts", blobs, names, pinned) == RESUMABLE
    assert classify_partial("cc.incomplete.parts", blobs, names, pinned) == ORPHAN_PARTS
    assert classify_partial("dd.incomplete", blobs, names, pinned) == NOT_PINNED


def test_report_json_shape_and_ok() -> None:
    t = compare([pf("a", b"abc")], {"a": obs("a", b"abd", link=True)}, model="o/m", commit="c" * 40,
                location="/s", snapshot=True)
    resumable = Partial("o/m", "models--o--m/blobs/x.incomplete", 5, RESUMABLE)
    stray = Partial("o/m", "models--o--m/blobs/y.incomplete", 6, NOT_PINNED)
    rep = VerifyReport(targets=(t,), partials=(resumable, stray))
    d = rep.to_dict()
    assert d["ok"] is False
    assert d["counts"] == {"missing": 0, "extra": 0, "mismatched": 1, "bad_links": 1, "bad_refs": 0, "stray": 1}
    m = d["targets"][0]["mismatched"][0]
    assert m == {"path": "a", "fields": ["sha256"], "expected": {"size": 3, "sha256": SHA_ABC},
                 "actual": {"size": 3, "sha256": hashlib.sha256(b"abd").hexdigest()}}
    assert d["stray"] == [stray.to_dict()] and d["partials"] == [resumable.to_dict()]
    # A resumable partial alone is not a failure.
    assert VerifyReport(targets=(), partials=(resumable,)).ok


files_st = st.dictionaries(st.sampled_from(["a", "b", "c/d", "e.bin", "f"]), st.binary(max_size=8), max_size=5)


@settings(max_examples=200, deadline=None)
@given(want=files_st, have=files_st)
def test_compare_partitions_paths(want: dict[str, bytes], have: dict[str, bytes]) -> None:
    expected = [pf(p, d) for p, d in want.items()]
    r = compare(expected, {p: obs(p, d) for p, d in have.items()}, model="o/m", commit="c", location="/",
                snapshot=False)
    mism = {m.path for m in r.mismatched}
    assert set(r.missing) == want.keys() - have.keys()
    assert set(r.extra) == have.keys() - want.keys()
    assert mism == {p for p in want.keys() & have.keys() if want[p] != have[p]}
    assert list(r.missing) == sorted(r.missing) and list(r.extra) == sorted(r.extra)
    assert r.ok == (want == have)


@pytest.mark.parametrize("use_mmap", [True, False])
def test_hash_one_small_buffer_literal(tmp_path: Path, use_mmap: bool) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"abc" * 1000)
    want = hashlib.sha256(b"abc" * 1000).hexdigest()
    seen: list[int] = []
    r = hash_one(p, buffer_size=7, progress=seen.append, use_mmap=use_mmap)  # many short chunks
    assert (r.size, r.sha256, r.error) == (3000, want, None)
    assert sum(seen) == 3000
    (tmp_path / "abc").write_bytes(b"abc")
    (tmp_path / "empty").write_bytes(b"")
    assert hash_one(tmp_path / "abc", use_mmap=use_mmap).sha256 == SHA_ABC
    assert hash_one(tmp_path / "empty", use_mmap=use_mmap) == HashResult(0, SHA_EMPTY)
    assert hash_one(tmp_path / "nope", use_mmap=use_mmap).error


@pytest.mark.parametrize("faster", ["read", "map"])
@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 3 * 1000, 6 * 1000 - 1, 6 * 1000, 6 * 1000 + 1, 20_011])
def test_hash_one_auto_times_both_ways_then_keeps_the_faster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             size: int, faster: str) -> None:
    """Auto mode: windows alternate read/map (the sha256 just continues), then the cheaper way does the rest."""
    from qwen_fetch.store import hasher

    monkeypatch.setattr(hasher, "AUTO_MIN", 1)
    monkeypatch.setattr(hasher, "PROBE_WINDOW", 1000)
    ticks = iter(range(10**6))
    calls: list[str] = []
    real_read, real_map = hasher._span_read, hasher._span_map

    def span_read(*a, **k):  # type: ignore[no-untyped-def]
        calls.append("read")
        return real_read(*a, **k)

    def span_map(*a, **k):  # type: ignore[no-untyped-def]
        calls.append("map")
        return real_map(*a, **k)

    def clock() -> float:
        # each window costs 1 tick; the slower way's windows cost 3 more
        t = next(ticks)
        slow = calls and calls[-1] != faster
        for _ in range(3 if slow else 0):
            t = next(ticks)
        return float(t)

    monkeypatch.setattr(hasher, "_span_read", span_read)
    monkeypatch.setattr(hasher, "_span_map", span_map)
    monkeypatch.setattr(hasher, "_clock", clock)
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    seen: list[int] = []
    r = hash_one(tmp_path / "f", buffer_size=7 if size < 2000 else 4096, progress=seen.append)
    assert (r.size, r.sha256, r.error) == (size, hashlib.sha256(data).hexdigest(), None)
    assert sum(seen) == size
    if size == 0:
        assert calls == ["read"]  # nothing to map
        return
    probes = min(-(-size // 1000), 6)
    assert calls[:probes] == (["read", "map"] * 3)[:probes]
    if size > 6 * 1000:
        assert calls[6:] == [faster] and r.how == faster


def test_hash_one_auto_leaves_small_files_to_readinto(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert hash_one(tmp_path / "f").how == "read"
    assert hash_one(tmp_path / "f", use_mmap=True).how == "map"


def test_hash_files_parallel_dedup_and_errors(tmp_path: Path) -> None:
    datas = {f"f{i}": os.urandom(1000 * i + 1) for i in range(6)}
    for n, d in datas.items():
        (tmp_path / n).write_bytes(d)
    (tmp_path / "abc").write_bytes(b"abc")
    os.symlink("abc", tmp_path / "link-to-abc")
    paths = [tmp_path / n for n in datas] + [tmp_path / "abc", tmp_path / "link-to-abc", tmp_path / "nope"]
    read: list[int] = []
    out = hash_files(paths, workers=3, buffer_size=512, progress=read.append)
    for n, d in datas.items():
        assert out[tmp_path / n].sha256 == hashlib.sha256(d).hexdigest()
    assert out[tmp_path / "abc"].sha256 == SHA_ABC == out[tmp_path / "link-to-abc"].sha256
    assert out[tmp_path / "nope"].sha256 is None and out[tmp_path / "nope"].error
    # The linked file was read once.
    assert sum(read) == sum(len(d) for d in datas.values()) + 3


@pytest.mark.parametrize("use_mmap", [None, True, False])
def test_hash_files_moves_a_files_sha256_between_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         use_mmap: bool | None) -> None:
    """Files are hashed in slices by whichever thread is free: every digest still comes out right."""
    from qwen_fetch.store import hasher

    monkeypatch.setattr(hasher, "SLICE", 4096)
    monkeypatch.setattr(hasher, "AUTO_MIN", 10_000)
    monkeypatch.setattr(hasher, "PROBE_WINDOW", 1024)
    who: dict[int, set[str]] = {}
    real_step = hasher._Job.step

    def step(self, *a, **k):  # type: ignore[no-untyped-def]
        import threading

        who.setdefault(id(self), set()).add(threading.current_thread().name)
        time.sleep(0.001)  # let the other thread in between slices
        return real_step(self, *a, **k)

    monkeypatch.setattr(hasher._Job, "step", step)
    datas = {f"f{i}": os.urandom(n) for i, n in enumerate([300_000, 300_000, 300_000, 170_000, 5000, 0])}
    for name, d in datas.items():
        (tmp_path / name).write_bytes(d)
    out = hash_files([tmp_path / n for n in datas], workers=2, buffer_size=512, use_mmap=use_mmap)
    for name, d in datas.items():
        assert (out[tmp_path / name].size, out[tmp_path / name].sha256) == (len(d), hashlib.sha256(d).hexdigest())
    assert len(set().union(*who.values())) == 2  # both threads worked


class _FakeJob:
    def __init__(self, size: int) -> None:
        self.left = size
        self.result: str | None = None
        self.opened = False


@pytest.mark.parametrize("sizes,workers", [
    ([4900, 4900, 4900, 2700] + [5] * 11, 2),  # Qwen3-VL-8B's shards and small files, in MiB
    ([4900, 4900, 4900, 2700], 3),
    ([8000, 100, 100, 100], 2),  # one file dominates: it bounds the time, whatever the schedule
    ([1000] * 7, 2),
    ([3, 1, 1, 1, 1, 1], 4),
    ([64] * 40, 2),  # many files: few open at once
    ([50] * 3 + [1] * 300, 2),  # a few big files among many one-slice ones
])
def test_board_schedule_is_optimal_within_one_slice(sizes: list[int], workers: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated time: every thread hashes 1 unit per tick, slices of 1 unit (the real sizes scaled)."""
    import heapq

    from qwen_fetch.store import hasher

    monkeypatch.setattr(hasher, "SLICE", 1)
    jobs = [_FakeJob(s) for s in sorted(sizes, reverse=True)]
    board = hasher._Board(jobs, workers)  # type: ignore[arg-type]
    free: list[tuple[int, int, int | None]] = [(0, w, None) for w in range(workers)]  # (time, worker, its last job)
    end = 0
    running: list[tuple[int, int, int]] = []  # (time it ends, worker, job)
    max_open = 0
    ran_on: dict[int, set[int]] = {}
    while free or running:
        if free:
            t, w, prev = heapq.heappop(free)
            i = board.take(prev)
            if i is None:
                end = max(end, t)
                continue
            j = jobs[i]
            j.opened = True
            max_open = max(max_open, sum(1 for x in jobs if x.opened))
            heapq.heappush(running, (t + 1, w, i))
            ran_on.setdefault(i, set()).add(w)
            # never the same job on two threads at once
            assert sum(1 for r in running if r[2] == i) == 1
            continue
        t, w, i = heapq.heappop(running)
        j = jobs[i]
        j.left -= 1
        if j.left <= 0:
            j.result, j.opened = "done", False
        board.release(i)
        heapq.heappush(free, (t, w, i))
        end = max(end, t)
    assert all(j.result == "done" for j in jobs)
    bound = max(max(sizes), -(-sum(sizes) // workers))
    assert end <= bound + 1
    assert max_open <= hasher.MAX_OPEN_FACTOR * workers
    if sizes[:4] == [4900, 4900, 4900, 2700] and workers == 2:
        assert any(len(ws) > 1 for ws in ran_on.values())  # the balance needs a file to change threads
