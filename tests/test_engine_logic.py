"""Table-driven tests for the engine's pure parts: ranges, splits, backoff, response checks, resume state."""

from __future__ import annotations

import hashlib
import os
import zlib

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwen_fetch.core.ranges import (
    backoff_delay,
    missing_runs,
    parse_content_range,
    parse_retry_after,
    plan_ranges,
    retry_delay,
    split_point,
)
from qwen_fetch.net.partstate import (
    BadState,
    PartState,
    block_sum,
    block_summer,
    head_line,
    journal_line,
    parse_state,
    verify_partial,
)
from qwen_fetch.net.rangeget import RangeRequest, Retryable, SourceFailed, check_response, request_headers

KB = 1024
SHA = "a" * 64


@pytest.mark.parametrize("done, runs", [
    ([], []),
    ([True, True], []),
    ([False], [(0, 1)]),
    ([False, True, False, False], [(0, 1), (2, 4)]),
    ([True, False, False, True], [(1, 3)]),
])
def test_missing_runs(done: list[bool], runs: list[tuple[int, int]]) -> None:
    assert missing_runs(done) == runs


@pytest.mark.parametrize("done, size, part, single_below, expected", [
    # nothing done, big file: parts of 2 blocks (block = 10), last one short
    ([False] * 5, 45, 20, 0, [(0, 20), (20, 40), (40, 45)]),
    # part size not a multiple of the block: rounded down to whole blocks
    ([False] * 5, 45, 25, 0, [(0, 20), (20, 40), (40, 45)]),
    # done blocks in the middle split the plan; ranges never cover done blocks
    ([False, True, False, False, False], 45, 20, 0, [(0, 10), (10 * 2, 40), (40, 45)]),
    # small file: one range per missing run, not split by part size
    ([False] * 5, 45, 10, 100, [(0, 45)]),
    ([False, True, False, False, False], 45, 10, 100, [(0, 10), (20, 45)]),
    ([True] * 5, 45, 20, 0, []),
    ([], 0, 20, 0, []),
])
def test_plan_ranges(done: list[bool], size: int, part: int, single_below: int,
                     expected: list[tuple[int, int]]) -> None:
    assert plan_ranges(done, size, 10, part, single_below) == expected


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 9), st.integers(1, 50))
def test_plan_covers_exactly_the_missing_blocks(done: list[bool], tail: int, part: int) -> None:
    size = max(0, (len(done) - 1) * 10 + tail) if done else 0
    covered: set[int] = set()
    for s, e in plan_ranges(done, size, 10, part, 0):
        assert s % 10 == 0 and (e % 10 == 0 or e == size) and s < e
        blocks = set(range(s // 10, (e + 9) // 10))
        assert not covered & blocks
        covered |= blocks
    assert covered == {i for i, d in enumerate(done) if not d}


@pytest.mark.parametrize("pos, end, min_piece, cut", [
    (0, 100, 10, 50),  # halve
    (0, 95, 10, 50),  # cut rounded up to a block boundary
    (40, 100, 10, 70),
    (0, 20, 10, 10),  # two blocks: one each
    (0, 15, 10, None),  # the tail would be under a block
    (0, 30, 20, None),  # halves under min_piece
    (90, 100, 10, None),  # only the block being filled is left
])
def test_split_point(pos: int, end: int, min_piece: int, cut: int | None) -> None:
    assert split_point(pos, end, 10, min_piece) == cut


@pytest.mark.parametrize("value, parsed", [
    ("bytes 0-9/100", (0, 10, 100)),
    ("bytes 10-10/*", (10, 11, None)),
    ("BYTES 5-9/10", (5, 10, 10)),
    ("bytes 9-5/10", None),
    ("bytes */100", None),
    ("items 0-9/100", None),
    ("", None),
    (None, None),
])
def test_parse_content_range(value: str | None, parsed: tuple[int, int, int | None] | None) -> None:
    assert parse_content_range(value) == parsed


@pytest.mark.parametrize("failures, jitter, delay", [
    (1, 0.0, 0.25), (1, 0.999999, 0.5), (3, 0.0, 1.0), (10, 0.0, 5.0), (10, 0.999999, 10.0),
])
def test_backoff_grows_and_is_capped(failures: int, jitter: float, delay: float) -> None:
    assert backoff_delay(failures, 0.5, 10.0, jitter) == pytest.approx(delay, abs=1e-5)


@pytest.mark.parametrize("retry_after, delay", [
    (None, 0.25),  # plain backoff
    (3.0, 3.0),  # the server asks for longer: honour it
    (0.0, 0.25),  # shorter than the backoff: keep the backoff
    (999.0, 10.0),  # capped
])
def test_retry_delay_honours_retry_after(retry_after: float | None, delay: float) -> None:
    assert retry_delay(1, retry_after, 0.5, 10.0, 0.0) == pytest.approx(delay)


@pytest.mark.parametrize("value, seconds", [
    ("7", 7.0), (" 0 ", 0.0), ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0), ("soon", None), (None, None),
])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=40.0) == seconds


