"""Verification stamps: the pure rule, the on-disk format, and what a stamp must never vouch for."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from qwen_fetch.core.manifest import PinnedFile
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.store.hasher import hash_file
from qwen_fetch.store.placement import Layout
from qwen_fetch.store.stamps import RACY_NS, FileStat, Stamp, StampStore, decode, encode, file_stat, take, vouches
from qwen_fetch.store.warm import check_in_place, stamp_key, stamp_store

SHA = "a" * 64
ST = FileStat(dev=2049, ino=1234, size=100, mtime_ns=1_700_000_000_000_000_000, ctime_ns=1_700_000_000_000_000_000)
GOOD = Stamp(ST, SHA, ST.ctime_ns + RACY_NS)


def test_a_stamp_vouches_only_for_the_same_state_digest_and_size() -> None:
    assert vouches(GOOD, ST, SHA, ST.size)
    for field in ("dev", "ino", "size", "mtime_ns", "ctime_ns"):
        other = dataclasses.replace(ST, **{field: getattr(ST, field) + 1})
        assert not vouches(GOOD, other, SHA, ST.size), field
    assert not vouches(GOOD, ST, "b" * 64, ST.size)
    assert not vouches(GOOD, ST, SHA, ST.size + 1)  # a pin whose size was edited
    assert not vouches(None, ST, SHA, ST.size) and not vouches(GOOD, None, SHA, ST.size)


def test_a_stamp_taken_in_the_tick_of_the_last_change_is_not_trusted() -> None:
    assert not vouches(Stamp(ST, SHA, ST.ctime_ns + RACY_NS - 1), ST, SHA, ST.size)
    assert not vouches(Stamp(ST, SHA, ST.ctime_ns - 5), ST, SHA, ST.size)  # a clock behind the file system's


def test_encode_decode_round_trip_and_garbage_is_ignored() -> None:
    assert decode(encode(GOOD)) == GOOD
    data = encode(GOOD)
    for bad in (b"", b"{", data[:-10], b"[]", b"null", data.replace(b'"v": 1', b'"v": 2'),
                data.replace(SHA.encode(), b"z" * 64), data.replace(b'"size": 100', b'"size": -1'),
                data.replace(b'"size": 100', b'"size": true'), data.replace(b'"size": 100', b'"size": 1.5')):
        assert decode(bad) is None, bad


def _pinned(tmp_path: Path, data: bytes) -> tuple[Layout, PinnedFile]:
    import hashlib

    f = PinnedFile(SafeRelPath("w.bin"), len(data), hashlib.sha256(data).hexdigest(), lfs=True)
    layout = Layout(tmp_path / "cache", "Org/model", None)
    layout.ensure()
    layout.dest(f).write_bytes(data)
    return layout, f


def _backdate_stamp(layout: Layout, f: PinnedFile) -> None:
    """Record the stamp as if taken well after the file's last change (the test does not wait out RACY_NS)."""
    st = file_stat(layout.dest(f))
    assert st is not None
    stamp_store(layout).write(stamp_key(layout, f), take(st, f.sha256, now_ns=st.ctime_ns + RACY_NS))


def test_check_in_place_trusts_stamps_and_stamps_what_it_hashed(tmp_path: Path) -> None:
    layout, f = _pinned(tmp_path, b"x" * 4096)
    first = check_in_place(layout, [f])
    assert (first.trusted, first.rehashed) == ((), (f,))
    assert stamp_store(layout).read(stamp_key(layout, f)) is not None
    _backdate_stamp(layout, f)
    assert check_in_place(layout, [f]).trusted == (f,)
    assert check_in_place(layout, [f], rehash=True).rehashed == (f,)


def test_a_stamp_for_another_inode_is_not_trusted(tmp_path: Path) -> None:
    """Same bytes' size and mtime, another file (a copy put in place): hashed, and a bad copy is caught."""
    layout, f = _pinned(tmp_path, b"x" * 4096)
    _backdate_stamp(layout, f)
    dest = layout.dest(f)
    fake = tmp_path / "fake"
    fake.write_bytes(b"y" * 4096)
    shutil.copystat(dest, fake)
    os.replace(fake, dest)
    assert os.stat(dest).st_mtime_ns == file_stat(dest).mtime_ns  # type: ignore[union-attr]
    check = check_in_place(layout, [f])
    assert check.bad == (f,) and check.trusted == ()


def test_a_link_in_place_of_a_blob_is_bad_and_not_followed(tmp_path: Path) -> None:
    layout, f = _pinned(tmp_path, b"x" * 4096)
    outside = tmp_path / "outside"
    os.replace(layout.dest(f), outside)
    os.symlink(outside, layout.dest(f))
    check = check_in_place(layout, [f])
    assert check.bad == (f,) and check.rehashed == ()
    assert hash_file(outside).sha256 == f.sha256  # the right bytes, but not ours to trust


@pytest.mark.parametrize("key", ["", "a/b", ".hidden"])
def test_stamp_keys_never_leave_their_folder(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        StampStore(tmp_path).read(key)
