"""A TCP relay on 127.0.0.1 that alters one byte string in everything a real server sends back:
bit rot on the wire, to prove a corrupted download is never stored as a good copy."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .procs import LOOPBACK


def _pump(src: socket.socket, dst: socket.socket, old: bytes = b"", new: bytes = b"") -> None:
    keep = len(old) - 1 if old else 0
    held = b""
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            data = held + data
            if old:
                data = data.replace(old, new)
                # Hold back a possible start of the marker split across two reads.
                data, held = (data[:-keep], data[-keep:]) if keep and len(data) > keep else (b"", data)
            dst.sendall(data)
        dst.sendall(held)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextmanager
def corrupting_relay(upstream: str, old: bytes, new: bytes) -> Iterator[str]:
    """Yield an http://127.0.0.1:PORT endpoint relaying to ``upstream`` with ``old`` replaced by ``new``
    (same length, so Content-Length stays right) in the server's responses."""
    assert len(old) == len(new)
    host, port = upstream.removeprefix("http://").rsplit(":", 1)
    lsock = socket.socket()
    lsock.bind((LOOPBACK, 0))
    lsock.listen(64)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = lsock.accept()
            except OSError:
                return
            server = socket.create_connection((host, int(port)))
            threading.Thread(target=_pump, args=(client, server), daemon=True).start()
            threading.Thread(target=_pump, args=(server, client, old, new), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://{LOOPBACK}:{lsock.getsockname()[1]}"
    finally:
        stop.set()
        lsock.close()
