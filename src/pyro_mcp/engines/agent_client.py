"""Host side of the guest-agent protocol: many concurrent calls over one byte stream."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import IO, Any, Protocol, cast

from ..errors import SandboxError, ValidationError
from ..guest.chunks import CHUNK_BYTES
from ..guest.protocol import FrameTooLarge, ProtocolError, encode, read_frame

EventHandler = Callable[[str, bytes], None]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class AgentGone(SandboxError):
    """The sandbox's agent stream closed (the sandbox stopped or crashed)."""


class AgentTimeout(AgentGone):
    """The agent did not answer a request within its time limit (it may be alive, or not)."""

    def __init__(self, name: str, op: str, timeout: float) -> None:
        super().__init__(f"{name} did not answer {op!r} within {timeout:g}s")
        self.op = op
        self.timeout = timeout


class AgentCallError(SandboxError):
    """The agent ran the request and reported an error."""


class AgentInvalid(ValidationError):
    """The agent refused the request's input (a bad path, a rejected archive member)."""


class _Pending:
    def __init__(self, on_event: EventHandler | None) -> None:
        self.on_event = on_event
        self.done: queue.Queue[tuple[dict[str, Any], bytes]] = queue.Queue(maxsize=1)


class AgentClient:
    def __init__(self, reader: IO[bytes], writer: IO[bytes], name: str = "sandbox") -> None:
        self._reader = reader
        self._writer = writer
        self._name = name
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed: str | None = None
        self.ended = threading.Event()  # set once the stream is closed or broken
        self.delivering = False  # the reader is in an event's handler (it may block on it)
        self._thread = threading.Thread(target=self._read_loop, daemon=True, name=f"agent-{name}")
        self._thread.start()

    @property
    def busy(self) -> bool:
        """True while a call waits for its answer."""
        return bool(self._pending)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def close_reason(self) -> str | None:
        return self._closed

    def _read_loop(self) -> None:
        try:
            while True:
                message, data = read_frame(self._reader)
                with self._lock:
                    pending = self._pending.get(int(message.get("id", -1)))
                if pending is None:
                    continue
                if "event" in message:
                    if pending.on_event is not None:
                        self.delivering = True
                        try:
                            pending.on_event(str(message["event"]), data)
                        finally:
                            self.delivering = False
                    continue
                with self._lock:
                    self._pending.pop(int(message["id"]), None)
                pending.done.put((message, data))
        except (ProtocolError, OSError, ValueError) as exc:
            reason = str(exc) or "stream closed"
        self._fail_all(reason)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            self._closed = reason
            pending = list(self._pending.values())
            self._pending.clear()
        self.ended.set()
        for item in pending:
            item.done.put(({"ok": False, "gone": True, "error": reason}, b""))

    def call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        data: bytes | Readable = b"",
        on_event: EventHandler | None = None,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """One request and its answer. ``data``: its bytes, or a readable file sent as an
        upload in chunks of at most 1 MiB (guest/chunks.py), whatever its size."""
        req_id = next(self._ids)
        pending = _Pending(on_event)
        with self._lock:
            if self._closed is not None:
                raise AgentGone(f"{self._name} is not running ({self._closed})")
            self._pending[req_id] = pending
        upload = not isinstance(data, bytes)
        message = {"id": req_id, "op": op, "args": args or {}, **({"upload": 1} if upload else {})}
        try:
            frame = encode(message, b"" if upload else cast(bytes, data))
        except FrameTooLarge as exc:
            with self._lock:
                self._pending.pop(req_id, None)
            raise AgentInvalid(f"{op} request refused: {exc}") from None
        try:
            self._send(frame)
            if upload:
                self._upload(req_id, pending, cast(Readable, data))
        except (OSError, ValueError) as exc:
            with self._lock:
                self._pending.pop(req_id, None)
            raise AgentGone(f"{self._name} is not running ({exc})") from exc
        try:
            message, payload = pending.done.get(timeout=timeout)
        except queue.Empty:
            with self._lock:
                self._pending.pop(req_id, None)
            raise AgentTimeout(self._name, op, timeout or 0.0) from None
        if message.get("gone"):
            raise AgentGone(f"{self._name} stopped during {op!r} ({message.get('error')})")
        if not message.get("ok"):
            error = str(message.get("error") or "agent error")
            if message.get("kind") == "invalid":
                raise AgentInvalid(error)
            raise AgentCallError(error)
        result = message.get("result")
        return (result if isinstance(result, dict) else {}), payload

    def _send(self, frame: bytes) -> None:
        with self._write_lock:
            self._writer.write(frame)
            self._writer.flush()

    def _upload(self, req_id: int, pending: _Pending, source: Readable) -> None:
        """Send ``source`` as upload chunks (other requests' frames may go between them),
        then its end; stops early once the request is answered (it failed)."""
        error: str | None = None
        try:
            while pending.done.empty() and (chunk := source.read(CHUNK_BYTES)):
                self._send(encode({"id": req_id}, chunk))
        except (OSError, ValueError) as exc:  # the source failed: the agent gives up too
            error = f"reading the upload failed: {exc}"
        self._send(encode({"id": req_id, "end": 1, **({"error": error} if error else {})}))

    def close_writer(self) -> None:
        """Send EOF: the agent ends when its request stream does."""
        with self._write_lock:
            try:
                self._writer.close()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        """Close our end. The reader thread ends when the transport does (engine stopped)."""
        self.close_writer()
        self._thread.join(timeout=0.5)
        if not self._thread.is_alive():
            try:
                self._reader.close()
            except (OSError, ValueError):
                pass
