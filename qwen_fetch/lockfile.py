"""The lockfile (``qwen-fetch.lock``): pinned commits and per-file sha256.

Pure: :func:`parse_lock` and :func:`dump_lock` convert between text and frozen
dataclasses.  The output is sorted and stable, so ``dump(parse(text)) == text``
for any text this module wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


from qwen_fetch.errors import ConfigError
from qwen_fetch.fsutil import atomic_write_text
from qwen_fetch.hashing import is_sha1, is_sha256
from qwen_fetch.manifest import Pin, PinnedFile, SourceRevision
from qwen_fetch.paths import UnsafePathError, check_collisions, safe_relpath
from qwen_fetch.yamlio import LineMap, dump_yaml, line_of, load_yaml

LOCK_VERSION = 1
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


def _fail(where: str, lines: LineMap, path: tuple[object, ...], msg: str) -> ConfigError:
    line = line_of(lines, path)
    loc = f"{where}:{line}" if line else where
    return ConfigError(f"{loc}: {msg}", hint="fix that line, or regenerate the entry with `qwen-fetch lock MODEL --update`",
                       reference="bad-lockfile")


def _check_keys(obj: Any, allowed: set[str], required: set[str], where: str, lines: LineMap,
                path: tuple[object, ...]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(where, lines, path, "expected a mapping")
    for k in obj:
        if k not in allowed:
            raise _fail(where, lines, path + (k,), f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})")
    for k in sorted(required):
        if k not in obj:
            raise _fail(where, lines, path, f"missing key {k!r}")
    return obj


def _str(obj: Any, where: str, lines: LineMap, path: tuple[object, ...]) -> str:
    if not isinstance(obj, str) or not obj:
        raise _fail(where, lines, path, f"expected a non-empty string, got {obj!r}")
    return obj


def _parse_file(obj: Any, where: str, lines: LineMap, path: tuple[object, ...]) -> PinnedFile:
    d = _check_keys(obj, {"path", "size", "sha256", "lfs", "git_oid"}, {"path", "size", "sha256"}, where, lines, path)
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
    return PinnedFile(path=p, size=size, sha256=sha, lfs=lfs, git_oid=oid)


def _parse_pin(obj: Any, where: str, lines: LineMap, path: tuple[object, ...]) -> Pin:
    d = _check_keys(obj, {"revision", "commit", "source", "sources", "files"},
                    {"revision", "commit", "source", "files"}, where, lines, path)
    commit = _str(d["commit"], where, lines, path + ("commit",))
    if not all(c.isalnum() or c in "-_." for c in commit) or len(commit) > 128:
        raise _fail(where, lines, path + ("commit",), f"commit {commit!r} is not a commit id")
    files_raw = d["files"]
    if not isinstance(files_raw, list):
        raise _fail(where, lines, path + ("files",), "files must be a list")
    files = tuple(_parse_file(f, where, lines, path + ("files", i)) for i, f in enumerate(files_raw))
    try:
        check_collisions(f.path for f in files)
    except UnsafePathError as exc:
        raise _fail(where, lines, path + ("files",), exc.message) from None
    sources_raw = d.get("sources") or {}
    if not isinstance(sources_raw, dict):
        raise _fail(where, lines, path + ("sources",), "sources must be a mapping")
    sources = []
    for name, sr in sources_raw.items():
        sd = _check_keys(sr, {"revision", "commit"}, {"revision", "commit"}, where, lines, path + ("sources", name))
        sources.append((str(name), SourceRevision(revision=_str(sd["revision"], where, lines, path + ("sources", name, "revision")),
                                                  commit=_str(sd["commit"], where, lines, path + ("sources", name, "commit")))))
    return Pin(
        revision=_str(d["revision"], where, lines, path + ("revision",)),
        commit=commit,
        source=_str(d["source"], where, lines, path + ("source",)),
        files=tuple(sorted(files, key=lambda f: f.path)),
        sources=tuple(sorted(sources)),
    )


def parse_lock(text: str, where: str = DEFAULT_LOCK_NAME) -> Lock:
    data, lines = load_yaml(text, where)
    if data is None:
        return Lock()
    d = _check_keys(data, {"version", "models"}, {"version"}, where, lines, ())
    if d["version"] != LOCK_VERSION:
        raise _fail(where, lines, ("version",), f"unsupported lockfile version {d['version']!r} (this qwen-fetch reads {LOCK_VERSION})")
    models_raw = d.get("models") or {}
    if not isinstance(models_raw, dict):
        raise _fail(where, lines, ("models",), "models must be a mapping of model id to pins")
    models = []
    for mid, pins_raw in models_raw.items():
        if not isinstance(mid, str) or not mid:
            raise _fail(where, lines, ("models",), f"bad model id {mid!r}")
        if not isinstance(pins_raw, list) or not pins_raw:
            raise _fail(where, lines, ("models", mid), "expected a non-empty list of pins")
        pins = tuple(_parse_pin(p, where, lines, ("models", mid, i)) for i, p in enumerate(pins_raw))
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
    return d


def _pin_dict(p: Pin) -> dict[str, Any]:
    d: dict[str, Any] = {"revision": p.revision, "commit": p.commit, "source": p.source}
    if p.sources:
        d["sources"] = {n: {"revision": r.revision, "commit": r.commit} for n, r in sorted(p.sources)}
    d["files"] = [_file_dict(f) for f in sorted(p.files, key=lambda f: f.path)]
    return d


def dump_lock(lock: Lock) -> str:
    data = {"version": LOCK_VERSION, "models": {mid: [_pin_dict(p) for p in pins] for mid, pins in sorted(lock.models)}}
    body = dump_yaml(data)
    return HEADER + body


# ---------------------------------------------------------------------------
# disk adapter


def read_lock(path: Path) -> Lock:
    if not path.exists():
        return Lock()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", hint="restore the lockfile from version control") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", hint="check the path and permissions") from None
    return parse_lock(text, str(path))


def write_lock(path: Path, lock: Lock) -> None:
    """Write atomically: a reader never sees half a lockfile."""
    atomic_write_text(path.absolute(), dump_lock(lock))


def pin_replace_files(pin: Pin, files: tuple[PinnedFile, ...]) -> Pin:
    return replace(pin, files=tuple(sorted(files, key=lambda f: f.path)))
