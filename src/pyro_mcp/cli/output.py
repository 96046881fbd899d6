"""How the CLI reports results, progress and errors."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import ValidationError
from ..jsonsafe import json_safe


def emit_json(data: Any) -> None:
    text = json.dumps(json_safe(data), indent=2, sort_keys=False, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def emit_error(message: str, as_json: bool) -> None:
    message = message.strip() or "unknown error"
    if as_json:
        emit_json({"ok": False, "error": message})
    else:
        first, *rest = message.splitlines()
        sys.stderr.write(f"[error] {first}\n")
        for line in rest:
            sys.stderr.write(f"        {line}\n")
    sys.stderr.flush()


class BuildProgress:
    """Environment build progress: a progress bar on a terminal (rich, imported only then:
    cli/progress.py), else one ``[tag]`` line per phase and detail on stderr."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.bar: Any = None

    def __call__(self, phase: str, detail: str) -> None:
        if self.bar is None and phase == "install" and sys.stderr.isatty():
            from .progress import BuildBar

            self.bar = BuildBar()
        if self.bar is not None:
            self.bar.update(phase, detail)
        elif phase == "detail":
            sys.stderr.write(f"[{self.tag}]   {detail}\n")
        else:
            sys.stderr.write(f"[{self.tag}] phase={phase} {detail}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def read_value_file(shown: str, path: str, max_bytes: int | None) -> str:
    """A CLI value read from a file (``-``: stdin): UTF-8 text, at most ``max_bytes``."""
    limit = -1 if max_bytes is None else max_bytes + 1  # never read a huge file whole
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit)
        else:
            with open(path, "rb") as handle:
                data = handle.read(limit)
    except OSError as exc:
        raise ValidationError(f"{shown}: {exc.strerror or exc}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise ValidationError(f"{shown}: the file is longer than the limit of {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{shown}: not UTF-8 text (byte {exc.start})") from None


def notice(tag: str) -> Any:
    def notify(message: str) -> None:
        sys.stderr.write(f"[{tag}] {message}\n")
        sys.stderr.flush()

    return notify
