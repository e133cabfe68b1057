"""One spelling check for digests and object ids, and the names built from them."""

from __future__ import annotations

import pytest

from qwen_fetch.core.digests import is_lower_hex, is_sha1, is_sha256
from qwen_fetch.core.revisions import is_commit_id
from qwen_fetch.store.bucket import is_md5_etag
from qwen_fetch.store.gc_disk import temporary_blob

SHA1 = "0123456789abcdef0123456789abcdef01234567"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(("value", "sha1", "sha256", "commit"), [
    (SHA1, True, False, True),
    (SHA256, False, True, True),  # a SHA-256 git repository's commit
    (SHA1.upper(), False, False, False),  # the cache and the lockfile use the lowercase form only
    (SHA1[:-1], False, False, False),
    (SHA1[:-1] + "g", False, False, False),
    ("", False, False, False),
    (None, False, False, False),
    (int("1" * 40), False, False, False),
    ("main", False, False, False),
])
def test_digest_and_commit_spellings(value: object, sha1: bool, sha256: bool, commit: bool) -> None:
    assert (is_sha1(value), is_sha256(value), is_commit_id(value)) == (sha1, sha256, commit)


def test_lower_hex_takes_any_of_the_lengths() -> None:
    assert is_lower_hex("ab", 2) and is_lower_hex("abcd", 2, 4) and not is_lower_hex("abc", 2, 4)
    assert is_lower_hex("", 0) and not is_lower_hex("", 2)


@pytest.mark.parametrize(("name", "blob"), [
    (f".{SHA256}.incomplete.parts.0a1b2c3d.tmp", SHA256),  # a killed state save
    (f".{SHA256}.0a1b2c3d.tmp", SHA256),  # a killed small-file write
    (f".{SHA1}.0a1b2c3d.tmp", SHA1),  # a plain file in a cache huggingface_hub wrote
    (f"{SHA256}.0a1b2c3d.tmp", None),  # not hidden: not ours
    (f".{SHA256}.0a1b2c3.tmp", None),  # token too short
    (f".{SHA256}.0A1B2C3D.tmp", None),
    (f".{SHA256}.incomplete.0a1b2c3d.tmp", None),
    (f".{SHA256}.incomplete.parts.incomplete.parts.0a1b2c3d.tmp", None),
    (f".{SHA256[:-1]}.0a1b2c3d.tmp", None),
    (f".{SHA256}.0a1b2c3d", None),
    (".tmp", None),
])
def test_temporary_blob_names(name: str, blob: str | None) -> None:
    assert temporary_blob(name) == blob


@pytest.mark.parametrize(("etag", "md5"), [
    ('"9e107d9d372bb6826bd81d3542a419d6"', True),
    ("9e107d9d372bb6826bd81d3542a419d6-12", True),
    ("9E107D9D372BB6826BD81D3542A419D6", False),
    ("9e107d9d372bb6826bd81d3542a419d6-x", False),
    ("kms-abc", False),
])
def test_md5_etag_form(etag: str, md5: bool) -> None:
    assert is_md5_etag(etag) == md5
