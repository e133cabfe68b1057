"""ModelScope listing, revision and envelope parsing: pure, table-driven, hostile input refused."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_fetch.core.errors import ExitCode, IntegrityError, QFError, SourceError
from qwen_fetch.core.manifest import ListingError
from qwen_fetch.core.paths import UnsafePathError
from qwen_fetch.sources.modelscope import LISTING_CAP, parse_files, parse_revisions, unwrap

SHA_A = "a" * 64
SHA_B = "b" * 64
C_OLD = "1" * 40
C_NEW = "2" * 40


def blob(path: str, **over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"Name": path.rsplit("/", 1)[-1], "Path": path, "Type": "blob", "Size": 10,
                         "Sha256": SHA_A, "Revision": C_OLD, "CommittedDate": 100, "IsLFS": False}
    e.update(over)
    return e


def test_good_listing_gives_files_sorted_out_and_newest_commit() -> None:
    data = {"Files": [
        blob("model-00001-of-00004.safetensors", Size=5, Sha256=SHA_B.upper(), IsLFS=True),
        {"Name": "sub", "Path": "sub", "Type": "tree", "Size": 0, "Sha256": "", "Revision": C_OLD},
        blob("sub/configuration.json", Revision=C_NEW, CommittedDate=200),
        blob("README.md", Sha256=""),
    ]}
    files, commit = parse_files(data, "ms")
    by = {f.path: f for f in files}
    assert sorted(by) == ["README.md", "model-00001-of-00004.safetensors", "sub/configuration.json"]
    shard = by["model-00001-of-00004.safetensors"]
    assert (shard.size, shard.sha256, shard.lfs, shard.git_oid) == (5, SHA_B, True, None)  # upper -> lower
    assert by["README.md"].sha256 is None  # no hash published: must be hashed from the bytes
    assert commit == C_NEW


def test_iso_dates_accepted_and_compared() -> None:
    files = [blob("a", Revision=C_NEW, CommittedDate="2025-01-02T00:00:00Z"),
             blob("b", Revision=C_OLD, CommittedDate="2025-01-01T23:59:59.5+00:00")]
    assert parse_files({"Files": files}, "ms")[1] == C_NEW
    assert parse_files({"Files": [blob("a", CommittedDate=None)]}, "ms")[1] == C_OLD


def test_missing_islfs_is_guessed_like_gitattributes() -> None:
    files = [blob("w.safetensors", IsLFS=None), blob("big.txt", Size=20 << 20, IsLFS=None), blob("c.json", IsLFS=None),
             blob("d.json", IsLFS=True)]
    got = {f.path: f.lfs for f in parse_files({"Files": files}, "ms")[0]}
    assert got == {"w.safetensors": True, "big.txt": True, "c.json": False, "d.json": True}


def test_commit_tie_on_date_is_deterministic() -> None:
    files = [blob("a", Revision=C_NEW), blob("b", Revision=C_OLD)]
    assert parse_files({"Files": files}, "ms")[1] == parse_files({"Files": files[::-1]}, "ms")[1] == C_NEW


def test_bare_list_accepted_like_the_official_client() -> None:
    assert [f.path for f in parse_files([blob("x.json")], "ms")[0]] == ["x.json"]


def test_no_revision_fields_gives_no_commit() -> None:
    assert parse_files({"Files": [blob("a", Revision=None)]}, "ms")[1] is None


HOSTILE: list[tuple[str, Any, type[Exception]]] = [
    ("dotdot", {"Files": [blob("../../etc/passwd")]}, UnsafePathError),
    ("absolute", {"Files": [blob("/etc/passwd")]}, UnsafePathError),
    ("backslash", {"Files": [blob("a\\b")]}, UnsafePathError),
    ("dotdot in a tree entry", {"Files": [{"Path": "..", "Type": "tree"}]}, UnsafePathError),
    ("control char", {"Files": [blob("a\nb")]}, UnsafePathError),
    ("git dir", {"Files": [blob(".git/config")]}, UnsafePathError),
    ("duplicate", {"Files": [blob("a"), blob("a")]}, UnsafePathError),
    ("case collision", {"Files": [blob("Config.json"), blob("config.json")]}, UnsafePathError),
    ("file and dir", {"Files": [blob("a"), blob("a/b")]}, UnsafePathError),
    ("no path", {"Files": [{"Type": "blob", "Size": 1, "Sha256": SHA_A}]}, UnsafePathError),
    ("negative size", {"Files": [blob("a", Size=-1)]}, ListingError),
    ("string size", {"Files": [blob("a", Size="10")]}, ListingError),
    ("bool size", {"Files": [blob("a", Size=True)]}, ListingError),
    ("huge size", {"Files": [blob("a", Size=1 << 60)]}, ListingError),
    ("short sha", {"Files": [blob("a", Sha256="abc")]}, ListingError),
    ("non-hex sha", {"Files": [blob("a", Sha256="g" * 64)]}, ListingError),
    ("sha not a string", {"Files": [blob("a", Sha256=123)]}, ListingError),
    ("unknown type", {"Files": [blob("a", Type="symlink")]}, ListingError),
    ("IsLFS not bool", {"Files": [blob("a", IsLFS="yes")]}, ListingError),
    ("bad commit id", {"Files": [blob("a", Revision="master; rm -rf")]}, ListingError),
    ("bad date", {"Files": [blob("a", CommittedDate="yesterday")]}, ListingError),
    ("float date", {"Files": [blob("a", CommittedDate=1.5)]}, ListingError),
    ("entry not an object", {"Files": ["a"]}, ListingError),
    ("no Files", {"Items": []}, ListingError),
    ("Files not a list", {"Files": {"a": 1}}, ListingError),
    ("truncated at the cap", {"Files": [blob(f"f{i}") for i in range(LISTING_CAP)]}, ListingError),
]


@pytest.mark.parametrize("data,exc", [(d, e) for _, d, e in HOSTILE], ids=[n for n, _, _ in HOSTILE])
def test_hostile_listing_refused(data: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc) as info:
        parse_files(data, "ms")
    assert isinstance(info.value, IntegrityError) and info.value.exit_code == ExitCode.INTEGRITY
    assert "'ms'" in info.value.message or isinstance(info.value, UnsafePathError)


def test_revisions() -> None:
    data = {"RevisionMap": {"Branches": [{"Revision": "master", "CreatedAt": 1}],
                            "Tags": [{"Revision": "v1.0", "CreatedAt": 2}]}}
    revs = parse_revisions(data, "ms")
    assert revs.branches == ("master",) and revs.tags == ("v1.0",)
    assert "master" in revs and "v1.0" in revs and "main" not in revs
    assert "master" in revs.describe() and "v1.0" in revs.describe()
    assert parse_revisions({"RevisionMap": {"Branches": None}}, "ms").branches == ()


@pytest.mark.parametrize("data", [
    None, [], {"RevisionMap": []}, {"RevisionMap": {"Branches": "master"}},
    {"RevisionMap": {"Branches": [{"Name": "master"}]}}, {"RevisionMap": {"Tags": [{"Revision": ""}]}},
    {"RevisionMap": {"Tags": [{"Revision": "a\nb"}]}},
])
def test_bad_revisions_refused(data: Any) -> None:
    with pytest.raises(ListingError):
        parse_revisions(data, "ms")


def test_unwrap_returns_data() -> None:
    assert unwrap({"Code": 200, "Success": True, "Message": "ok", "Data": {"x": 1}}, "ms", "w") == {"x": 1}


@pytest.mark.parametrize("body", [
    None, [], "ok", {"Data": {}}, {"Success": True, "Data": {}}, {"Success": "true", "Code": 200, "Data": {}},
    {"Success": True, "Code": 500, "Data": {}}, {"Success": True, "Code": 200},
])
def test_unwrap_refuses_malformed_envelopes(body: Any) -> None:
    with pytest.raises(ListingError) as info:
        unwrap(body, "ms", "file listing")
    assert info.value.exit_code == ExitCode.INTEGRITY and "file listing" in info.value.message


def test_unwrap_reports_a_refusal_as_a_source_error() -> None:
    with pytest.raises(SourceError) as info:
        unwrap({"Code": 10010205001, "Success": False, "Message": "model not exist"}, "ms", "listing")
    assert info.value.exit_code == ExitCode.SOURCE and "model not exist" in info.value.message


# -- property: any JSON a server may send is either accepted or refused as a user-facing error -------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 1 << 62), st.floats(), st.text(max_size=70),
                     st.sampled_from(["blob", "tree", SHA_A, C_NEW, "a/b", "..", ""]))
_keys = st.sampled_from(["Path", "Type", "Size", "Sha256", "Revision", "CommittedDate", "IsLFS", "Name", "Files",
                         "RevisionMap", "Branches", "Tags", "Code", "Success", "Data", "Message"])
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(_keys, inner, max_size=6)), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_arbitrary_json_never_crashes_the_parsers(data: Any) -> None:
    for fn in (lambda d: parse_files(d, "ms"), lambda d: parse_revisions(d, "ms"), lambda d: unwrap(d, "ms", "x")):
        try:
            fn(data)
        except QFError:
            pass  # refused with a message and an exit code: fine; anything else would be exit 1
