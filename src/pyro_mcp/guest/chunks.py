"""Archives in bounded chunks: a request's body (or a reply's data) that arrives frame by frame.

An upload is a request frame marked ``"upload": true`` followed by frames ``{"id": N}`` +
data (at most :data:`CHUNK_BYTES` each) and one ``{"id": N, "end": true}`` (with
``"error"`` when the sender's source failed). A download is a reply's ``chunk`` events.
Either way the receiver reads the bytes from a :class:`Chunks` as a file: at most
``limit`` chunks wait in it, and the writer of more blocks (so the sender slows down), so
memory stays bounded whatever the archive's size. Used by the guest agent, the supervisor
and the host client alike.
"""

from __future__ import annotations

import threading
from collections import deque

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

CHUNK_BYTES = 1024 * 1024
WAITING_CHUNKS = 8  # at most 8 MiB held per transfer


class Chunks:
    """A bounded pipe of byte chunks between one writer and one reader thread."""

    def __init__(self, limit: int = WAITING_CHUNKS) -> None:
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._ended = False
        self._closed = False  # the reader is done: further chunks are dropped
        self._error: str | None = None
        self._head = b""

    def put(self, chunk: bytes) -> None:
        """Add a chunk; blocks while ``limit`` chunks wait (until the reader takes one)."""
        if not chunk:
            return
        with self._cond:
            while len(self._chunks) >= self._limit and not self._closed:
                self._cond.wait()
            if not self._closed and not self._ended:
                self._chunks.append(chunk)
                self._cond.notify_all()

    def end(self, error: str | None = None) -> None:
        """No more chunks; ``error``: the sender's source failed (the reader raises it)."""
        with self._cond:
            if not self._ended:  # the first end counts
                self._ended, self._error = True, error
            self._cond.notify_all()

    def close(self) -> None:
        """The reader is done (or gave up): drop what waits and every later chunk."""
        with self._cond:
            self._closed = True
            self._chunks.clear()
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for -1); b"" at the end."""
        out: list[bytes] = []
        wanted = size if size >= 0 else None
        while wanted is None or wanted > 0:
            chunk = self._take(wanted)
            if not chunk:
                break
            out.append(chunk)
            if wanted is not None:
                wanted -= len(chunk)
        return b"".join(out)

    def _take(self, size: int | None) -> bytes:
        if not self._head:
            with self._cond:
                while not self._chunks and not self._ended and not self._closed:
                    self._cond.wait()
                if self._chunks:
                    self._head = self._chunks.popleft()
                    self._cond.notify_all()
                elif self._error is not None:
                    raise ValueError(self._error)
        if size is None or size >= len(self._head):
            chunk, self._head = self._head, b""
        else:
            chunk, self._head = self._head[:size], self._head[size:]
        return chunk


class Uploads:
    """The uploads in progress on one stream, by request id (the stream's reader routes)."""

    def __init__(self) -> None:
        self._open: dict[Any, Chunks] = {}
        self._lock = threading.Lock()

    def route(self, message: dict[str, Any], data: bytes) -> bool:
        """True when ``message`` is an upload's chunk or end (delivered here, blocking while
        its reader is behind); False for a request."""
        if "op" in message:
            return False
        with self._lock:
            chunks = self._open.get(message.get("id"))
            if chunks is not None and message.get("end"):
                del self._open[message.get("id")]
        if chunks is not None:
            if message.get("end"):
                error = message.get("error")
                chunks.end(str(error) if error else None)
            else:
                chunks.put(data)
        return True

    def body(self, message: dict[str, Any], data: bytes) -> bytes | Chunks:
        """A request's body: its data, or the Chunks its upload frames will fill."""
        if not message.get("upload"):
            return data
        chunks = Chunks()
        with self._lock:
            self._open[message.get("id")] = chunks
        return chunks


def serve(func: Callable[..., None], message: dict[str, Any], body: Any, *rest: Any) -> None:
    """Run the request ``func(message, body, *rest)``; an upload ends with its request
    (its later chunks are dropped)."""
    try:
        func(message, body, *rest)
    finally:
        if isinstance(body, Chunks):
            body.close()


class ChunkWriter:
    """A write-only file that hands its bytes on in chunks of :data:`CHUNK_BYTES`."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self._buffer = bytearray()
        self.total = 0

    def write(self, data: bytes) -> int:
        self._buffer += data
        self.total += len(data)
        while len(self._buffer) >= CHUNK_BYTES:
            self._send(bytes(self._buffer[:CHUNK_BYTES]))
            del self._buffer[:CHUNK_BYTES]
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._send(bytes(self._buffer))
            self._buffer.clear()
