"""A slow TCP link on 127.0.0.1 to a real server that a test can break in the middle of a transfer.

Breaking it shuts open connections down (both directions, so the client sees its stream end early, not
a hang); after a cut new connections are refused too (the server died), after a drop they go through
(a blip).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .procs import LOOPBACK

CHUNK = 16 * 1024


class Link:
    def __init__(self, upstream_port: int, bytes_per_second: float) -> None:
        self._upstream = upstream_port
        self._rate = bytes_per_second
        self._lock = threading.Lock()
        self._next = time.monotonic()
        self._socks: list[socket.socket] = []
        self._cut = threading.Event()
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="cutlink", daemon=True).start()

    def cut(self) -> None:
        """The server is gone: open connections end, new ones are refused."""
        self._cut.set()
        self._listener.close()
        self.drop()

    def drop(self) -> None:
        """A network blip: every open connection ends mid-way; new ones go through."""
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            socks = list(self._socks)
        self.cut()
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self._cut.is_set():
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection((LOOPBACK, self._upstream))
            except OSError:
                continue
            with self._lock:
                self._socks += [client, server]
            if self._cut.is_set():  # cut while connecting
                for s in (client, server):
                    s.shutdown(socket.SHUT_RDWR)
                return
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _take(self, n: int) -> None:
        """One budget for all connections: the link's capacity (responses only)."""
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + n / self._rate
        if slot > now:
            time.sleep(slot - now)

    def _pump(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        try:
            while not self._cut.is_set() and (data := src.recv(CHUNK)):
                if slow:
                    self._take(len(data))
                if self._cut.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextmanager
def cuttable(upstream_port: int, bytes_per_second: float) -> Iterator[Link]:
    """A link to upstream_port whose responses flow at bytes_per_second, until cut or the block exits."""
    link = Link(upstream_port, bytes_per_second)
    try:
        yield link
    finally:
        link.close()