def _h(**kw: str) -> httpx.Headers:
    return httpx.Headers({k.replace("_", "-"): v for k, v in kw.items()})


RANGE = RangeRequest(100, 200, 1000, if_range='"etag"')
WHOLE = RangeRequest(0, 1000, 1000)


@pytest.mark.parametrize("req, status, headers, result", [
    (RANGE, 206, _h(Content_Range="bytes 100-199/1000", Content_Length="100"), (100, 200)),
    (RANGE, 206, _h(Content_Range="bytes 100-199/1000"), (100, 200)),  # chunked: length checked while reading
    (RANGE, 200, _h(Content_Length="1000"), (0, 1000)),  # Range ignored: whole body, caller skips
    (WHOLE, 200, _h(Content_Length="1000"), (0, 1000)),
    (RANGE, 206, _h(Content_Range="bytes 0-99/1000"), Retryable),  # not what we asked
    (RANGE, 206, _h(Content_Range="bytes 100-299/1000"), Retryable),
    (RANGE, 206, _h(Content_Range="junk"), Retryable),
    (RANGE, 206, _h(Content_Range="bytes 100-199/999"), SourceFailed),  # another file than pinned
    (RANGE, 206, _h(Content_Range="bytes 100-199/1000", Content_Length="101"), SourceFailed),
    (WHOLE, 200, _h(Content_Length="999"), SourceFailed),
    (WHOLE, 200, _h(Content_Length="1001"), SourceFailed),
    (WHOLE, 206, _h(Content_Range="bytes 0-999/1000"), Retryable),  # 206 to a request without Range
    (RANGE, 503, _h(Retry_After="2"), Retryable),
    (RANGE, 429, _h(), Retryable),
    (RANGE, 404, _h(), SourceFailed),
    (RANGE, 403, _h(), SourceFailed),
    (RANGE, 416, _h(), SourceFailed),
    (RANGE, 301, _h(), SourceFailed),
])
def test_check_response(req: RangeRequest, status: int, headers: httpx.Headers,
                        result: tuple[int, int] | type[Exception]) -> None:
    if isinstance(result, tuple):
        assert check_response(req, status, headers) == result
    else:
        with pytest.raises(result):
            check_response(req, status, headers)


def test_retry_after_reaches_the_retry() -> None:
    with pytest.raises(Retryable) as info:
        check_response(RANGE, 429, _h(Retry_After="12"))
    assert info.value.retry_after == 12.0


@pytest.mark.parametrize("status, throttled", [(429, True), (503, True), (500, False), (502, False), (504, False),
                                              (408, False)])
def test_only_429_and_503_say_too_many(status: int, throttled: bool) -> None:
    """429/503 make the engine use fewer connections; other transient statuses only retry."""
    with pytest.raises(Retryable) as info:
        check_response(RANGE, status, _h())
    assert info.value.throttled is throttled


@pytest.mark.parametrize("req, headers", [
    (WHOLE, {"Accept-Encoding": "identity"}),
    (RANGE, {"Accept-Encoding": "identity", "Range": "bytes=100-199", "If-Range": '"etag"'}),
    (RangeRequest(0, 10, 1000, if_range='W/"weak"'), {"Accept-Encoding": "identity", "Range": "bytes=0-9"}),
    (RangeRequest(0, 10, 1000), {"Accept-Encoding": "identity", "Range": "bytes=0-9"}),
])
def test_request_headers(req: RangeRequest, headers: dict[str, str]) -> None:
    assert request_headers(req) == headers


# -- resume state -------------------------------------------------------------------

def _state_json(**over: object) -> str:
    import json

    base: dict[str, object] = {"version": 2, "size": 25, "sha256": SHA, "block_size": 10, "source": "hf",
                               "etag": '"e"', "sums": [1, None, 3]}
    base.update(over)
    return json.dumps(base)


