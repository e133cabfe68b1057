"""The pin rules of pull, table-driven (pure: no network, no disk)."""

from __future__ import annotations

import pytest

from qwen_fetch.core.errors import IntegrityError, UsageError
from qwen_fetch.core.lockfile import Lock
from qwen_fetch.core.manifest import Pin, PinnedFile, RemoteFile, RepoListing
from qwen_fetch.core.paths import SafeRelPath as P
from qwen_fetch.core.pins import check_against_pin, content_matches, matches, pick_pin

A, B = "a" * 64, "b" * 64
OLD, NEW = "1" * 40, "2" * 40
FILES = (PinnedFile(P("config.json"), 3, A, git_oid="c" * 40), PinnedFile(P("m.safetensors"), 9, B, lfs=True))
LOCK = Lock().with_pin("o/m", Pin("main", OLD, "hf", FILES)).with_pin("o/m", Pin("v2", NEW, "hf", FILES))


@pytest.mark.parametrize("path,inc,exc,want", [
    ("config.json", [], [], True),
    ("config.json", ["*.json"], [], True),
    ("m.safetensors", ["*.json"], [], False),
    ("video_preprocessor_config.json", ["*.json"], ["video_*"], False),
    ("sub/x.bin", ["sub/"], [], True),
    ("sub/x.bin", [], ["sub/*"], False),
])
def test_matches(path: str, inc: list[str], exc: list[str], want: bool) -> None:
    assert matches(path, inc, exc) is want


@pytest.mark.parametrize("revision,update,frozen,want", [
    (None, False, False, NEW),          # current pin
    ("v2", False, False, NEW),          # by revision name
    (OLD, False, False, OLD),           # rollback to the previous pin, by commit
    (OLD[:7], False, False, OLD),       # ... or a commit prefix
    ("main", False, False, OLD),
    (None, True, False, None),          # --update re-resolves
])
def test_pick_pin(revision: str | None, update: bool, frozen: bool, want: str | None) -> None:
    pin = pick_pin(LOCK, "o/m", revision, update, frozen)
    assert (pin.commit if pin else None) == want


@pytest.mark.parametrize("lock,model,revision,update,frozen,exc", [
    (Lock(), "o/m", None, False, True, IntegrityError),     # --frozen, no pin
    (LOCK, "o/m", "v3", False, False, IntegrityError),      # unpinned revision without --update
    (LOCK, "o/m", None, True, True, UsageError),            # contradictory flags
])
def test_pick_pin_refusals(lock: Lock, model: str, revision: str | None, update: bool, frozen: bool,
                           exc: type[Exception]) -> None:
    with pytest.raises(exc):
        pick_pin(lock, model, revision, update, frozen)


def _listing(*files: RemoteFile) -> RepoListing:
    return RepoListing("ms", "o/m", "master", "3" * 40, files)


def test_check_against_pin_all_problems_at_once() -> None:
    pin = Pin("main", OLD, "hf", FILES)
    listing = _listing(RemoteFile(P("config.json"), 4, None, "c" * 40, False),
                       RemoteFile(P("m.safetensors"), 9, "e" * 64, None, True),
                       RemoteFile(P("evil.py"), 1, "f" * 64, None, False),
                       RemoteFile(P("configuration.json"), 1, "f" * 64, None, False))
    problems, skipped = check_against_pin(listing, pin, FILES, optional=("configuration.json",))
    assert problems == ["config.json: size 4 listed, 3 pinned",
                        "evil.py: not in the lock (not allowlisted)",
                        f"m.safetensors: sha256 {'e' * 64} listed, {B} pinned"]
    assert skipped == ["configuration.json"]


def test_optional_variant_of_a_pinned_file_is_not_a_problem() -> None:
    pin = Pin("main", OLD, "hf", FILES)
    listing = _listing(RemoteFile(P("config.json"), 5, "d" * 64, None, False))
    assert check_against_pin(listing, pin, FILES, optional=("config.json",)) == ([], [])


@pytest.mark.parametrize("rf,want", [
    (RemoteFile(P("m.safetensors"), 9, B, None, True), True),
    (RemoteFile(P("m.safetensors"), 9, A, None, True), False),
    (RemoteFile(P("m.safetensors"), 8, None, None, True), False),
    (RemoteFile(P("m.safetensors"), 9, None, None, True), True),  # unknown hash: the bytes are verified anyway
])
def test_content_matches(rf: RemoteFile, want: bool) -> None:
    assert content_matches(rf, FILES[1]) is want


def test_a_listing_giving_a_pinned_digest_another_size_elsewhere_is_a_problem() -> None:
    """The pin has sha256 B at 9 bytes; the listing names B at 10 bytes under another (optional) path.
    Content is fetched once per digest, so the two cannot both be right."""
    pin = Pin("main", OLD, "hf", FILES)
    files = (RemoteFile(P("config.json"), 3, None, "c" * 40, False), RemoteFile(P("m.safetensors"), 9, B, None, True),
             RemoteFile(P("extra/copy.safetensors"), 10, None, None, True))
    listing = RepoListing("ms", "o/m", "master", OLD, files)
    assert check_against_pin(listing, pin, FILES, ("extra/*",)) == ([], ["extra/copy.safetensors"])
    # (a listing naming B at both sizes is refused on its own, when it is made)
    bad = RepoListing("ms", "o/m", "master", OLD, files[:1] + (RemoteFile(P("extra/copy.safetensors"), 10, B, None, True),))
    problems, _ = check_against_pin(bad, pin, FILES, ("extra/*",))
    assert problems == [f"sha256 {B} is listed with two sizes: 9 for 'm.safetensors', 10 for 'extra/copy.safetensors'"]
