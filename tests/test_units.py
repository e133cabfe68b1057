"""One byte formatter and progress bars that fit an 80-column terminal."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from qwen_fetch.cli.progress import RichProgress
from qwen_fetch.core.units import format_bytes, format_progress, format_rate


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (495_800, "495.8 kB"), (999_949, "999.9 kB"),
    (999_960, "1.0 MB"), (17_500_000_000, "17.5 GB"), (2_000_000_000_000, "2.0 TB"),
])
def test_format_bytes_is_decimal_si(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_rate_and_progress_share_the_unit() -> None:
    assert format_rate(123_400_000) == "123.4 MB/s"
    assert format_progress(8_812_345_678, 17_500_000_000) == "8.8/17.5 GB"
    assert format_progress(495_800, 495_800) == "495.8/495.8 kB"
    assert format_progress(12, 900) == "12/900 B"


def test_no_other_byte_formatter_in_the_package() -> None:
    """Every size goes through qwen_fetch.core.units: no module divides by 1024 for display or names a unit."""
    pkg = Path(__file__).resolve().parent.parent / "qwen_fetch"
    offenders = []
    for f in pkg.rglob("*.py"):
        if f.name == "units.py":
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r'"[^"]*\b(KiB|MiB|GiB|TiB|KB|kB|MB|GB|TB)(/s)?"', code) or "DownloadColumn" in code \
                    or "TransferSpeedColumn" in code or "rich.filesize" in code:
                offenders.append(f"{f.relative_to(pkg)}:{i}: {line.strip()}")
    assert offenders == []


def _render(desc: str, total: int, done: int, files: int, *, count_files: bool = True) -> list[str]:
    """The bar's lines as an 80-column terminal shows them after ``done`` bytes and every file."""
    live = Console(width=80, force_terminal=True, file=io.StringIO(), color_system=None)
    p = RichProgress(desc, count_files=count_files, console=live)
    p.begin(total, files)
    p.advance(done)
    p._last = 0.0  # flush the throttled advance now
    p.advance(0)
    for _ in range(files):
        p.file_done("f", "src")
    shot = Console(width=80, force_terminal=True, record=True, file=io.StringIO(), color_system=None)
    if p._task is not None:
        shot.print(p._progress.get_renderable())
    p.end()
    return [line for line in shot.export_text().splitlines() if line.strip()]


@pytest.mark.parametrize("desc, total, files", [
    ("pull Qwen/Qwen3-VL-8B-Instruct", 17_500_000_000, 13),
    ("pull some-organisation/a-very-long-model-name-indeed", 999_900_000_000, 1234),
    ("verify", 495_800, 13),
])
def test_bar_fits_80_columns_on_one_line(desc: str, total: int, files: int) -> None:
    lines = _render(desc, total, total // 2, files)
    assert len(lines) == 1, lines  # nothing wrapped onto a second line
    last = lines[0]
    assert len(last) <= 80
    assert re.search(r"\d/\d+(\.\d)? (B|kB|MB|GB|TB)\b", last), last  # the unit is on the same line
    assert f"{files}/{files} files" in last


def test_verify_bar_has_no_files_counter_that_stays_at_zero() -> None:
    last = _render("verify", 495_800, 495_800, 13, count_files=False)[-1]
    assert "495.8/495.8 kB" in last
    assert "0/13" not in last and "verify 13 files" in last


def test_no_bar_for_work_already_done() -> None:
    assert _render("pull org/name", 0, 0, 0) == []
