"""The download engine against a real loopback HTTP server that misbehaves on request.

Every case ends with the exact bytes in the cache or a clean error, and never a
wrong file in ``blobs/``.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from qwen_fetch.core.errors import DiskFullError, ExitCode, IntegrityError, SourceError
from qwen_fetch.core.progress import NullProgress
from qwen_fetch.net import filetask
from qwen_fetch.net.engine import FetchCancelled, fetch_all
from qwen_fetch.net.jobs import FetchJob
from qwen_fetch.net.location import OriginToken
from qwen_fetch.net.partstate import state_path
from qwen_fetch.net.scheduler import part_size_for
from tests.support.hub import Faults, HubServer
from tests.test_engine_support import FAST, make_jobs, make_repo, options

BIG = "model-00001-of-00002.safetensors"
BIG2 = "model-00002-of-00002.safetensors"
FILES = {BIG: 2_000_000, BIG2: 1_234_567, "config.json": 3_000, "tokenizer.json": 100_001, "empty.txt": 0}
NO_STEAL = 1 << 40  # min_split: ranges run to their end, so byte counts are exact


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, str, dict[str, bytes]]:
    return make_repo(tmp_path_factory.mktemp("repo"), FILES)


def assert_cache_exact(jobs: list[FetchJob], data: dict[str, bytes], *, allow_missing: bool = False) -> None:
    """Each blob is either absent (when allowed) or exactly the pinned bytes; no leftovers after success."""
    for j in jobs:
        if j.dest.exists():
            assert j.dest.read_bytes() == data[j.path], j.path
            assert not j.partial.exists() and not state_path(j.partial).exists()
        else:
            assert allow_missing, f"{j.path} missing"


def test_clean_download_many_connections(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    with HubServer(store) as hub:
        jobs = make_jobs(tmp_path, commit, data, [("hub", hub.url)])
        progress = NullProgress()
        out = fetch_all(jobs, FAST, progress)
        assert_cache_exact(jobs, data)
        assert [o.path for o in out] == [j.path for j in jobs]
        assert all(o.source == "hub" and not o.reused and o.failed_sources == () for o in out)
        assert progress.bytes == sum(FILES.values())
        big_ranges = [r["headers"].get("Range") for r in hub.log if r["path"].endswith(BIG)]
        assert len(big_ranges) >= 4 and all(big_ranges)  # split over several range requests
        small = [r["headers"] for r in hub.log if r["path"].endswith("config.json")]
        assert len(small) == 1 and "Range" not in small[0]  # small file: one plain request
        assert not list(tmp_path.rglob("*.incomplete*"))


def test_idle_connection_steals_the_tail_of_a_slow_range(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    # The first response pauses for 2 s after 100 kB: slow, but not a stall (stall_timeout 5 s).
    faults = Faults(stall_after={BIG: 100_000}, stall_times={BIG: 1}, stall_seconds=2.0)
    with HubServer(store, faults) as hub:
        jobs = [j for j in make_jobs(tmp_path, commit, data, [("hub", hub.url)]) if j.path == BIG]
        opts = options(connections=2, steal_after=0.3, stall_timeout=5.0, tail_piece=1 << 40)  # no trimming
        out = fetch_all(jobs, opts, NullProgress())
        assert_cache_exact(jobs, data)
        grid = part_size_for(FILES[BIG], opts) // opts.block_size * opts.block_size
        starts = [int(r["headers"]["Range"][6:].split("-")[0]) for r in hub.log if r["path"].endswith(BIG)]
        assert any(s % grid for s in starts)  # a range that the plan did not make: a stolen tail
        assert out[0].bytes_transferred < FILES[BIG] * 1.2


def test_the_last_ranges_are_trimmed_and_nothing_is_abandoned(repo, tmp_path: Path) -> None:
    """Near the end the queue hands out shrinking shares instead of whole planned ranges, so the
    connections finish together; nothing is cut in flight, so the server sends each byte once."""
    store, commit, data = repo
    with HubServer(store) as hub:
        jobs = [j for j in make_jobs(tmp_path, commit, data, [("hub", hub.url)]) if j.path == BIG]
        opts = options(connections=2, min_split=NO_STEAL)
        fetch_all(jobs, opts, NullProgress())
        assert_cache_exact(jobs, data)
        assert hub.bytes_sent[BIG] == FILES[BIG]
        part = part_size_for(FILES[BIG], opts)
        spans = sorted(tuple(int(x) for x in r["headers"]["Range"][6:].split("-"))
                       for r in hub.log if r["path"].endswith(BIG))
        lengths = [b - a + 1 for a, b in spans]
        assert [a for a, _ in spans[1:]] == [b + 1 for _, b in spans[:-1]] and spans[-1][1] == FILES[BIG] - 1
        assert lengths[0] == part and min(lengths[:-1]) < part  # whole ranges first, trimmed ones at the end
        assert min(lengths[:-1]) >= opts.tail_piece


def test_fast_connections_are_not_split(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    with HubServer(store) as hub:
        jobs = [j for j in make_jobs(tmp_path, commit, data, [("hub", hub.url)]) if j.path == BIG]
        fetch_all(jobs, options(connections=3, part_size=1 << 30, steal_after=60.0), NullProgress())
        assert_cache_exact(jobs, data)
        assert hub.bytes_sent[BIG] == FILES[BIG]


def test_reused_when_blob_exists_and_refetched_when_size_is_wrong(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    with HubServer(store) as hub:
        jobs = make_jobs(tmp_path, commit, data, [("hub", hub.url)])
        fetch_all(jobs, FAST, NullProgress())
        hub.reset_stats()
        jobs[0].dest.write_bytes(b"short")  # a damaged blob from some other tool
        out = fetch_all(jobs, FAST, NullProgress())
        assert [o.reused for o in out] == [False] + [True] * (len(jobs) - 1)
        assert set(hub.bytes_sent) == {jobs[0].path}
        assert_cache_exact(jobs, data)


@pytest.mark.parametrize("faults, note", [
    (Faults(reset_after={BIG: 150_000}, reset_times={BIG: 6}), "connection"),
    (Faults(stall_after={BIG: 100_000}, stall_times={BIG: 1}, stall_seconds=3.0), "stalled"),
    (Faults(statuses={BIG: [(503, {"Retry-After": "0"})] * 2, BIG2: [(429, {"Retry-After": "1"})]}), "HTTP"),
])
def test_transient_failures_are_retried(repo, tmp_path: Path, faults: Faults, note: str) -> None:
    store, commit, data = repo
    with HubServer(store, faults) as hub:
        jobs = make_jobs(tmp_path, commit, data, [("hub", hub.url)])
        progress = NullProgress()
        out = fetch_all(jobs, options(stall_timeout=0.5), progress)
        assert_cache_exact(jobs, data)
        assert sum(o.retries for o in out) >= 1
        assert any(note in n for n in progress.notes), progress.notes
        assert all(o.failed_sources == () for o in out)


def test_a_server_capping_connections_gets_fewer_not_a_failed_pull(repo, tmp_path: Path) -> None:
    """nginx ``limit_conn``: 503 to every request beyond 3 at once.  16 connections must shrink to what the
    server accepts (and probe upward later) instead of burning each range's retries until the pull fails."""
    store, commit, data = repo
    with HubServer(store, Faults(max_concurrent=3, rate=4_000_000)) as hub:
        jobs = make_jobs(tmp_path, commit, data, [("hub", hub.url)])
        progress = NullProgress()
        out = fetch_all(jobs, options(connections=16, max_attempts=4, part_size=128 << 10), progress)
        assert_cache_exact(jobs, data)
        assert all(o.failed_sources == () for o in out)
        assert hub.refused >= 1  # the cap was hit ...
        assert any("connections" in n and "503" in n for n in progress.notes), progress.notes  # ... and said so