def test_parse_state_accepts_its_own_output() -> None:
    st_ = parse_state(_state_json(), size=25, sha256=SHA, block_size=10)
    assert st_.sums == (1, None, 3) and st_.etag == '"e"' and st_.source == "hf" and st_.done_blocks == 2
    assert parse_state(st_.to_json(), size=25, sha256=SHA, block_size=10) == st_


@pytest.mark.parametrize("journal, sums", [
    ("", (1, None, 3)),
    ("[1,7]\n", (1, 7, 3)),  # a block finished after the snapshot
    ("[1,7]\n[0,9]\n", (9, 7, 3)),  # a later line wins (block rewritten)
    ("[1,7]\n[2,", (1, 7, 3)),  # torn last line: ignored
    ("[1,7]\n[5,1]\n[2,8]\n", (1, 7, 3)),  # out of range: the journal ends there, nothing after is trusted
    ("[1,-1]\n", (1, None, 3)),
    ("[true,1]\n", (1, None, 3)),
    (f"[1,{2**64}]\n", (1, None, 3)),  # wider than a 64-bit checksum
])
def test_parse_state_applies_the_journal(journal: str, sums: tuple[int | None, ...]) -> None:
    assert parse_state(_state_json() + "\n" + journal, size=25, sha256=SHA, block_size=10).sums == sums


def test_journal_line_roundtrip() -> None:
    text = _state_json() + "\n" + journal_line(1, 2**64 - 1).decode()
    assert parse_state(text, size=25, sha256=SHA, block_size=10).sums == (1, 2**64 - 1, 3)


@pytest.mark.parametrize("text", [
    "not json", "[]", _state_json(version=3), _state_json(version=True), _state_json(size=26),
    _state_json(sha256="b" * 64), _state_json(block_size=20), _state_json(sums=[1, 2]),
    _state_json(sums=[1, 2, 2**64]), _state_json(sums=[1, "x", 3]), _state_json(sums=[1, True, 3]),
    _state_json(sums=None), _state_json(etag=5),
    _state_json(version=1),  # a version 1 state keeps its crc32s under "crc", not "sums"
    _state_json(version=1, sums=None, crc=[1, 2**32, 3]),  # a crc32 is 32 bits
])
def test_parse_state_rejects(text: str) -> None:
    with pytest.raises(BadState):
        parse_state(text, size=25, sha256=SHA, block_size=10)


@given(st.lists(st.one_of(st.none(), st.integers(0, 2**64 - 1)), min_size=1, max_size=40),
       st.one_of(st.none(), st.text(max_size=20)), st.text(max_size=10))
def test_state_roundtrip(sums: list[int | None], etag: str | None, source: str) -> None:
    size = len(sums) * 10 - 3
    s = PartState(size=size, sha256=SHA, block_size=10, sums=tuple(sums), source=source, etag=etag)
    assert parse_state(s.to_json(), size=size, sha256=SHA, block_size=10) == s


@pytest.mark.parametrize("journal, sums, heads", [
    ("[1,4,7]\n", (1, None, 3), ((1, 4, 7),)),  # the first 4 bytes of block 1 are written
    ("[1,4,7]\n[1,8,9]\n", (1, None, 3), ((1, 8, 9),)),  # a longer head replaces the shorter
    ("[1,4,7]\n[1,5]\n", (1, 5, 3), ()),  # the block finished: its head is gone
    ("[2,3,7]\n", (1, None, 3), ()),  # a head of a finished block means nothing
    ("[1,4,7]\n[1,0,1]\n[1,9]\n", (1, None, 3), ((1, 4, 7),)),  # an empty head ends the journal
    ("[1,10,1]\n[1,9]\n", (1, None, 3), ()),  # ... and a head as long as its block
    ("[2,5,1]\n", (1, None, 3), ()),  # ... and one past a short last block (5 bytes): ends it
    ("[3,1,1]\n[1,9]\n", (1, None, 3), ()),  # ... and a block out of range
    (f"[1,4,{2**64}]\n[1,9]\n", (1, None, 3), ()),  # ... and a sum wider than 64 bits
    ("[1,4,7,1]\n[1,9]\n", (1, None, 3), ()),  # ... and a line of four
])
def test_parse_state_applies_head_lines(journal: str, sums: tuple[int | None, ...],
                                        heads: tuple[tuple[int, int, int], ...]) -> None:
    state = parse_state(_state_json() + "\n" + journal, size=25, sha256=SHA, block_size=10)
    assert (state.sums, state.heads) == (sums, heads)


