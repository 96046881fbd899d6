"""Archives out of a workspace as streams: the guest's tar arrives as ``chunk`` events of at
most 1 MiB, read here by a consumer in the caller's thread while the call runs in another;
at most a few MiB wait in between (guest/chunks.py), whatever the archive's size."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from ..engines.base import Sandbox
from ..errors import StateError
from ..guest.chunks import CHUNK_BYTES, Chunks
from .handle import Handle
from .layout import archive_limit

T = TypeVar("T")
STREAM_TIMEOUT = 3600.0  # a call's time limit: the archive is bounded by the disk only


class Download:
    """``tar_out`` of one workspace path as a stream: ``read`` it (a file), ``reply`` for
    the guest's description of the archive (it comes after the data).

    The guest is not trusted to end: past :func:`archive_limit` the rest is dropped and
    the reader gets a one-line error, without waiting for the guest to stop sending."""

    def __init__(self, ws: Handle, path: str) -> None:
        self.chunks = Chunks()
        self.outcome: dict[str, Any] = {}
        self.received = 0
        disk_mib = ws.record()["disk_mib"]
        self.limit = archive_limit(disk_mib)
        self.too_big = (
            f"the archive of {path} is larger than twice the workspace's disk limit "
            f"({disk_mib} MiB): refused"
        )
        args = {"path": path, "stream": True}
        self.thread = threading.Thread(target=self._run, args=(ws, args), daemon=True)
        self.thread.start()

    def _run(self, ws: Handle, args: dict[str, Any]) -> None:
        try:
            self.outcome["info"] = ws.call(
                "tar_out", args, on_event=self._on_event, timeout=STREAM_TIMEOUT
            )[0]
        except BaseException as exc:
            self.outcome["error"] = exc
        self.chunks.end("the workspace's archive ended early" if "error" in self.outcome else None)

    def _on_event(self, kind: str, data: bytes) -> None:
        if kind != "chunk":
            return
        self.received += len(data)
        if self.received > self.limit:
            self.chunks.end(self.too_big)  # this chunk and every later one dropped
        else:
            self.chunks.put(data)

    def read(self, size: int = -1, /) -> bytes:
        return self.chunks.read(size)

    def reply(self) -> dict[str, Any]:
        """The guest's answer, once the rest of the data is read (and dropped)."""
        while self.chunks.read(CHUNK_BYTES):
            pass
        return self.close()

    def close(self) -> dict[str, Any]:
        """Drop what is left, wait for the call; raise its error (the guest's error wins
        over what a reader saw of it)."""
        self.chunks.close()
        if self.received > self.limit:
            raise StateError(self.too_big)  # the call ends by itself, its data dropped
        self.thread.join()
        if "error" in self.outcome:
            raise self.outcome["error"]
        return dict(self.outcome["info"])


def unpack_in_guest(sandbox: Sandbox | None, seed: bytes | Path, guest_links: bool) -> Any:
    """``tar_in`` of ``seed`` (bytes, or a file: streamed) into the sandbox's /workspace."""
    assert sandbox is not None
    args = {"dest": "/workspace", "guest_links": guest_links}
    with tar_source(seed) as data:
        return sandbox.client.call("tar_in", args, data, None, STREAM_TIMEOUT)[0]


def download(ws: Handle, path: str, consume: Callable[[Download], T]) -> tuple[dict[str, Any], T]:
    """``tar_out`` of ``path`` read by ``consume`` in this thread as it comes: (the guest's
    description of the archive, what ``consume`` returned). A failure on either side
    raises; the guest's own error wins."""
    stream = Download(ws, path)
    try:
        value = consume(stream)
    except BaseException:
        stream.close()  # raises the guest's error if there was one
        raise
    return stream.close(), value


@contextlib.contextmanager
def tar_source(tar: bytes | Path) -> Iterator[bytes | IO[bytes]]:
    """A tar to send: its bytes as they are, or its file opened (sent as an upload)."""
    if isinstance(tar, bytes):
        yield tar
    else:
        with tar.open("rb") as file:
            yield file
