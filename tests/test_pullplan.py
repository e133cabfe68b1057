"""The pull plan, from literal listings and pins (pure: no network, no disk)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qwen_fetch.core.digests import ROOT_ALGORITHM, Digest, digest_matches, root_digest, sha256_digest
from qwen_fetch.core.errors import IntegrityError, UsageError
from qwen_fetch.core.manifest import Pin, PinnedFile, RemoteFile, RepoListing, SourceRevision
from qwen_fetch.core.paths import SafeRelPath as P
from qwen_fetch.core.pullplan import (
    MAX_PLAIN_FILE,
    PullPlan,
    PullRequest,
    check_pinned_commit,
    hashed_pin,
    new_pin,
    plain_mismatch,
    plan_fresh,
    plan_pinned,
    serves,
    split_fetch,
    unlisted_error,
    with_roots,
)

A, B, C = "a" * 64, "b" * 64, "c" * 64
OID_A, OID_X = "1" * 40, "9" * 40
COMMIT, OTHER = "d" * 40, "e" * 40
CONFIG = PinnedFile(P("config.json"), 3, A, git_oid=OID_A)
SHARD = PinnedFile(P("model.safetensors"), 9, B, lfs=True)
PIN = Pin("main", COMMIT, "hf", (CONFIG, SHARD))
REQ = PullRequest("o/m")


def listing(*files: RemoteFile, source: str = "hf", commit: str = COMMIT) -> RepoListing:
    return RepoListing(source, "o/m", "main", commit, files)


def listed(pf: PinnedFile, *, sha256: str | None = "same", size: int | None = None,
           git_oid: str | None = "same") -> RemoteFile:
    """``pf`` as a source lists it, with the given differences."""
    return RemoteFile(pf.path, pf.size if size is None else size, pf.sha256 if sha256 == "same" else sha256,
                      pf.git_oid if git_oid == "same" else git_oid, pf.lfs)


# -- the one digest comparison ---------------------------------------------------

@pytest.mark.parametrize("expected,actual,want", [
    (A, A, True),
    (A, B, False),
    (A, None, False),
    (Digest("sha256", A), A, True),  # a bare string is a hex sha256
    (A, Digest("sha256", A), True),
    (Digest("sha512", A), Digest("sha256", A), False),  # another algorithm is no evidence either way
    (Digest("sha256", A), Digest("sha256", A.upper()), False),  # values are lowercase hex, compared exactly
])
def test_digest_matches(expected: Digest | str, actual: Digest | str | None, want: bool) -> None:
    assert digest_matches(expected, actual) is want


@pytest.mark.parametrize("size,digest,want", [
    (9, B, True),
    (9, sha256_digest(B), True),
    (8, B, False),  # a stamp or a store that agrees on the digest but not on the size
    (9, A, False),
    (None, None, False),  # unreadable
    (9, None, False),
])
def test_pinned_file_matches(size: int | None, digest: str | Digest | None, want: bool) -> None:
    assert SHARD.matches(size, digest) is want
    assert SHARD.digest == Digest("sha256", B) and listed(SHARD).digest == SHARD.digest
    assert listed(CONFIG, sha256=None).digest is None


def test_a_chunk_root_is_compared_with_the_pinned_root_only() -> None:
    rooted = PinnedFile(P("model.safetensors"), 9, B, lfs=True, root=root_digest(C))
    assert rooted.matches(9, root_digest(C)) and rooted.matches(9, B)
    assert not rooted.matches(9, root_digest(B))  # the sha256's value under the root's name is not the root
    assert not rooted.matches(8, root_digest(C))
    assert not SHARD.matches(9, root_digest(B))  # a pin without a root: a root is no evidence
    assert root_digest(C) == Digest(ROOT_ALGORITHM, C)


@pytest.mark.parametrize("rf,want", [
    (None, False),
    (listed(SHARD), True),
    (listed(SHARD, size=8), False),
    (listed(SHARD, sha256=C), False),
    (listed(CONFIG, sha256=None), True),  # a plain file, same git blob id
    (listed(CONFIG, sha256=None, git_oid=OID_X), False),
    (listed(CONFIG, sha256=None, git_oid=None), True),  # nothing to compare but the size: the bytes decide
])
def test_serves(rf: RemoteFile | None, want: bool) -> None:
    pf = SHARD if rf is None or rf.path == SHARD.path else CONFIG
    assert serves(rf, pf) is want


# -- with a pin -------------------------------------------------------------------

def test_the_pins_own_source_must_resolve_the_pinned_commit() -> None:
    check_pinned_commit(PIN, "hf", COMMIT, "o/m", "h")
    check_pinned_commit(PIN, "mirror", OTHER, "o/m", "h")  # another source: its content is checked, not its commit
    with pytest.raises(IntegrityError) as ei:
        check_pinned_commit(PIN, "hf", OTHER, "o/m", "the branch moved")
    assert ei.value.message == f"source 'hf' resolved o/m to commit {OTHER}, but the lock pins {COMMIT}"
    assert ei.value.hint == "the branch moved" and ei.value.reference == "commit-mismatch"


def test_a_listing_that_honours_the_pin_plans_every_wanted_file() -> None:
    plan = plan_pinned(REQ, PIN, listing(listed(CONFIG, sha256=None), listed(SHARD)), [],
                       primary_optional=(), pin_optional=())
    assert plan == PullPlan(revision="main", commit=COMMIT, source="hf", pin=PIN, known=(CONFIG, SHARD))
    only = plan_pinned(PullRequest("o/m", include=("*.json",)), PIN, listing(listed(CONFIG), listed(SHARD)), [],
                       primary_optional=(), pin_optional=())
    assert only.known == (CONFIG,)


def test_every_difference_from_the_pin_is_one_error_naming_them_all() -> None:
    bad = listing(listed(CONFIG, size=4, sha256=None), listed(SHARD, sha256=C),
                  RemoteFile(P("extra.bin"), 1, None, OID_X, False), source="mirror")
    with pytest.raises(IntegrityError) as ei:
        plan_pinned(REQ, PIN, bad, [], primary_optional=(), pin_optional=())
    err = ei.value
    assert err.message == "source 'mirror' does not match the lock for o/m"
    assert err.reference == "not-allowlisted" and err.exit_code == 3
    assert err.context == ["config.json: size 4 listed, 3 pinned",
                           "extra.bin: not in the lock (not allowlisted)",
                           f"model.safetensors: sha256 {C} listed, {B} pinned"]
    assert "--update" in (err.hint or "")


def test_a_long_list_of_problems_is_cut_at_fifty() -> None:
    extras = [RemoteFile(P(f"x{i:03}.bin"), 1, None, OID_X, False) for i in range(60)]
    with pytest.raises(IntegrityError) as ei:
        plan_pinned(REQ, PIN, listing(listed(CONFIG), listed(SHARD), *extras), [], primary_optional=(),
                    pin_optional=())
    assert len(ei.value.context) == 51 and ei.value.context[-1] == "... and 10 more"


def test_one_digest_with_two_sizes_between_pin_and_listing_is_refused() -> None:
    twin = RemoteFile(P("copy.safetensors"), 8, B, None, True)  # the shard's digest, another size
    primary = listing(listed(CONFIG), twin)  # consistent in itself
    with pytest.raises(IntegrityError) as ei:
        plan_pinned(REQ, PIN, primary, [], primary_optional=("copy.safetensors",), pin_optional=())
    assert ei.value.context == [f"sha256 {B} is listed with two sizes: 9 for 'model.safetensors', "
                                "8 for 'copy.safetensors'"]


def test_extras_of_another_hub_are_skipped_not_refused() -> None:
    card = RemoteFile(P("configuration.json"), 5, C, None, False)
    plan = plan_pinned(REQ, PIN, listing(listed(CONFIG), listed(SHARD), card, source="ms"), [],
                       primary_optional=("configuration.json",), pin_optional=())
    assert plan.skipped == ("configuration.json",) and plan.known == (CONFIG, SHARD)


def test_an_optional_file_of_the_pins_hub_is_kept_where_a_source_serves_it() -> None:
    card = PinnedFile(P("configuration.json"), 5, C)
    pin = Pin("master", COMMIT, "ms", (CONFIG, card, SHARD))
    primary = listing(listed(CONFIG), listed(SHARD), source="hf")  # the primary lacks it
    gone = plan_pinned(REQ, pin, primary, [primary], primary_optional=(), pin_optional=("configuration.json",))
    assert gone.skipped == ("configuration.json",) and card not in gone.known
    fallback = listing(listed(card), source="ms")
    kept = plan_pinned(REQ, pin, primary, [primary, fallback], primary_optional=(),
                       pin_optional=("configuration.json",))
    assert kept.skipped == () and kept.known == (CONFIG, card, SHARD)


def test_fallbacks_are_only_looked_at_for_optional_files_and_no_further_than_needed() -> None:
    card = PinnedFile(P("configuration.json"), 5, C)
    pin = Pin("master", COMMIT, "ms", (CONFIG, card, SHARD))
    primary = listing(listed(CONFIG), listed(card), listed(SHARD), source="hf")

    def lazy() -> Iterator[RepoListing]:
        yield primary
        raise AssertionError("a further source was resolved although the primary serves the file")

    plan = plan_pinned(REQ, pin, primary, lazy(), primary_optional=(), pin_optional=("configuration.json",))
    assert plan.known == (CONFIG, card, SHARD)


# -- without a pin ----------------------------------------------------------------

def test_a_fresh_plan_hashes_what_has_no_listed_sha256() -> None:
    plain = listed(CONFIG, sha256=None)
    plan = plan_fresh(REQ, listing(plain, listed(SHARD)), "main", [])
    assert plan.pin is None and plan.commit == COMMIT and plan.revision == "main"
    assert plan.known == (SHARD,) and plan.to_hash == (plain,) and plan.hash_bytes == 3
    assert plan.listed == (plain, listed(SHARD))


def test_a_plain_file_an_earlier_pin_hashed_is_not_fetched_to_be_hashed_again() -> None:
    plan = plan_fresh(REQ, listing(listed(CONFIG, sha256=None), listed(SHARD)), "main", [PIN])
    assert plan.to_hash == () and plan.known == (CONFIG, SHARD)
    changed = listed(CONFIG, sha256=None, git_oid=OID_X)
    assert plan_fresh(REQ, listing(changed, listed(SHARD)), "main", [PIN]).to_hash == (changed,)


def test_a_plain_file_listed_without_its_blob_id_is_hashed_even_with_a_sha256() -> None:
    rf = listed(CONFIG, git_oid=None)
    assert plan_fresh(REQ, listing(rf), "main", []).to_hash == (rf,)


def test_fresh_plan_refusals() -> None:
    with pytest.raises(UsageError) as ei:
        plan_fresh(PullRequest("o/m", include=("*.txt",)), listing(listed(SHARD)), "v1", [])
    assert ei.value.message == "no file of o/m@v1 matches --include/--exclude"
    huge = RemoteFile(P("big.json"), MAX_PLAIN_FILE + 1, None, OID_X, False)
    with pytest.raises(IntegrityError) as ei2:
        plan_fresh(REQ, listing(huge), "main", [])
    assert ei2.value.message == "big.json: a 64 MiB+ file without a sha256 in the hub metadata"


@pytest.mark.parametrize("size,sha,oid,want", [
    (3, A, OID_A, None),
    (2, A, OID_A, "got 2 bytes, listed 3"),
    (3, A, OID_X, f"git blob id {OID_X} != listed {OID_A}"),
])
def test_plain_mismatch(size: int, sha: str, oid: str, want: str | None) -> None:
    assert plain_mismatch(listed(CONFIG, sha256=None), size, sha, oid) == want


def test_plain_mismatch_checks_a_listed_sha256() -> None:
    assert plain_mismatch(listed(CONFIG, git_oid=None), 3, B, None) == f"sha256 {B} != listed {A}"


def test_hashed_pin_keeps_the_listed_blob_id_and_takes_the_received_one_otherwise() -> None:
    assert hashed_pin(listed(CONFIG, sha256=None), A, OID_X) == CONFIG
    assert hashed_pin(listed(CONFIG, sha256=None, git_oid=None), A, OID_A) == CONFIG
    assert hashed_pin(listed(SHARD, sha256=None), B, OID_X).git_oid is None  # an LFS file's blob is its pointer


# -- reuse and fetch ----------------------------------------------------------------

def test_split_reuses_what_is_in_place_and_fetches_each_content_once() -> None:
    twin = PinnedFile(P("copy/model.safetensors"), 9, B, lfs=True)
    files = [CONFIG, twin, SHARD]
    split = split_fetch(files, set())
    assert split.reuse == () and split.fetch == (CONFIG, twin)
    split = split_fetch(files, {SHARD.digest})
    assert split.reuse == (twin, SHARD) and split.fetch == (CONFIG,)
    assert split_fetch(files, {CONFIG.digest, SHARD.digest}).fetch == ()


def test_unlisted_error_names_the_files_and_the_failed_sources() -> None:
    err = unlisted_error([f"f{i}" for i in range(7, 0, -1)], [("mirror", "HTTP 404")])
    assert err.message == "no source lists pinned file(s) with matching content: f1, f2, f3, f4, f5"
    assert err.context == ["mirror: HTTP 404"] and err.exit_code == 3


# -- the pin a fresh resolve writes -----------------------------------------------------

def test_roots_come_from_this_pull_or_an_earlier_pin_of_the_same_content() -> None:
    earlier = Pin("main", OTHER, "hf", (PinnedFile(P("old/name.safetensors"), 9, B, lfs=True, root=root_digest(A)),))
    assert with_roots((CONFIG, SHARD), {}, [earlier]) == (CONFIG, PinnedFile(SHARD.path, 9, B, lfs=True,
                                                                                 root=root_digest(A)))
    assert with_roots((SHARD,), {B: root_digest(C)}, [earlier])[0].root == root_digest(C)  # computed now wins
    resized = Pin("main", OTHER, "hf", (PinnedFile(P("x"), 8, B, root=root_digest(A)),))
    assert with_roots((SHARD,), {}, [resized])[0].root is None  # a root only means something with its size


def test_new_pin_records_how_each_other_source_names_the_commit() -> None:
    plan = plan_fresh(REQ, listing(listed(CONFIG), listed(SHARD)), "main", [])
    ms = RepoListing("ms", "o/m", "master", OTHER, ())
    same = RepoListing("mirror", "o/m", "main", COMMIT, ())
    pin = new_pin(plan, (CONFIG, SHARD), [ms, same], None, REQ)
    assert pin == Pin("main", COMMIT, "hf", (CONFIG, SHARD), sources=(("ms", SourceRevision("master", OTHER)),))


def test_a_partial_pull_of_the_pinned_commit_keeps_the_other_pinned_files() -> None:
    req = PullRequest("o/m", include=("*.json",), update=True)
    plan = plan_fresh(req, listing(listed(CONFIG), listed(SHARD)), "main", [])
    assert new_pin(plan, (CONFIG,), [], PIN, req).files == (CONFIG, SHARD)
    moved = Pin("main", OTHER, "hf", (SHARD,))
    assert new_pin(plan, (CONFIG,), [], moved, req).files == (CONFIG,)  # another commit: nothing carried over
    assert new_pin(plan, (CONFIG,), [], PIN, REQ).files == (CONFIG,)  # a full pull names every file itself