def test_head_lines_after_a_version_1_snapshot_end_its_journal() -> None:
    text = _state_json(version=1, sums=None, crc=[1, None, 3]) + "\n" + head_line(1, 4, 7).decode() + "[1,9]\n"
    state = parse_state(text, size=25, sha256=SHA, block_size=10)
    assert state.sums == (1, None, 3) and state.heads == ()


def test_snapshot_heads_roundtrip_and_bad_ones_are_rejected() -> None:
    s = PartState(size=25, sha256=SHA, block_size=10, sums=(1, None, None), heads=((1, 4, 7), (2, 2, 0)))
    assert parse_state(s.to_json(), size=25, sha256=SHA, block_size=10) == s
    assert '"heads"' not in PartState(size=25, sha256=SHA, block_size=10, sums=(1, None, 3)).to_json()
    for heads in ([[0, 4, 7]],  # the block is finished
                  [[1, 4, 7], [1, 5, 7]],  # two heads for one block
                  [[1, 10, 7]], [[1, 0, 7]], [[1, 4, -1]], [[1, 4]], [1, 4, 7], "x"):
        with pytest.raises(BadState):
            parse_state(_state_json(heads=heads), size=25, sha256=SHA, block_size=10)


def test_a_running_block_sum_equals_the_one_shot_sum() -> None:
    data = os.urandom(1 << 20)
    summer = block_summer()
    for lo, hi in ((0, 1), (1, 70_000), (70_000, 70_000), (70_000, 600_001), (600_001, 1 << 20)):
        summer.update(memoryview(data)[lo:hi])
        assert summer.intdigest() == block_sum(data[:hi])


def test_verify_partial_keeps_intact_heads_and_drops_damaged_ones(tmp_path: object) -> None:
    data, fd = _damaged_partial(tmp_path)  # block 1 corrupted at byte 300, the file cut at 900
    state = PartState(size=1024, sha256=SHA, block_size=256, sums=(block_sum(data[:256]), None, None, None),
                      heads=((1, 40, block_sum(data[256:296])),  # before the damage: kept
                             (2, 100, block_sum(data[512:612])),  # intact: kept
                             (3, 200, block_sum(data[768:968]))))  # past the end of the file: dropped
    try:
        v = verify_partial(fd, state)
    finally:
        os.close(fd)
    assert v.heads == {1: (40, block_sum(data[256:296])), 2: (100, block_sum(data[512:612]))}
    assert v.bad_blocks == 1
    state = PartState(size=1024, sha256=SHA, block_size=256, sums=(None,) * 4,
                      heads=((1, 60, block_sum(data[256:316])),))  # spans the flipped byte: dropped
    fd = os.open(os.path.join(str(tmp_path), "p"), os.O_RDONLY)
    try:
        v = verify_partial(fd, state)
    finally:
        os.close(fd)
    assert v.heads == {} and v.bad_blocks == 1


def _damaged_partial(tmp_path: object) -> tuple[bytes, int]:
    """1024 bytes in 4 blocks of 256 on disk with block 1 corrupted and block 3 truncated; an open fd."""
    from pathlib import Path

    data = bytes(range(256)) * 4
    path = Path(str(tmp_path)) / "p"
    damaged = bytearray(data)
    damaged[300] ^= 1  # block 1 corrupted on disk
    path.write_bytes(bytes(damaged[:900]))  # block 3 truncated
    return data, os.open(path, os.O_RDONLY)


def test_verify_partial_keeps_only_intact_blocks(tmp_path: object) -> None:
    data, fd = _damaged_partial(tmp_path)
    sums = tuple(block_sum(data[i:i + 256]) for i in range(0, 1024, 256))
    state = PartState(size=1024, sha256=SHA, block_size=256, sums=(sums[0], sums[1], None, sums[3]))
    try:
        v = verify_partial(fd, state)
    finally:
        os.close(fd)
    assert v.sums == [sums[0], None, None, None]
    assert v.bad_blocks == 2
    assert v.hashed_blocks == 1 and v.hasher.hexdigest() == hashlib.sha256(data[:256]).hexdigest()


