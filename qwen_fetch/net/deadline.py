"""How long a source may take: a silence timeout and a minimum transfer rate for every request.

A source that answers nothing is caught by the socket's read timeout, but one
that *drips* (a byte a second, a byte every five seconds) resets that timeout
with every byte and would hold a pull forever.  So every request also has to
keep up a minimum rate: over any ``window`` seconds of a response body at least
``min_rate * window`` bytes must arrive.  A request that fails either check
counts as a failure of its source, and the next source is used.

The limits come from the environment, like curl's ``--speed-limit`` /
``--speed-time`` and pip's ``--timeout``:

* ``QWEN_FETCH_TIMEOUT`` (seconds, default 20): the longest wait to connect, for
  the response headers, and between two reads of a body;
* ``QWEN_FETCH_MIN_RATE`` (bytes per second, default 1024; 0 turns the check off)
  and ``QWEN_FETCH_RATE_WINDOW`` (seconds, default 20): the slowest transfer
  accepted, averaged over that window.

:class:`RateGuard` is pure (the caller passes the clock), so it is tested with
literal numbers.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from qwen_fetch.core.errors import ConfigError

TIMEOUT_ENV = "QWEN_FETCH_TIMEOUT"
MIN_RATE_ENV = "QWEN_FETCH_MIN_RATE"
RATE_WINDOW_ENV = "QWEN_FETCH_RATE_WINDOW"
DEFAULT_TIMEOUT = 20.0
DEFAULT_MIN_RATE = 1024
DEFAULT_RATE_WINDOW = 20.0
MAX_CONNECT_TIMEOUT = 10.0  # a connect takes a round trip or two; longer means the host is not there


class TooSlow(Exception):
    """A response body arrived slower than the minimum rate."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Deadlines:
    timeout: float = DEFAULT_TIMEOUT  # seconds: connect, response headers, silence within a body
    min_rate: int = DEFAULT_MIN_RATE  # bytes/s over ``window``; 0: no rate check
    window: float = DEFAULT_RATE_WINDOW

    @property
    def connect(self) -> float:
        return min(self.timeout, MAX_CONNECT_TIMEOUT)

    def guard(self, now: float) -> RateGuard:
        return RateGuard(self.min_rate, self.window, now)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Deadlines:
        """The limits from ``QWEN_FETCH_TIMEOUT`` / ``QWEN_FETCH_MIN_RATE`` / ``QWEN_FETCH_RATE_WINDOW``."""
        env = os.environ if environ is None else environ
        return cls(timeout=_number(env, TIMEOUT_ENV, DEFAULT_TIMEOUT, positive=True),
                   min_rate=int(_number(env, MIN_RATE_ENV, DEFAULT_MIN_RATE, positive=False)),
                   window=_number(env, RATE_WINDOW_ENV, DEFAULT_RATE_WINDOW, positive=True))


def _number(env: Mapping[str, str], name: str, default: float, *, positive: bool) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value == value and value != float("inf")) or value < 0 or (positive and value == 0):
        raise ConfigError(f"{name} must be a {'positive' if positive else 'non-negative'} number, got {raw[:40]!r}",
                          hint=f"e.g. export {name}={default:g}")
    return value


class RateGuard:
    """Counts a body's bytes as they arrive; :meth:`feed` raises :class:`TooSlow` once a full window of
    the transfer carried fewer than ``min_rate * window`` bytes.

    The check needs control back now and then: every read returns within the
    silence timeout, so a body that drips is caught within ``window + timeout``.
    """

    def __init__(self, min_rate: float, window: float, now: float) -> None:
        self.min_rate = min_rate
        self.window = window
        self.start = now
        self._marks: deque[tuple[float, int]] = deque([(now, 0)])  # (time, bytes so far), oldest first
        self.total = 0

    def feed(self, n: int, now: float) -> None:
        self.total += n
        if self.min_rate <= 0:
            return
        marks = self._marks
        if now - marks[-1][0] >= self.window / 16:  # a mark per 1/16 window keeps the history short
            marks.append((now, self.total))
        # Keep the newest mark at least a window old: the rate over the last window is measured from it.
        while len(marks) > 1 and now - marks[1][0] >= self.window:
            marks.popleft()
        t0, b0 = marks[0]
        span = now - t0
        if span >= self.window and (self.total - b0) < self.min_rate * span:
            raise TooSlow(f"too slow: {self.total - b0} bytes in {span:.0f}s "
                          f"(minimum {self.min_rate:g} B/s, {MIN_RATE_ENV})")


class HeadersDeadline:
    """Shut a socket down if the response headers have not all arrived within ``seconds``.

    The socket's read timeout bounds each ``recv``, not their sum: a server that
    sends its status line and headers a byte at a time would never trip it.  The
    watchdog thread shuts the socket down instead, which wakes the blocked read;
    ``fired`` then tells the caller why the connection ended.  Use as a context
    manager around the read of the headers.
    """

    def __init__(self, sock: socket.socket, seconds: float | None) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._over = False
        self.fired = False
        self._seconds = seconds

    def _cut(self) -> None:
        with self._lock:
            if self._over:
                return
            self.fired = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def __enter__(self) -> HeadersDeadline:
        if self._seconds is not None:
            _WATCHDOG.add(time.monotonic() + self._seconds, self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._over = True


class _Watchdog:
    """One thread for every :class:`HeadersDeadline` of the process, in order of expiry.

    A timer thread per request cost a thread start (and one more thread taking turns
    for the GIL) per request: per file, for a repo of many small files.  A deadline
    whose headers arrived is dropped when it comes due, without waking the thread
    before then.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, HeadersDeadline]] = []
        self._order = itertools.count()  # ties: never compare two deadlines
        self._thread: threading.Thread | None = None

    def add(self, when: float, deadline: HeadersDeadline) -> None:
        with self._cond:
            heapq.heappush(self._due, (when, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="qwen-fetch-deadlines", daemon=True)
                self._thread.start()
            if self._due[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._due and self._due[0][2]._over:
                        heapq.heappop(self._due)
                    if not self._due:
                        self._cond.wait()
                        continue
                    wait = self._due[0][0] - time.monotonic()
                    if wait <= 0:
                        expired = heapq.heappop(self._due)[2]
                        break
                    self._cond.wait(wait)
            expired._cut()


_WATCHDOG = _Watchdog()
