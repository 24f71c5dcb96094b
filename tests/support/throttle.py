"""A TCP relay on 127.0.0.1 that caps the bytes/s flowing back from a real server: a slow link.

Lets a test give a migration a duration that does not depend on how fast this machine is (a Prometheus
scraping a migration needs it to run for a while), while client and server stay real.
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


class _Bucket:
    """One shared budget for every connection: the link's capacity, not a per-connection cap."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)  # when the link is free for these n bytes
            self._next = slot + n / self.rate
        if slot > now:
            time.sleep(slot - now)


def _pump(src: socket.socket, dst: socket.socket, bucket: _Bucket | None) -> None:
    try:
        while data := src.recv(CHUNK):
            if bucket:
                bucket.take(len(data))
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextmanager
def throttled(upstream_port: int, bytes_per_second: float) -> Iterator[int]:
    """Relay a free loopback port to upstream_port; responses limited to bytes_per_second in total."""
    bucket = _Bucket(bytes_per_second)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((LOOPBACK, 0))
    listener.listen(64)
    open_socks: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                continue  # closed on exit
            try:
                server = socket.create_connection((LOOPBACK, upstream_port))
            except OSError:
                client.close()
                continue
            open_socks.extend((client, server))
            threading.Thread(target=_pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=_pump, args=(server, client, bucket), daemon=True).start()

    acceptor = threading.Thread(target=serve, name="throttle", daemon=True)
    acceptor.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        listener.close()
        for s in open_socks:
            with contextlib.suppress(OSError):
                s.close()
