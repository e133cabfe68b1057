"""How sizes and speeds read everywhere qwen-fetch prints them: one formatter, one convention.

Decimal SI units (1 kB = 1000 B, then MB, GB, TB), as the Hugging Face Hub shows a
model's size, as ``hf download``'s progress counts, and as rich's progress columns do:
"17.5 GB" on the model page is "17.5 GB" here.  Every message, table and progress bar
goes through :func:`format_bytes`, so one file never reads as three different sizes.
"""

from __future__ import annotations

_UNITS = ("kB", "MB", "GB", "TB", "PB")


def format_bytes(n: float) -> str:
    """``0 B``, ``999 B``, ``1.0 kB``, ``495.8 kB``, ``17.5 GB``: one decimal above a kilobyte."""
    if abs(n) < 1000:
        return f"{int(n)} B"
    value = float(n)
    for unit in _UNITS:
        value /= 1000
        # Rounded first, so 999_960 B reads "1.0 MB", not "1000.0 kB".
        if abs(round(value, 1)) < 1000 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_rate(bytes_per_second: float) -> str:
    """A transfer or hashing speed: ``format_bytes`` per second, e.g. ``123.4 MB/s``."""
    return f"{format_bytes(bytes_per_second)}/s"


def format_progress(done: float, total: float) -> str:
    """``8.8/17.5 GB``: both numbers in the total's unit, so the pair stays short in a bar."""
    if abs(total) < 1000:
        return f"{int(done)}/{int(total)} B"
    value = float(total)
    scale = 1
    for unit in _UNITS:
        value /= 1000
        scale *= 1000
        if abs(round(value, 1)) < 1000 or unit == _UNITS[-1]:
            return f"{done / scale:.1f}/{total / scale:.1f} {unit}"
    raise AssertionError("unreachable")
