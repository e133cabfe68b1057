"""A loopback server that answers every request with response headers that never end, a byte at a time.

The other dripping sources (bodies, API answers) are :class:`~tests.support.hub.Faults` ``drip``
of the test hub; this one drips *before* the body, where a per-read timeout
never fires and only a deadline for the whole header block can end the wait.
"""

from __future__ import annotations

import socket
import threading
import time


class DripHeadersServer:
    """``with DripHeadersServer() as s: s.url``; ``s.requests`` counts the connections answered."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.requests = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._stop = threading.Event()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> DripHeadersServer:
        threading.Thread(target=self._accept, daemon=True, name="drip-headers").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)  # the request; its content does not matter
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
                while not self._stop.is_set():
                    conn.sendall(b"a")
                    time.sleep(self.interval)
            except OSError:
                return
