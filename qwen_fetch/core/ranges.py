"""Pure range arithmetic for the download engine: blocks, plans, splits, backoff.

A file is cut into fixed-size *blocks* (the unit of the resume state and of
writes); a *range* is a half-open byte interval ``(start, end)`` whose start is
block-aligned and whose end is block-aligned or the end of the file, so every
block is always written by exactly one request.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence

Range = tuple[int, int]  # half-open [start, end)

_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


def block_count(size: int, block_size: int) -> int:
    return -(-size // block_size)


def block_span(index: int, size: int, block_size: int) -> Range:
    start = index * block_size
    return start, min(start + block_size, size)


def missing_runs(done: Sequence[bool]) -> list[tuple[int, int]]:
    """Maximal runs ``(first, last + 1)`` of block indices that are not done."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for i, d in enumerate(done):
        if not d and start is None:
            start = i
        elif d and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(done)))
    return runs


def plan_ranges(done: Sequence[bool], size: int, block_size: int, part_size: int,
                single_stream_below: int) -> list[Range]:
    """Byte ranges that cover every missing block.

    Files smaller than ``single_stream_below`` get one range per missing run;
    larger files get ranges of at most ``part_size`` (rounded to whole blocks)
    so that several connections can share one file.
    """
    per_part = max(1, part_size // block_size)
    out: list[Range] = []
    for first, stop in missing_runs(done):
        if size < single_stream_below:
            out.append((first * block_size, min(stop * block_size, size)))
            continue
        for b in range(first, stop, per_part):
            out.append((b * block_size, min(min(b + per_part, stop) * block_size, size)))
    return out


def split_point(pos: int, end: int, block_size: int, min_piece: int) -> int | None:
    """Where to cut an in-flight range ``[pos, end)`` so an idle connection takes the back half.

    ``pos`` is the block the current connection is filling; it keeps that block.
    Returns a block-aligned offset, or ``None`` when either half would be
    smaller than ``min_piece`` (not worth a new request).
    """
    keep_until = pos + block_size
    if end - keep_until < max(min_piece, block_size) or end - pos < 2 * max(min_piece, block_size):
        return None
    mid = pos + (end - pos) // 2
    cut = max(keep_until, (mid + block_size - 1) // block_size * block_size)
    if cut >= end or end - cut < block_size:
        return None
    return cut


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes a-b/total`` -> ``(a, b + 1, total)``; ``None`` when malformed."""
    if not value:
        return None
    m = _CONTENT_RANGE_RE.match(value)
    if not m:
        return None
    a, b = int(m.group(1)), int(m.group(2))
    if b < a:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return a, b + 1, total


def backoff_delay(failures: int, base: float, cap: float, jitter: float) -> float:
    """Exponential backoff with jitter: ``base * 2**(failures-1)`` capped, scaled by ``0.5 + jitter/2``.

    ``jitter`` is a number in [0, 1) supplied by the caller (random in
    production, fixed in tests), so the delay stays in [half, full] of the step.
    """
    step = min(cap, base * 2.0 ** max(0, failures - 1))
    return step * (0.5 + jitter / 2)


def retry_delay(failures: int, retry_after: float | None, base: float, cap: float, jitter: float) -> float:
    """How long to wait before the next try: the backoff, or the server's ``Retry-After`` if longer (capped)."""
    delay = backoff_delay(failures, base, cap, jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date; ``now`` is epoch)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, float(when.timestamp()) - now)


def is_strong_etag(etag: str | None) -> bool:
    """``If-Range`` needs a strong validator; weak ones (``W/"..."``) never match."""
    return bool(etag) and not etag.startswith(("W/", "w/"))  # type: ignore[union-attr]
