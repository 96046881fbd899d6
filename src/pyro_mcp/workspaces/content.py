"""What a file read returns (live and stopped workspaces alike): the content as UTF-8
text or base64, never a character split at ``max_bytes``, binary data flagged."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any


def whole_characters(data: bytes) -> bytes:
    """``data`` without a UTF-8 character cut off at its end (text only: the bytes of a
    binary file are kept as they are)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
            return data[: exc.start]
    return data


def is_binary(data: bytes) -> bool:
    """Not text: a NUL byte, or bytes that are not UTF-8."""
    if b"\0" in data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def file_content(
    data: bytes, truncated: bool, how: str, redact: Callable[[str], str]
) -> dict[str, Any]:
    """The content fields of a read of ``data`` (already cut at max_bytes when
    ``truncated``). Text content of a binary file shows U+FFFD where bytes are not UTF-8;
    ``binary`` says so, and ``encoding="base64"`` returns the exact bytes instead."""
    if truncated:
        data = whole_characters(data)
    if how == "base64":
        raw = redact(data.decode("utf-8", errors="surrogateescape"))
        content = base64.b64encode(raw.encode("utf-8", errors="surrogateescape")).decode()
    else:
        content = redact(data.decode("utf-8", errors="replace"))
    return {
        "content": content,
        "encoding": how,
        "binary": is_binary(data),
        "returned_bytes": len(data),
    }
