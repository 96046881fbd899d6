"""Guest-side secrets: installed under /run/pyro-secrets, mapped into env, redacted in output."""

from __future__ import annotations

import os
import re
import threading

SECRETS_DIR = "/run/pyro-secrets"
MARK = b"[REDACTED]"

_values: dict[str, str] = {}
_lock = threading.Lock()


def install(values: dict[str, str], root: str = SECRETS_DIR) -> list[str]:
    """Replace the installed secrets (files 0600 in a 0700 directory)."""
    os.makedirs(root, mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    for name in os.listdir(root):
        os.unlink(os.path.join(root, name))
    for name, value in values.items():
        fd = os.open(os.path.join(root, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
    with _lock:
        _values.clear()
        _values.update(values)
    return sorted(values)


def env_for(mapping: dict[str, str] | None) -> dict[str, str]:
    """``{ENV_VAR: SECRET_NAME}`` → ``{ENV_VAR: value}``."""
    out: dict[str, str] = {}
    with _lock:
        for env_name, secret in (mapping or {}).items():
            if secret not in _values:
                raise ValueError(f"unknown secret {secret!r}")
            out[env_name] = _values[secret]
    return out


def _needles() -> list[bytes]:
    with _lock:
        values = [v.encode() for v in _values.values() if v]
    return sorted(values, key=len, reverse=True)


def redact(data: bytes) -> bytes:
    """One pass, longest secret first, so a replacement is never itself re-scanned."""
    needles = _needles()
    if not needles:
        return data
    return re.sub(b"|".join(re.escape(n) for n in needles), MARK, data)


def redact_text(text: str) -> str:
    return redact(text.encode("utf-8", errors="surrogateescape")).decode(
        "utf-8", errors="surrogateescape"
    )


class StreamRedactor:
    """Redacts a byte stream fed in chunks: a secret split across two chunks is still caught.

    Unredacted bytes that could be the start of a secret are held back until more data
    (or the end) arrives; output is redacted exactly once.
    """

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        raw = self.pending + chunk
        needles = _needles()
        if not needles:
            self.pending = b""
            return raw
        # Hold back only from the first place where the rest could still grow into a secret
        # (a proper prefix of one): a fixed-length hold-back kept a quiet shell's last line
        # (its prompt) from the reader until more output came.
        firsts = {needle[:1] for needle in needles}
        cut = len(raw)
        for start in range(max(0, len(raw) - len(needles[0]) + 1), len(raw)):
            if raw[start : start + 1] in firsts:
                tail = raw[start:]
                if any(len(n) > len(tail) and n.startswith(tail) for n in needles):
                    cut = start
                    break
        moved = True
        while moved:  # never cut through a whole secret
            moved = False
            for needle in needles:
                start = raw.find(needle, max(0, cut - len(needle) + 1))
                if start != -1 and start < cut < start + len(needle):
                    cut, moved = start, True
        self.pending = raw[cut:]
        return redact(raw[:cut])

    def flush(self) -> bytes:
        out, self.pending = redact(self.pending), b""
        return out
