"""Reading and writing the lockfile on disk; the format itself is :mod:`qwen_fetch.core.lockfile` (pure)."""

from __future__ import annotations

from pathlib import Path

from qwen_fetch.core.errors import ConfigError
from qwen_fetch.core.lockfile import Lock, dump_lock, parse_lock
from qwen_fetch.store.safefs import atomic_write_text


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