def test_server_ignoring_range_gets_one_stream(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    with HubServer(store, Faults(ignore_range={BIG})) as hub:
        jobs = make_jobs(tmp_path, commit, data, [("hub", hub.url)])
        progress = NullProgress()
        out = {o.path: o for o in fetch_all(jobs, FAST, progress)}
        assert_cache_exact(jobs, data)
        assert any("ignores Range" in n for n in progress.notes)
        assert out[BIG].bytes_transferred == FILES[BIG]  # the other connections' 200s are not read too


def test_etag_change_mid_download_restarts_the_file(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    faults = Faults(etag_after={BIG: (2, "changed-etag")}, rate=2_000_000)
    with HubServer(store, faults) as hub:
        jobs = make_jobs(tmp_path, commit, data, [("hub", hub.url)])
        progress = NullProgress()
        fetch_all(jobs, options(connections=2), progress)
        assert_cache_exact(jobs, data)
        assert any("changed on the server" in n for n in progress.notes), progress.notes
        if_ranges = [r["headers"].get("If-Range") for r in hub.log if r["path"].endswith(BIG)]
        assert any(if_ranges)  # later requests carried the recorded ETag


def test_corrupt_first_source_falls_back_to_second(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    with HubServer(store, Faults(corrupt={BIG: 1_500_000})) as bad, HubServer(store) as good:
        jobs = make_jobs(tmp_path, commit, data, [("bad", bad.url), ("good", good.url)])
        out = {o.path: o for o in fetch_all(jobs, options(min_split=NO_STEAL), NullProgress())}
        assert_cache_exact(jobs, data)
        assert out[BIG].source == "good"
        assert [s for s, _ in out[BIG].failed_sources] == ["bad"]
        assert "sha256 mismatch" in out[BIG].failed_sources[0][1]
        assert good.bytes_sent[BIG] == FILES[BIG]  # the restart refetched the whole file


@pytest.mark.parametrize("faults", [
    Faults(content_length={BIG: 123}),  # Content-Length disagrees with the pinned size
    Faults(extra_body={BIG: b"junk"}),  # more bytes than asked for
])
def test_lying_source_is_dropped_without_corruption(repo, tmp_path: Path, faults: Faults) -> None:
    store, commit, data = repo
    with HubServer(store, faults) as bad, HubServer(store) as good:
        jobs = make_jobs(tmp_path, commit, data, [("bad", bad.url), ("good", good.url)])
        out = {o.path: o for o in fetch_all(jobs, options(min_split=NO_STEAL), NullProgress())}
        assert_cache_exact(jobs, data)
        assert out[BIG].source == "good" and out[BIG].failed_sources[0][0] == "bad"


def test_every_source_failing_is_exit_4_naming_each_and_keeps_partials(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    faults = Faults(byte_budget={BIG: 300_000})  # the network dies for good after 300 kB
    with HubServer(store, faults) as flaky, HubServer(store, Faults(down=True)) as down:
        jobs = make_jobs(tmp_path, commit, data, [("flaky", flaky.url), ("down", down.url)])
        opts = options(connections=1, max_attempts=2, single_stream_below=1 << 30)  # one stream per file
        with pytest.raises(SourceError) as info:
            fetch_all(jobs, opts, NullProgress())
        err = info.value
        assert err.exit_code == ExitCode.SOURCE
        text = "\n".join([err.message, *err.context])
        assert BIG in text and "flaky" in text and "down" in text
        assert_cache_exact(jobs, data, allow_missing=True)
        big = next(j for j in jobs if j.path == BIG)
        assert not big.dest.exists() and big.partial.exists() and state_path(big.partial).exists()
        assert sum(1 for j in jobs if j.dest.exists()) == len(jobs) - 1  # the others finished


def test_every_source_corrupt_is_exit_3_and_nothing_promoted(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    with HubServer(store, Faults(corrupt={BIG: 10})) as a, HubServer(store, Faults(corrupt={BIG: 20})) as b:
        jobs = make_jobs(tmp_path, commit, data, [("a", a.url), ("b", b.url)])
        with pytest.raises(IntegrityError) as info:
            fetch_all(jobs, FAST, NullProgress())
        assert info.value.exit_code == ExitCode.INTEGRITY
        assert "sha256 mismatch" in "\n".join(info.value.context)
        assert_cache_exact(jobs, data, allow_missing=True)
        assert not next(j for j in jobs if j.path == BIG).dest.exists()


def _interrupted_run(store, commit, data, cache: Path, after: int) -> list[FetchJob]:
    """A first run that dies on BIG after ``after`` bytes (both attempts), leaving a partial and its state."""
    with HubServer(store, Faults(reset_after={BIG: after})) as hub:
        jobs = make_jobs(cache, commit, data, [("hub", hub.url)])
        with pytest.raises(SourceError):
            fetch_all(jobs, options(connections=1, max_attempts=1, single_stream_below=1 << 30), NullProgress())
    return jobs


def test_resume_transfers_only_missing_bytes(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    _interrupted_run(store, commit, data, tmp_path, after=1_100_000)
    with HubServer(store) as hub:
        jobs = make_jobs(tmp_path, commit, data, [("hub", hub.url)])
        out = {o.path: o for o in fetch_all(jobs, options(min_split=NO_STEAL), NullProgress())}
        assert_cache_exact(jobs, data)
        resumed = out[BIG].resumed_bytes
        # What reached disk in steps survives, not only whole blocks: at most a step short of the cut.
        assert 1_100_000 - FAST.step_size < resumed <= 1_100_000
        assert resumed % FAST.block_size  # ... here part of the way into block 16
        assert hub.bytes_sent[BIG] == FILES[BIG] - resumed
        assert out[BIG].bytes_transferred == FILES[BIG] - resumed
        big_headers = [r["headers"] for r in hub.log if r["path"].endswith(BIG)]
        assert all(h.get("If-Range") for h in big_headers)  # the ETag from the first run is checked
        assert f"bytes={resumed}-" in " ".join(h["Range"] for h in big_headers)  # the rerun starts mid-block


def test_a_dropped_connection_resumes_mid_block(repo, tmp_path: Path) -> None:
    """The bytes a connection wrote before it dropped are not fetched again: the retry starts after them."""
    store, commit, data = repo
    with HubServer(store, Faults(reset_after={BIG: 150_000}, reset_times={BIG: 1})) as hub:
        jobs = [j for j in make_jobs(tmp_path, commit, data, [("hub", hub.url)]) if j.path == BIG]
        out = fetch_all(jobs, options(connections=1, single_stream_below=1 << 30), NullProgress())
        assert_cache_exact(jobs, data)
        assert out[0].retries == 1
        starts = [int(r["headers"].get("Range", "bytes=0-")[6:].split("-")[0])
                  for r in hub.log if r["path"].endswith(BIG)]
        assert len(starts) == 2 and starts[0] == 0
        assert 150_000 - FAST.step_size < starts[1] <= 150_000 and starts[1] % FAST.block_size  # mid-block
        assert hub.bytes_sent[BIG] == FILES[BIG] + 150_000 - starts[1]


@pytest.mark.parametrize("damage", ["flip", "flip_head", "truncate", "garbage_state"])
def test_damaged_partial_is_repaired_on_resume(repo, tmp_path: Path, damage: str) -> None:
    store, commit, data = repo
    first = _interrupted_run(store, commit, data, tmp_path, after=1_100_000)
    big = next(j for j in first if j.path == BIG)
    raw = bytearray(big.partial.read_bytes())
    if damage in ("flip", "flip_head"):
        # inside a block the state says is done, or inside the written head of block 16 (from 1_048_576)
        raw[200_000 if damage == "flip" else 1_090_000] ^= 0xFF
        big.partial.write_bytes(bytes(raw))
    elif damage == "truncate":
        big.partial.write_bytes(bytes(raw[:500_000]))
    else:
        state_path(big.partial).write_text("{not json")
    with HubServer(store) as hub:
        jobs = make_jobs(tmp_path, commit, data, [("hub", hub.url)])
        progress = NullProgress()
        out = {o.path: o for o in fetch_all(jobs, options(min_split=NO_STEAL), progress)}
        assert_cache_exact(jobs, data)
        assert hub.bytes_sent[BIG] == FILES[BIG] - out[BIG].resumed_bytes
        assert out[BIG].resumed_bytes < 1_100_000
        if damage == "flip_head":
            assert out[BIG].resumed_bytes == 16 * FAST.block_size  # every whole block, not the damaged head
        assert any("damaged" in n or "discarding" in n for n in progress.notes), progress.notes


def test_same_job_in_two_threads_downloads_once(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    with HubServer(store, Faults(rate=4_000_000)) as hub:
        results: list[object] = []

        def run() -> None:
            jobs = [j for j in make_jobs(tmp_path, commit, data, [("hub", hub.url)]) if j.path == BIG]
            results.append(fetch_all(jobs, options(min_split=NO_STEAL), NullProgress())[0])

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(o.reused for o in results) == [False, True]  # type: ignore[attr-defined]
        assert hub.bytes_sent[BIG] == FILES[BIG]
        assert next(iter(make_jobs(tmp_path, commit, {BIG: data[BIG]}, [("h", hub.url)]))).dest.read_bytes() \
            == data[BIG]


def test_disk_full_names_the_bytes_needed_and_keeps_partials(repo, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store, commit, data = repo
    real = os.pwrite
    written = [0]

    def pwrite(fd: int, buf: object, offset: int) -> int:
        if written[0] > 500_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, buf, offset)  # type: ignore[arg-type]
        written[0] += n
        return n

    monkeypatch.setattr(filetask.os, "pwrite", pwrite)
    with HubServer(store) as hub:
        jobs = make_jobs(tmp_path, commit, data, [("hub", hub.url)])
        with pytest.raises(DiskFullError) as info:
            fetch_all(jobs, FAST, NullProgress())
        assert info.value.exit_code == ExitCode.SOURCE
        assert "still needed" in info.value.message and "MB" in info.value.message
        assert_cache_exact(jobs, data, allow_missing=True)
        assert any(state_path(j.partial).exists() for j in jobs)


def test_cancel_stops_and_keeps_state_for_resume(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    cancel = threading.Event()

    class CancelHalfway(NullProgress):
        def advance(self, nbytes: int) -> None:
            super().advance(nbytes)
            if self.bytes > 800_000:
                cancel.set()

    with HubServer(store, Faults(rate=2_000_000)) as hub:
        jobs = make_jobs(tmp_path, commit, data, [("hub", hub.url)])
        with pytest.raises(FetchCancelled):
            fetch_all(jobs, options(connections=2), CancelHalfway(), cancel=cancel)
        assert_cache_exact(jobs, data, allow_missing=True)
        assert any(state_path(j.partial).exists() for j in jobs)
        out = fetch_all(jobs, FAST, NullProgress())
        assert_cache_exact(jobs, data)
        assert sum(o.resumed_bytes for o in out) > 0


def test_redirect_to_cdn_keeps_the_token_on_the_endpoint(repo, tmp_path: Path) -> None:
    store, commit, data = repo
    with HubServer(store) as cdn, HubServer(store, Faults(redirect_base=cdn.url.replace("127.0.0.1", "localhost"))) \
            as origin:
        jobs = make_jobs(tmp_path, commit, data, [("hub", origin.url)], token=OriginToken("hf_secret", origin.url))
        fetch_all(jobs, FAST, NullProgress())
        assert_cache_exact(jobs, data)
        assert cdn.log and all("Authorization" not in r["headers"] for r in cdn.log)
        assert all(r["headers"].get("Authorization") == "Bearer hf_secret" for r in origin.log)


def test_a_resumed_file_gets_the_root_of_all_its_bytes(repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The root of a file finished by a second run covers the prefix the first run left (read back on resume)."""
    from qwen_fetch.core import digests

    monkeypatch.setattr(digests, "CHUNK", 300_000)  # BIG spans several chunks
    store, commit, data = repo
    _interrupted_run(store, commit, data, tmp_path, after=1_100_000)
    with HubServer(store) as hub:
        jobs = make_jobs(tmp_path, commit, data, [("hub", hub.url)])
        out = {o.path: o for o in fetch_all(jobs, options(min_split=NO_STEAL), NullProgress())}
    assert out[BIG].resumed_bytes > 0
    assert out[BIG].root is not None and out[BIG].root.value == digests.chunk_root(data[BIG])
    assert out[BIG2].reused and out[BIG2].root is None  # finished by the first run: not read again
