"""Progress reporting: a rich display on a terminal, nothing in --json/CI mode."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from qwen_fetch.core.progress import NullProgress, ProgressSink  # noqa: F401  (re-exported for the commands)


class RichProgress:
    """One bar for the whole command: bytes, speed, ETA and (for pulls) files done.

    Laid out for an 80-column terminal: the description is cut with an ellipsis, the bar
    takes what the columns leave, and no column wraps.  Sizes go through
    :mod:`qwen_fetch.core.units` like every other size qwen-fetch prints.  Nothing is drawn
    for work that is already done (no bytes and no files to go).
    """

    def __init__(self, description: str, *, count_files: bool = True, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        from rich.table import Column

        # Nothing shown here is read as markup: the description holds the model id, notes hold
        # hub messages and paths (see cli.common.console).
        from qwen_fetch.cli.progress_columns import BytesColumn, RateColumn

        self.console = console or Console(stderr=True, markup=False, emoji=False)
        columns: list[Any] = [
            TextColumn("{task.description}", style="bold", markup=False,
                       table_column=Column(no_wrap=True, overflow="ellipsis", max_width=24)),
            BarColumn(bar_width=None),
            BytesColumn(), RateColumn(), TimeRemainingColumn(compact=True),
        ]
        if count_files:
            columns.append(TextColumn("{task.fields[files]}", table_column=Column(no_wrap=True)))
        self._progress = Progress(*columns, console=self.console, transient=False, expand=True)
        self._desc = description
        self._count_files = count_files
        self._task: Any = None
        self._files_total = 0
        self._files_done = 0
        self._lock = threading.Lock()
        self._last = 0.0
        self._pending = 0

    def begin(self, total_bytes: int, total_files: int) -> None:
        if total_bytes <= 0 and total_files <= 0:
            return  # nothing to do: no bar that reads 0/0 bytes
        self._files_total = total_files
        self._progress.start()
        # Without a per-file count (verify hashes files in slices across threads) the total goes up front.
        desc = self._desc if self._count_files else f"{self._desc} {total_files} files"
        self._task = self._progress.add_task(desc, total=total_bytes,
                                             files=f"0/{total_files} files")

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

        from qwen_fetch.core.redact import redact

        self._progress.console.print(Text(redact(message), style="yellow"))

    def end(self) -> None:
        if self._task is not None:
            with self._lock:
                n, self._pending = self._pending, 0
            self._progress.advance(self._task, n)
            self._progress.stop()


def make_progress(description: str, *, json_mode: bool, quiet: bool = False, count_files: bool = True
                  ) -> ProgressSink:
    if json_mode or quiet or not sys.stderr.isatty():
        return NullProgress()
    return RichProgress(description, count_files=count_files)