def test_a_version_1_state_is_checked_with_crc32_and_comes_back_in_xxh3(tmp_path: object) -> None:
    """A partial left by a release that journaled zlib.crc32s resumes: nothing intact is fetched again."""
    import json

    data, fd = _damaged_partial(tmp_path)
    crcs = [zlib.crc32(data[i:i + 256]) for i in range(0, 1024, 256)]
    text = json.dumps({"version": 1, "size": 1024, "sha256": SHA, "block_size": 256, "source": "hf",
                       "etag": None, "crc": [crcs[0], None, crcs[2], crcs[3]]})
    text += "\n" + journal_line(1, crcs[1]).decode()
    state = parse_state(text, size=1024, sha256=SHA, block_size=256)
    assert state.version == 1 and state.sums == tuple(crcs)
    try:
        v = verify_partial(fd, state)
    finally:
        os.close(fd)
    assert v.sums == [block_sum(data[:256]), None, block_sum(data[512:768]), None]
    assert v.bad_blocks == 2 and v.hashed_blocks == 1


@pytest.mark.parametrize("cheap", [16 * 1024, 256 * 1024])
def test_piece_chooser_alternates_then_keeps_the_cheaper_size(cheap: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from qwen_fetch.net import filetask

    monkeypatch.setattr(filetask, "PROBE_BYTES", 4 << 20)
    monkeypatch.setattr(filetask, "REPROBE_AFTER", 8 << 20)
    chooser = filetask.PieceChooser()
    used: list[int] = []
    mib = 1 << 20
    for _ in range(8):  # 4 MiB in each size
        piece = chooser.next()
        used.append(piece)
        chooser.record(piece, mib, 0.001 if piece == cheap else 0.006)
    assert used == [16 * 1024, 256 * 1024] * 4  # alternating
    assert chooser.chosen == cheap and chooser.next() == cheap
    chooser.record(cheap, mib, 99.0)  # decided: timings while decided change nothing
    assert chooser.chosen == cheap
    for _ in range(7):  # 8 MiB written with the choice: compare again
        chooser.record(cheap, mib, 0.001)
    assert chooser.chosen is None and chooser.next() == 16 * 1024
    other = 256 * 1024 if cheap == 16 * 1024 else 16 * 1024
    for _ in range(8):  # now the other size is the cheaper
        piece = chooser.next()
        chooser.record(piece, mib, 0.001 if piece == other else 0.006)
    assert chooser.chosen == other


def test_blocks_are_written_whole_whichever_piece_size(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """write_block writes exactly the block in either piece size, times only writes of a step or more, and
    journals it."""
    import threading
    from pathlib import Path

    from qwen_fetch.core.paths import safe_relpath
    from qwen_fetch.net import filetask
    from qwen_fetch.net.jobs import FetchJob

    d = Path(str(tmp_path))
    bs = 1 << 20
    data = os.urandom(3 * bs + 12345)
    job = FetchJob(path=safe_relpath("f.bin"), size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   dest=d / "f", partial=d / "f.incomplete", lock=d / "f.lock", locations=())
    t = filetask.FileTask(job, 0, bs)
    t.open_partial()
    ticks = iter(range(1000))
    monkeypatch.setattr(filetask, "_clock", lambda: float(next(ticks)))
    seen: list[tuple[int, int]] = []
    chooser = filetask.PieceChooser()
    real = chooser.record
    monkeypatch.setattr(chooser, "record", lambda p, n, s: (seen.append((p, n)), real(p, n, s)))
    cond = threading.Condition()
    for b in range(4):
        view = memoryview(data)[b * bs:(b + 1) * bs]
        assert t.write_block(t.gen, b, view, block_sum(view), cond, chooser)
    with open(job.partial, "rb") as fh:
        assert fh.read() == data
    assert seen == [(16 * 1024, bs), (256 * 1024, bs), (16 * 1024, bs)]  # the short last block is not timed
    assert t.done_count == 4
    t.release_files()


def test_a_fresh_start_replaces_the_partial_file_instead_of_truncating_it(tmp_path: object) -> None:
    """No resume state: the stale partial is removed and a new file created, never truncated to length 0.

    ext4 marks a file truncated to 0 for writeback when it is closed, and a killed pull's files are closed by the
    kernel while its sockets are still open: it lingered in throttled writeback, still receiving.
    """
    from pathlib import Path

    from qwen_fetch.core.paths import safe_relpath
    from qwen_fetch.net import filetask
    from qwen_fetch.net.jobs import FetchJob

    d = Path(str(tmp_path))
    job = FetchJob(path=safe_relpath("f.bin"), size=100, sha256=SHA, dest=d / "f", partial=d / "f.incomplete",
                   lock=d / "f.lock", locations=())
    job.partial.write_bytes(b"stale bytes of no known state" * 10)
    calls: list[tuple[int, int]] = []
    real = os.ftruncate
    try:
        os.ftruncate = lambda fd, n: (calls.append((fd, n)), real(fd, n))[1]  # type: ignore[assignment]
        t = filetask.FileTask(job, 0, 10)
        assert t.open_partial() == []
    finally:
        os.ftruncate = real
    assert calls == []
    assert job.partial.stat().st_size == 0
    t.release_files()


def test_heads_written_this_run_survive_a_compaction_unless_the_file_was_forgotten(tmp_path: object) -> None:
    """A snapshot rewrites the journal away, so it must carry the heads written since; a head written before
    the file changed course (``forget``) must not come back, its bytes belong to the abandoned version."""
    import threading
    from pathlib import Path

    from qwen_fetch.core.paths import safe_relpath
    from qwen_fetch.net import filetask
    from qwen_fetch.net.jobs import FetchJob
    from qwen_fetch.net.partstate import load_state, state_path

    d = Path(str(tmp_path))
    data = os.urandom(40)
    job = FetchJob(path=safe_relpath("f.bin"), size=40, sha256=SHA, dest=d / "f", partial=d / "f.incomplete",
                   lock=d / "f.lock", locations=())
    t = filetask.FileTask(job, 0, 10)
    t.open_partial()
    cond = threading.Condition()
    t.save(cond)
    view = memoryview(data)
    assert t.write_head(t.gen, 1, 0, view[10:14], block_sum(data[10:14]))
    assert t.write_head(t.gen, 2, 0, view[20:23], block_sum(data[20:23]))
    assert t.write_block(t.gen, 2, view[23:30], block_sum(data[20:30]), cond, offset=3)
    t.save(cond)  # compaction: the snapshot replaces the journal lines
    state = load_state(state_path(job.partial), size=40, sha256=SHA, block_size=10)
    assert state is not None and state.heads == ((1, 4, block_sum(data[10:14])),)
    assert state.sums == (None, None, block_sum(data[20:30]), None)
    with cond:
        t.gen += 1
        t.forget()
    t.save(cond)
    state = load_state(state_path(job.partial), size=40, sha256=SHA, block_size=10)
    assert state is not None and state.heads == () and state.sums == (None,) * 4
    assert not t.write_head(t.gen - 1, 3, 0, view[30:35], 0)  # an older generation writes nothing
    t.release_files()


def test_readinto_some_returns_what_arrived_and_keeps_the_connection(tmp_path: object) -> None:
    """The body reader takes what the socket has (here: the 5000 bytes sent before a pause), not a full
    buffer, counts down Content-Length, and leaves a fully read connection reusable."""
    from pathlib import Path

    from qwen_fetch.net.h1 import BODY
    from qwen_fetch.net.http import make_client
    from qwen_fetch.net.rangeget import body_reader
    from tests.support.hub import Faults, HubServer
    from tests.test_engine_support import REPO, make_repo

    store, commit, files = make_repo(Path(str(tmp_path)), {"a.bin": 300_000})
    client = make_client(timeout=10.0)
    with HubServer(store, Faults(stall_after={"a.bin": 5000}, stall_times={"a.bin": 1}, stall_seconds=1.0)) as hub:
        url = f"{hub.url}/{REPO}/resolve/{commit}/a.bin"
        for attempt in range(2):  # the first response pauses after 5000 bytes, the second does not
            with client.stream("GET", url) as resp:
                assert resp.extensions.get(BODY) is not None
                readinto = body_reader(resp)
                buf = memoryview(bytearray(400_000))
                got, reads = 0, []
                while n := readinto(buf[got:]):
                    reads.append(n)
                    got += n
                assert bytes(buf[:got]) == files["a.bin"]
                if attempt == 0:  # what had arrived before the pause (a thread late by a second would get more)
                    assert reads[0] < len(files["a.bin"]) and len(reads) >= 2
                assert readinto(buf) == 0
    client.close()
    assert len(hub.log) == 2 and len({r["port"] for r in hub.log}) == 1  # one connection for both requests


def test_default_connections_follow_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """48 on 2 cores (64 oversubscribe them: no faster, more bytes lost by a killed pull), 64 from 3 cores up
    (more cores still gain from 64); a taskset/cpuset counts, not the host's cores."""
    from qwen_fetch.net import jobs

    assert [jobs.default_connections(n) for n in (1, 2, 3, 16, 128)] == [24, 48, 64, 64, 64]
    monkeypatch.setattr(jobs.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert jobs.EngineOptions().connections == 48
    monkeypatch.setattr(jobs.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert jobs.EngineOptions().connections == 64
    assert jobs.EngineOptions(connections=7).connections == 7
