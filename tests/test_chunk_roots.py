"""Chunk roots: the digest verify can check on every core (literal bytes, then files on disk)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_fetch.core import digests
from qwen_fetch.core.digests import CHUNK, ChunkRoots, chunk_root, chunk_spans, fold_root, wants_root
from qwen_fetch.store import hasher


def test_root_of_literal_bytes() -> None:
    # sha256 of each 3-byte chunk, raw digests concatenated, sha256 of that.
    assert chunk_root(b"abcdefgh", 3) == "5ebfd44f2f71f410e6b092d373c6d7e0e97828de1c3cbf63ae475e3d3e09cba2"
    parts = [hashlib.sha256(x).digest() for x in (b"abc", b"def", b"gh")]
    assert chunk_root(b"abcdefgh", 3) == hashlib.sha256(b"".join(parts)).hexdigest()
    # An exact multiple has no empty last chunk; an empty file is one empty chunk.
    assert chunk_root(b"abcdef", 3) == "9c04d30057b754af1b2d2d4f5675782dd61a5a659c34ee6c2af47526b66cafa6"
    assert chunk_root(b"") == "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
    # One chunk: the root follows from the sha256, which is why such files get none.
    assert chunk_root(b"abc", 3) == hashlib.sha256(hashlib.sha256(b"abc").digest()).hexdigest()
    assert not wants_root(CHUNK) and wants_root(CHUNK + 1)


def test_spans() -> None:
    assert chunk_spans(0, 3) == [(0, 0)]
    assert chunk_spans(6, 3) == [(0, 3), (3, 6)]
    assert chunk_spans(7, 3) == [(0, 3), (3, 6), (6, 7)]


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=64), st.integers(1, 9), st.lists(st.integers(0, 20), max_size=8))
def test_pieces_of_any_size_give_the_same_root(data: bytes, chunk: int, cuts: list[int]) -> None:
    r = ChunkRoots(chunk)
    pos = 0
    for n in cuts:
        r.update(data[pos:pos + n])
        pos += n
    r.update(data[pos:])
    assert r.consumed == len(data)
    assert r.root() == chunk_root(data, chunk) == fold_root(
        hashlib.sha256(data[s:e]).digest() for s, e in chunk_spans(len(data), chunk))


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(digests, "CHUNK", 1000)
    return 1000


def test_files_are_rooted_on_all_threads(tmp_path: Path, small_chunks: int) -> None:
    data = {tmp_path / f"f{i}": bytes(range(256)) * (7 + 13 * i) + b"x" * i for i in range(4)}
    for p, d in data.items():
        p.write_bytes(d)
    plain = tmp_path / "plain"
    plain.write_bytes(b"not rooted")
    res = hasher.hash_files([*data, plain], workers=3, chunked=set(data))
    for p, d in data.items():
        assert res[p].size == len(d) and res[p].root == chunk_root(d, small_chunks) and res[p].sha256 is None
    assert res[plain].sha256 == hashlib.sha256(b"not rooted").hexdigest() and res[plain].root is None


def test_a_damaged_chunk_changes_the_root(tmp_path: Path, small_chunks: int) -> None:
    p = tmp_path / "f"
    good = bytes(range(256)) * 40
    p.write_bytes(good)
    assert hasher.hash_files([p], workers=2, chunked={p})[p].root == chunk_root(good, small_chunks)
    bad = bytearray(good)
    bad[5 * small_chunks + 17] ^= 1  # one bit in the sixth chunk
    p.write_bytes(bytes(bad))
    got = hasher.hash_files([p], workers=2, chunked={p})[p]
    assert got.size == len(good) and got.root != chunk_root(good, small_chunks)
    assert got.root == chunk_root(bytes(bad), small_chunks)


def test_an_unreadable_rooted_file_is_an_error(tmp_path: Path, small_chunks: int) -> None:
    p = tmp_path / "gone"
    res = hasher.hash_files([p], workers=2, chunked={p})[p]
    assert res.size is None and res.root is None and res.error
