"""The pure gc planner: rules, reasons, bytes; and its safety invariants under random caches."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_fetch.core.errors import UsageError
from qwen_fetch.core.gc import (
    BLOB,
    DAY,
    PARTIAL,
    REVISION,
    TRASH,
    BlobState,
    CacheState,
    GcPolicy,
    PartialState,
    RepoState,
    RevisionState,
    parse_duration,
    plan_gc,
)

NOW = 1_000_000_000.0
R = Path("/c/models--o--m")
M = "o/m"


@pytest.mark.parametrize("text,seconds", [("45s", 45), ("90m", 5400), ("12h", 43200), ("30d", 30 * DAY),
                                          ("2w", 14 * DAY), ("0", 0), ("1.5h", 5400), (" 7D ", 7 * DAY)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "-1d", "5y", "1h30m", "abc"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def rev(commit: str, blobs: set[str], *, refs: tuple[str, ...] = (), age_days: float = 10) -> RevisionState:
    return RevisionState(commit, R / "snapshots" / commit, refs, frozenset(blobs), 0, NOW - age_days * DAY)


def blob(name: str, size: int, age_days: float = 10) -> BlobState:
    return BlobState(name, R / "blobs" / name, size, NOW - age_days * DAY)


def part(name: str, size: int, age_days: float, locked: bool = False) -> PartialState:
    return PartialState(name, name.split(".")[0], R / "blobs" / name, size, NOW - age_days * DAY, locked)


def repo() -> RepoState:
    return RepoState(
        M, R,
        revisions=(
            rev("aaa", {"shared", "a1"}, age_days=30),  # pinned (previous)
            rev("bbb", {"shared", "b1"}, refs=("main",), age_days=1),  # pinned and main
            rev("ccc", {"shared", "c1", "cd"}, age_days=20),  # detached, oldest unpinned
            rev("ddd", {"shared", "cd", "d1"}, age_days=5),  # detached, newer
            rev("eee", {"e1"}, refs=("exp",), age_days=40),  # only a ref keeps it
        ),
        blobs=(blob("shared", 1000), blob("a1", 1), blob("b1", 2), blob("c1", 30), blob("cd", 400), blob("d1", 50),
               blob("e1", 6), blob("orphan-old", 7000), blob("orphan-new", 8000, age_days=0.01),
               blob("pinned-unlinked", 9000)),
        partials=(part("x.incomplete", 100, 3), part("x.incomplete.parts", 1, 3), part("y.incomplete", 200, 0.1),
                  part("z.incomplete", 300, 9, locked=True)),
        trash=((R / ".gc-trash" / "old.1234", 55),),
    )


def policy(**kw: object) -> GcPolicy:
    base: dict = dict(pinned=frozenset({(M, "aaa"), (M, "bbb")}), pinned_blobs=frozenset(
        {(M, b) for b in ("shared", "a1", "b1", "pinned-unlinked")}), now=NOW, lock_names=("qwen-fetch.lock",))
    base.update(kw)
    return GcPolicy(**base)


def deleted(plan, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.path.name for a in plan.actions if a.kind == kind]


def test_default_rules() -> None:
    plan = plan_gc(CacheState(Path("/c"), (repo(),)), policy())
    assert deleted(plan, REVISION) == ["ccc", "ddd"]
    assert deleted(plan, BLOB) == ["c1", "cd", "d1", "orphan-old"]
    assert deleted(plan, PARTIAL) == ["x.incomplete", "x.incomplete.parts"]
    assert deleted(plan, TRASH) == ["old.1234"]
    # Links go before the blobs they point at, in the plan's execution order.
    kinds = [a.kind for a in plan.actions]
    assert kinds == sorted(kinds, key=[REVISION, BLOB, PARTIAL, TRASH].index)
    assert plan.bytes == 30 + 400 + 50 + 7000 + 100 + 1 + 55
    why = {a.path.name: a.why for a in plan.actions}
    assert why["cd"] == "only used by deleted revision(s) ccc, ddd"
    assert why["orphan-old"] == "linked from no snapshot"
    assert "not pinned (qwen-fetch.lock) and no ref" in why["ccc"]
    kept = {(k.kind, k.name): k.why for k in plan.kept}
    assert kept[(REVISION, "aaa")] == kept[(REVISION, "bbb")] == "pinned by a lockfile"
    assert kept[(REVISION, "eee")] == "target of ref exp"
    assert "running pull" in kept[(BLOB, "orphan-new")]
    assert "lockfile" in kept[(BLOB, "pinned-unlinked")]
    assert kept[(PARTIAL, "z.incomplete")] == "a running pull holds it"
    assert (PARTIAL, "y.incomplete") in kept


def test_keep_last_and_older_than() -> None:
    state = CacheState(Path("/c"), (repo(),))
    plan = plan_gc(state, policy(keep_last=1))
    assert deleted(plan, REVISION) == ["ccc"]  # ddd is the newest unprotected one
    assert deleted(plan, BLOB) == ["c1", "orphan-old"]  # cd is still linked from ddd
    plan = plan_gc(state, policy(older_than=10 * DAY))
    assert deleted(plan, REVISION) == ["ccc"]  # ddd is 5 days old
    plan = plan_gc(state, policy(older_than=30 * DAY))
    assert deleted(plan, REVISION) == []
    plan = plan_gc(state, policy(incomplete_older_than=0))
    assert "orphan-new" in deleted(plan, BLOB) and "y.incomplete" in deleted(plan, PARTIAL)
    assert "z.incomplete" not in deleted(plan, PARTIAL)  # locked, whatever its age


def test_no_pins_keeps_only_refs() -> None:
    plan = plan_gc(CacheState(Path("/c"), (repo(),)), policy(pinned=frozenset(), pinned_blobs=frozenset()))
    assert deleted(plan, REVISION) == ["aaa", "ccc", "ddd"]
    assert "shared" not in deleted(plan, BLOB)  # main (bbb) still links it


names = st.sampled_from([f"b{i}" for i in range(8)])


@st.composite
def caches(draw: st.DrawFn) -> tuple[RepoState, GcPolicy]:
    commits = draw(st.lists(st.sampled_from(["c0", "c1", "c2", "c3", "c4"]), unique=True, max_size=5))
    revs = tuple(rev(c, set(draw(st.sets(names, max_size=4))), refs=draw(st.sampled_from([(), ("main",)])),
                     age_days=draw(st.floats(0, 50))) for c in commits)
    blobs = tuple(blob(n, draw(st.integers(0, 100)), draw(st.floats(0, 3))) for n in draw(st.sets(names)))
    pinned = frozenset((M, c) for c in draw(st.sets(st.sampled_from(commits)) if commits else st.just(set())))
    pinned_blobs = frozenset((M, b) for r in revs if (M, r.commit) in pinned for b in r.blobs)
    pol = GcPolicy(pinned=pinned, pinned_blobs=pinned_blobs, now=NOW, keep_last=draw(st.integers(0, 2)),
                   older_than=draw(st.sampled_from([None, DAY, 20 * DAY])), incomplete_older_than=DAY)
    return RepoState(M, R, revs, blobs), pol


@settings(max_examples=300, deadline=None)
@given(caches())
def test_plan_never_deletes_what_is_pinned_or_linked(case: tuple[RepoState, GcPolicy]) -> None:
    r, pol = case
    plan = plan_gc(CacheState(Path("/c"), (r,)), pol)
    gone_revs = {a.path.name for a in plan.actions if a.kind == REVISION}
    gone_blobs = {a.path.name for a in plan.actions if a.kind == BLOB}
    for v in r.revisions:
        if (M, v.commit) in pol.pinned or v.refs:
            assert v.commit not in gone_revs
        if v.commit not in gone_revs:  # no surviving snapshot may point at a deleted blob
            assert not (v.blobs & gone_blobs)
    assert not {b for (_m, b) in pol.pinned_blobs} & gone_blobs
    assert len(gone_revs) <= max(0, len([v for v in r.revisions if (M, v.commit) not in pol.pinned and not v.refs])
                                 - pol.keep_last)
    assert plan.bytes == sum(a.bytes for a in plan.actions)
