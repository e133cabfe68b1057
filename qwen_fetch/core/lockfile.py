"""The lockfile (``qwen-fetch.lock``): pinned commits and per-file sha256.

Pure: :func:`parse_lock` and :func:`dump_lock` convert between text and frozen
dataclasses.  The output is sorted and stable, so ``dump(parse(text)) == text``
for any text this module wrote.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from qwen_fetch.core.digests import ROOT_ALGORITHM, Digest, is_sha1, is_sha256
from qwen_fetch.core.errors import ConfigError, Ref
from qwen_fetch.core.manifest import Pin, PinnedFile, SourceRevision
from qwen_fetch.core.paths import UnsafePathError, check_collisions, safe_relpath
from qwen_fetch.core.revisions import is_commit_id, revision_problem
from qwen_fetch.core.yamlio import LineMap, dump_yaml, line_of, load_yaml

# Version 2 adds one optional key per file, ``root`` (a chunk root beside the sha256, see ``core.digests``).
# A lock is written as version 1 whenever no file has a root, so every lock without roots stays readable by
# a qwen-fetch that knows only version 1; one with roots says "version 2" and such a qwen-fetch asks to be
# upgraded, instead of refusing an unknown key.  Version 1 locks are read as they are and written as version
# 2 once a pull records roots in them.
LOCK_VERSION = 2
READS = (1, 2)
DEFAULT_LOCK_NAME = "qwen-fetch.lock"
MAX_PINS_PER_MODEL = 2  # current and previous, for rollback
HEADER = (
    "# qwen-fetch lockfile: pinned commits and the sha256 of every allowed file.\n"
    "# Written by `qwen-fetch lock` / `qwen-fetch pull`; review changes like code.\n"
)


@dataclass(frozen=True)
class Lock:
    models: tuple[tuple[str, tuple[Pin, ...]], ...] = ()  # sorted by model id; pins: current first

    def pins(self, model_id: str) -> tuple[Pin, ...]:
        for mid, pins in self.models:
            if mid == model_id:
                return pins
        return ()

    def current(self, model_id: str) -> Pin | None:
        pins = self.pins(model_id)
        return pins[0] if pins else None

    def with_pin(self, model_id: str, pin: Pin, keep: int = MAX_PINS_PER_MODEL) -> Lock:
        """Make ``pin`` current; the previous pins (other commits) stay, up to ``keep``."""
        others = tuple(p for p in self.pins(model_id) if p.commit != pin.commit)
        new = (pin,) + others[: max(keep - 1, 0)]
        models = dict(self.models)
        models[model_id] = new
        return Lock(models=tuple(sorted(models.items())))


# ---------------------------------------------------------------------------
# text -> Lock

# What a valid value looks like, per key: the first half of every parse error's hint.
_FIX = {
    "size": "a size is the byte count in plain decimal digits (YAML 1.1 forms such as 24:22 or 0x5b6 "
            "are not read)",
    "sha256": "a sha256 is 64 lowercase hex digits, as `sha256sum FILE` prints it",
    "lfs": "write lfs: true or lfs: false",
    "git_oid": "a git_oid is 40 lowercase hex digits, as `git hash-object FILE` prints it",
    "commit": "a commit is the full commit id: 40 lowercase hex digits",
    "revision": "a revision is a branch or tag name that `git check-ref-format --branch NAME` accepts",
    "path": "a path is relative, with '/' between names, and no '..', '.git' or control characters",
    "root": f"a root is {ROOT_ALGORITHM}: and 64 lowercase hex digits, as a pull records it (or remove the line: "
            "verify then checks the sha256)",
}


def _fail(where: str, lines: LineMap, path: tuple[object, ...], msg: str, fix: str | None = None) -> ConfigError:
    line = line_of(lines, path)
    loc = f"{where}:{line}" if line else where
    key = next((k for k in reversed(path) if isinstance(k, str) and k in _FIX), None)
    return ConfigError(f"{loc}: {msg}", hint=fix or (_FIX[key] if key else "fix that line"),
                       reference=Ref.BAD_LOCKFILE)


def _check_keys(obj: Any, allowed: set[str], required: set[str], where: str, lines: LineMap,
                path: tuple[object, ...]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(where, lines, path, "expected a mapping", fix="check the indentation at that line")
    for k in obj:
        if k not in allowed:
            raise _fail(where, lines, path + (k,), f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})",
                        fix=f"remove the key {k!r} or correct its spelling")
    for k in sorted(required):
        if k not in obj:
            raise _fail(where, lines, path, f"missing key {k!r}", fix=f"add the key {k!r} to that entry")
    return obj


def _str(obj: Any, where: str, lines: LineMap, path: tuple[object, ...]) -> str:
    if not isinstance(obj, str) or not obj:
        raise _fail(where, lines, path, f"expected a non-empty string, got {obj!r}")
    return obj


def _revision(obj: Any, where: str, lines: LineMap, path: tuple[object, ...]) -> str:
    name = _str(obj, where, lines, path)
    problem = revision_problem(name)
    if problem is not None:
        raise _fail(where, lines, path, f"revision {name[:80]!r} is not a branch or tag name: {problem}")
    return name


def _commit(obj: Any, where: str, lines: LineMap, path: tuple[object, ...]) -> str:
    if not is_commit_id(obj):
        raise _fail(where, lines, path, f"commit {str(obj)[:80]!r} is not a commit id")
    return str(obj)


def _parse_root(obj: Any, where: str, lines: LineMap, path: tuple[object, ...]) -> Digest:
    algorithm, _, value = obj.partition(":") if isinstance(obj, str) else ("", "", "")
    if algorithm != ROOT_ALGORITHM or not is_sha256(value):
        raise _fail(where, lines, path, f"root must be {ROOT_ALGORITHM}:<64 lowercase hex digits>, got {obj!r}")
    return Digest(algorithm, value)


def _parse_file(obj: Any, where: str, lines: LineMap, path: tuple[object, ...], version: int) -> PinnedFile:
    keys = {"path", "size", "sha256", "lfs", "git_oid"} | ({"root"} if version >= 2 else set())
    d = _check_keys(obj, keys, {"path", "size", "sha256"}, where, lines, path)
    try:
        p = safe_relpath(d["path"])
    except UnsafePathError as exc:
        raise _fail(where, lines, path + ("path",), exc.message) from None
    size = d["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _fail(where, lines, path + ("size",), f"size must be a non-negative integer, got {size!r}")
    sha = d["sha256"]
    if not is_sha256(sha):
        raise _fail(where, lines, path + ("sha256",), f"sha256 must be 64 lowercase hex digits, got {sha!r}")
    lfs = d.get("lfs", False)
    if not isinstance(lfs, bool):
        raise _fail(where, lines, path + ("lfs",), f"lfs must be true or false, got {lfs!r}")
    oid = d.get("git_oid")
    if oid is not None and not is_sha1(oid):
        raise _fail(where, lines, path + ("git_oid",), f"git_oid must be 40 lowercase hex digits, got {oid!r}")
    root = _parse_root(d["root"], where, lines, path + ("root",)) if "root" in d else None
    return PinnedFile(path=p, size=size, sha256=sha, lfs=lfs, git_oid=oid, root=root)


def _parse_pin(obj: Any, where: str, lines: LineMap, path: tuple[object, ...], version: int) -> Pin:
    d = _check_keys(obj, {"revision", "commit", "source", "sources", "files"},
                    {"revision", "commit", "source", "files"}, where, lines, path)
    revision = _revision(d["revision"], where, lines, path + ("revision",))
    commit = _commit(d["commit"], where, lines, path + ("commit",))
    files_raw = d["files"]
    if not isinstance(files_raw, list):
        raise _fail(where, lines, path + ("files",), "files must be a list", fix="write files as a list of entries")
    files = tuple(_parse_file(f, where, lines, path + ("files", i), version) for i, f in enumerate(files_raw))
    try:
        check_collisions(f.path for f in files)
    except UnsafePathError as exc:
        raise _fail(where, lines, path + ("files",), exc.message, fix="remove one of the two entries") from None
    sizes: dict[str, tuple[str, int]] = {}
    for i, f in enumerate(files):
        first = sizes.setdefault(f.sha256, (f.path, f.size))
        if first[1] != f.size:  # one content, one size: the blob is shared by both paths
            raise _fail(where, lines, path + ("files", i, "size"),
                        f"sha256 {f.sha256[:12]}... is pinned with two sizes ({first[1]} for {first[0]!r}, "
                        f"{f.size} for {f.path!r})", fix="one of the two entries is wrong: correct it")
    sources_raw = d.get("sources") or {}
    if not isinstance(sources_raw, dict):
        raise _fail(where, lines, path + ("sources",), "sources must be a mapping",
                    fix="write sources as a mapping of source name to revision and commit")
    sources = []
    for name, sr in sources_raw.items():
        sp = path + ("sources", name)
        sd = _check_keys(sr, {"revision", "commit"}, {"revision", "commit"}, where, lines, sp)
        sources.append((str(name), SourceRevision(revision=_revision(sd["revision"], where, lines, sp + ("revision",)),
                                                  commit=_commit(sd["commit"], where, lines, sp + ("commit",)))))
    return Pin(
        revision=revision,
        commit=commit,
        source=_str(d["source"], where, lines, path + ("source",)),
        files=tuple(sorted(files, key=lambda f: f.path)),
        sources=tuple(sorted(sources)),
    )


def _regenerate_hint(err: ConfigError, model_id: str, first: int | None, last: int | None, where: str) -> ConfigError:
    """Add the other way out to a model entry's error: delete the entry and pin the model afresh.

    ``qwen-fetch lock`` reads the whole lockfile first, so it cannot repair a broken entry
    itself; once the entry's lines are gone, it writes a new pin and keeps every other model.
    """
    if first is None or last is None:
        return err
    lock_opt = "" if where == DEFAULT_LOCK_NAME else f" --lock {shlex.quote(where)}"
    span = f"line {first}" if first == last else f"lines {first}-{last}"
    hint = (f"{err.hint}; or delete {span} (the entry of {model_id}) and pin it afresh: "
            f"qwen-fetch lock {shlex.quote(model_id)}{lock_opt}")
    return ConfigError(err.message, hint=hint, context=err.context, reference=err.ref)


_WHICH_VERSION = "write version: 1 (version: 2 if some file has a root line)"


def parse_lock(text: str, where: str = DEFAULT_LOCK_NAME) -> Lock:
    keys: LineMap = {}
    data, lines = load_yaml(text, where, key_lines=keys)
    if data is None:
        return Lock()
    d = _check_keys(data, {"version", "models"}, {"version"}, where, lines, ())
    version = d["version"]
    if type(version) is not int or version not in READS:  # `version: true` is no 1
        raise _fail(where, lines, ("version",), f"unsupported lockfile version {version!r} "
                    f"(this qwen-fetch reads versions {' and '.join(map(str, READS))})",
                    fix=(_WHICH_VERSION if not (type(version) is int and version > LOCK_VERSION)
                         else "a newer qwen-fetch wrote this file: upgrade (pip install -U qwen-fetch); "
                              f"or, if the number is a typo, {_WHICH_VERSION}"))
    models_raw = d.get("models") or {}
    if not isinstance(models_raw, dict):
        raise _fail(where, lines, ("models",), "models must be a mapping of model id to pins",
                    fix="write models as a mapping of model id to a list of pins")
    models = []
    for mid, pins_raw in models_raw.items():
        if not isinstance(mid, str) or not mid:
            raise _fail(where, lines, ("models",), f"bad model id {mid!r}", fix="a model id is ORG/NAME")
        try:
            if not isinstance(pins_raw, list) or not pins_raw:
                raise _fail(where, lines, ("models", mid), "expected a non-empty list of pins",
                            fix="check the indentation of the entry")
            pins = tuple(_parse_pin(p, where, lines, ("models", mid, i), version) for i, p in enumerate(pins_raw))
        except ConfigError as exc:
            inside = [ln for m in (lines, keys) for path, ln in m.items() if path[:2] == ("models", mid)]
            raise _regenerate_hint(exc, mid, keys.get(("models", mid)), max(inside, default=None), where) from None
        models.append((mid, pins))
    return Lock(models=tuple(sorted(models)))


# ---------------------------------------------------------------------------
# Lock -> text


def _file_dict(f: PinnedFile) -> dict[str, Any]:
    d: dict[str, Any] = {"path": f.path, "size": f.size, "sha256": f.sha256}
    if f.lfs:
        d["lfs"] = True
    if f.git_oid:
        d["git_oid"] = f.git_oid
    if f.root is not None:
        d["root"] = str(f.root)
    return d


def _pin_dict(p: Pin) -> dict[str, Any]:
    d: dict[str, Any] = {"revision": p.revision, "commit": p.commit, "source": p.source}
    if p.sources:
        d["sources"] = {n: {"revision": r.revision, "commit": r.commit} for n, r in sorted(p.sources)}
    d["files"] = [_file_dict(f) for f in sorted(p.files, key=lambda f: f.path)]
    return d


def lock_version(lock: Lock) -> int:
    """The version a lock is written as: 2 when some file has a root, else 1 (readable by older releases)."""
    rooted = any(f.root is not None for _, pins in lock.models for p in pins for f in p.files)
    return LOCK_VERSION if rooted else 1


def dump_lock(lock: Lock) -> str:
    data = {"version": lock_version(lock), "models": {mid: [_pin_dict(p) for p in pins] for mid, pins in sorted(lock.models)}}
    body = dump_yaml(data)
    return HEADER + body
