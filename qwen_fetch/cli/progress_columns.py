"""rich progress columns that print sizes through :mod:`qwen_fetch.core.units` (imported only with a bar)."""

from __future__ import annotations

from rich.progress import ProgressColumn, Task
from rich.table import Column
from rich.text import Text

from qwen_fetch.core.units import format_progress, format_rate


class BytesColumn(ProgressColumn):
    """Done/total in the total's unit, e.g. 8.8/17.5 GB (rich's own column switches units by a flag)."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True, justify="right"))

    def render(self, task: Task) -> Text:
        return Text(format_progress(task.completed, task.total or 0), style="progress.download")


class RateColumn(ProgressColumn):
    """``123.4 MB/s`` once rich has a speed estimate, blank before."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True, justify="right"))

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else format_rate(speed), style="progress.data.speed")
