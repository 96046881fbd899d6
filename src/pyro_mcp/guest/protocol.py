"""Framing shared by the guest agent and the host client.

One byte stream carries frames in both directions. A frame is an 8-byte header
(two big-endian uint32: JSON length, data length), a UTF-8 JSON object, then raw data bytes.

Host -> guest: ``{"id": N, "op": NAME, "args": {...}}`` (+ data for uploads).
Guest -> host: ``{"id": N, "event": KIND}`` + data (streamed output, zero or more), then
exactly one ``{"id": N, "ok": true, "result": {...}}`` or ``{"id": N, "ok": false, "error": MSG}``.
Requests are independent: the agent runs each in its own thread, so replies may interleave.
Archives of any size travel in chunks of at most 1 MiB (guest/chunks.py): an upload as
``{"id": N}`` frames after its request, a download as ``chunk`` events.
"""

from __future__ import annotations

import json
import struct

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any


HEADER = struct.Struct(">II")
MAX_JSON = 4 * 1024 * 1024
MAX_DATA = 256 * 1024 * 1024  # one frame's data; archives stream in 1 MiB chunks instead
PROTOCOL_VERSION = 1


class ProtocolError(Exception):
    """The stream is closed or carries something that is not a frame."""


class FrameTooLarge(ProtocolError):
    """A message that would break the peer's frame limits: refused before it is sent, so the
    stream stays usable and the sender can answer with an error instead."""


def encode(message: dict[str, Any], data: bytes = b"") -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_JSON or len(data) > MAX_DATA:
        raise FrameTooLarge(
            f"message too large for one frame ({len(body)} bytes of JSON, limit {MAX_JSON}; "
            f"{len(data)} bytes of data, limit {MAX_DATA})"
        )
    return HEADER.pack(len(body), len(data)) + body + data


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise ProtocolError("stream closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: IO[bytes]) -> tuple[dict[str, Any], bytes]:
    """Read one frame; raises ProtocolError on EOF or a malformed frame."""
    header = _read_exact(stream, HEADER.size)
    json_len, data_len = HEADER.unpack(header)
    if json_len > MAX_JSON or data_len > MAX_DATA:
        raise ProtocolError(f"frame too large ({json_len} + {data_len} bytes)")
    try:
        message = json.loads(_read_exact(stream, json_len))
    except ValueError as exc:
        raise ProtocolError(f"malformed frame: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("malformed frame: not an object")
    data = _read_exact(stream, data_len) if data_len else b""
    return message, data


def split_output(result: dict[str, Any], data: bytes) -> dict[str, Any]:
    """Host side: an exec result with ``stdout``/``stderr`` text cut from the frame's data
    (the agent sends the two streams as raw bytes, their lengths in the JSON)."""
    if "stdout_bytes" not in result:  # a sandbox whose agent still sends text
        return result
    cut = int(result["stdout_bytes"])
    out, err = data[:cut], data[cut : cut + int(result["stderr_bytes"])]
    return {
        **result,
        "stdout": out.decode("utf-8", errors="replace"),
        "stderr": err.decode("utf-8", errors="replace"),
    }
