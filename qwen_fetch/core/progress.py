"""What every long job reports its progress to; the terminal display is :mod:`qwen_fetch.cli.progress`."""

from __future__ import annotations

import threading
from typing import Protocol


class ProgressSink(Protocol):
    def begin(self, total_bytes: int, total_files: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...  # thread-safe; may be negative when a range is re-fetched
    def file_done(self, path: str, source: str) -> None: ...
    def note(self, message: str) -> None: ...  # retries, fallbacks: one line each
    def end(self) -> None: ...


class NullProgress:
    def __init__(self) -> None:
        self.notes: list[str] = []
        self.bytes = 0
        self._lock = threading.Lock()

    def begin(self, total_bytes: int, total_files: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes

    def file_done(self, path: str, source: str) -> None:
        pass

    def note(self, message: str) -> None:
        with self._lock:
            self.notes.append(message)

    def end(self) -> None:
        pass
