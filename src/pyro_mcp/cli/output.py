"""How the CLI reports results, progress and errors."""

from __future__ import annotations

import json
import sys
from typing import Any

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


def progress_printer(tag: str) -> Any:
    def progress(phase: str, detail: str) -> None:
        if phase == "detail":
            sys.stderr.write(f"[{tag}]   {detail}\n")
        else:
            sys.stderr.write(f"[{tag}] phase={phase} {detail}\n")
        sys.stderr.flush()

    return progress


def notice(tag: str) -> Any:
    def notify(message: str) -> None:
        sys.stderr.write(f"[{tag}] {message}\n")
        sys.stderr.flush()

    return notify
