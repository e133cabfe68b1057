"""Server-side ``Range`` / ``If-Range`` rules (RFC 9110 §14), pure.

Shared by ``qwen-fetch serve`` and the ``file://`` transport of ``kind: dir``
stores, so both answer a range request exactly the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    """What to send: ``status`` 200 (whole file), 206 (``[start, end]`` inclusive) or 416."""

    status: int
    start: int
    end: int  # inclusive; -1 for an empty body
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1 if self.status != 416 else 0

    def content_range(self) -> str | None:
        if self.status == 206:
            return f"bytes {self.start}-{self.end}/{self.size}"
        if self.status == 416:
            return f"bytes */{self.size}"
        return None


def whole(size: int) -> Span:
    return Span(200, 0, size - 1, size)


def if_range_matches(if_range: str | None, etag: str) -> bool:
    """``If-Range`` with an entity tag: strong comparison only; a date never matches
    (we have no Last-Modified), so the client gets the whole, current file."""
    if if_range is None:
        return True
    v = if_range.strip()
    if v.startswith(("W/", "w/")):
        return False
    return v == f'"{etag}"' or v == etag


def select_span(range_header: str | None, size: int, *, if_range: str | None = None, etag: str = "") -> Span:
    """Decide what to answer to ``Range`` for a file of ``size`` bytes.

    One range only: a multi-range or malformed header is ignored (200, whole
    file), which RFC 9110 allows and every HF client handles.  A range that
    starts at or past the end is 416 (with ``Content-Range: bytes */size``).
    """
    if not range_header or not if_range_matches(if_range, etag):
        return whole(size)
    m = _RANGE_RE.match(range_header)
    if m is None:
        return whole(size)
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return whole(size)
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return Span(416, 0, -1, size)
        return Span(206, max(size - n, 0), size - 1, size)
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return whole(size)  # invalid range: ignore it
    if start >= size:
        return Span(416, 0, -1, size)
    return Span(206, start, end, size)
