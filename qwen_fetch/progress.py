"""Progress reporting: a rich display on a terminal, nothing in --json/CI mode."""

from __future__ import annotations

import sys
import threading
import time
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


class RichProgress:
    """One bar for the whole pull: bytes, speed, ETA and files done."""

    def __init__(self, description: str) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        # Nothing shown here is read as markup: the description holds the model id, notes hold
        # hub messages and paths (see cli.common.console).
        self.console = Console(stderr=True, markup=False, emoji=False)
        self._progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[files]}"), console=self.console, transient=False,
        )
        self._desc = description
        self._task: int | None = None
        self._files_total = 0
        self._files_done = 0
        self._lock = threading.Lock()
        self._last = 0.0
        self._pending = 0

    def begin(self, total_bytes: int, total_files: int) -> None:
        self._files_total = total_files
        self._progress.start()
        self._task = self._progress.add_task(self._desc, total=total_bytes, files=f"0/{total_files} files")

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self._pending += nbytes
            now = time.monotonic()
            if now - self._last < 0.1:
                return
            self._last = now
            n, self._pending = self._pending, 0
        if self._task is not None:
            self._progress.advance(self._task, n)

    def file_done(self, path: str, source: str) -> None:
        with self._lock:
            self._files_done += 1
            done = self._files_done
        if self._task is not None:
            self._progress.update(self._task, files=f"{done}/{self._files_total} files")

    def note(self, message: str) -> None:
        from rich.text import Text

        from qwen_fetch.redact import redact

        self._progress.console.print(Text(redact(message), style="yellow"))

    def end(self) -> None:
        if self._task is not None:
            with self._lock:
                n, self._pending = self._pending, 0
            self._progress.advance(self._task, n)
        self._progress.stop()


def make_progress(description: str, *, json_mode: bool, quiet: bool = False) -> ProgressSink:
    if json_mode or quiet or not sys.stderr.isatty():
        return NullProgress()
    return RichProgress(description)
