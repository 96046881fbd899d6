"""A gVisor guest's way out and in: TCP inside the sandbox bridged to Unix sockets on the host.

A gVisor sandbox has loopback only (``runsc --network none``). Its host directory of
sockets is mounted read-only (``runsc --host-uds open`` lets the guest connect to them, and
to nothing it could create itself):

- ``proxy.sock``: the agent listens on 127.0.0.1:3128 and joins each connection to this
  socket, whose host end hands it to the egress proxy (``HTTP_PROXY`` points here);
- ``ports.sock``: for a published port the host asks (``port_connect``) for a connection to
  a guest port; the agent makes it and joins it to this socket, introduced by the host's token.

Each connection is a pair of kernel sockets copied by one thread, so a slow reader stalls
only its own connection (the socket buffers bound what is in flight), never the agent's
request stream. The host's egress proxy uses the same ``relay``.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

CHUNK = 256 * 1024
MAX_CONNECTIONS = 64
TOKEN_BYTES = 16
_SLOTS = threading.BoundedSemaphore(MAX_CONNECTIONS)
_LISTENERS: dict[int, socket.socket] = {}


def relay(a: socket.socket, b: socket.socket) -> tuple[int, int]:
    """Copy both ways until both sides are done; bytes (a→b, b→a)."""
    a.settimeout(None)
    b.settimeout(None)
    ends = {a.fileno(): (a, b), b.fileno(): (b, a)}
    counts = dict.fromkeys(ends, 0)
    poller = select.poll()
    for fd in ends:
        poller.register(fd, select.POLLIN)
    open_fds = set(ends)
    while open_fds:
        for fd, _event in poller.poll():
            source, sink = ends[fd]
            try:
                chunk = source.recv(CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                open_fds.discard(fd)
                poller.unregister(fd)
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                continue
            try:
                sink.sendall(chunk)
            except OSError:
                return counts[a.fileno()], counts[b.fileno()]
            counts[fd] += len(chunk)
    return counts[a.fileno()], counts[b.fileno()]


def _join(a: socket.socket, b: socket.socket) -> None:
    try:
        relay(a, b)
    finally:
        a.close()
        b.close()
        _SLOTS.release()


def _unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(10)
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def serve_proxy(port: int, socket_path: str) -> None:
    """Listen on 127.0.0.1:``port`` (once; again is a no-op) and join each connection to the
    host's proxy socket."""
    if port in _LISTENERS:
        return
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    _LISTENERS[port] = listener
    threading.Thread(target=_accept_loop, args=(listener, socket_path), daemon=True).start()


def _accept_loop(listener: socket.socket, socket_path: str) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:  # out of descriptors, say: the port stays open
            time.sleep(0.1)
            continue
        if not _SLOTS.acquire(blocking=False):
            conn.close()  # too many at once: refused at once, never queued
            continue
        try:
            upstream = _unix(socket_path)
        except OSError:
            conn.close()
            _SLOTS.release()
            continue
        threading.Thread(target=_join, args=(conn, upstream), daemon=True).start()


def port_connect(guest_port: int, socket_path: str, token: bytes) -> None:
    """Connect to 127.0.0.1:``guest_port`` and join it to the host's port socket."""
    if not _SLOTS.acquire(blocking=False):
        raise RuntimeError(f"too many connections (limit {MAX_CONNECTIONS})")
    conn: socket.socket | None = None
    try:
        conn = socket.create_connection(("127.0.0.1", guest_port), timeout=10)
        upstream = _unix(socket_path)
        upstream.sendall(token)
    except BaseException:
        if conn is not None:
            conn.close()
        _SLOTS.release()
        raise
    threading.Thread(target=_join, args=(conn, upstream), daemon=True).start()
