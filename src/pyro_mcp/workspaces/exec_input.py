"""What an exec takes beyond its command: its own variables and its stdin, checked the same
for every surface, and read from the CLI's ``--env NAME=VALUE`` and ``--stdin-file PATH``.

Light on imports: the CLI's declarations load it.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import validation
from ..errors import ValidationError
from .secrets import secret_name

WORKSPACE = "/workspace"
MAX_ENV_VARS = 64
MAX_ENV_VALUE_BYTES = 32 * 1024
MAX_STDIN_BYTES = validation.MAX_TEXT_BYTES  # 1 MiB of text on the command's stdin


def exec_env(env: Any, secret_targets: dict[str, str] | None) -> dict[str, str] | None:
    """The command's own (non-secret) variables, checked: names as for secrets, values
    text, and never a variable a secret is mapped to (``secret_targets``: {ENV: SECRET})."""
    if env is None:
        return None
    if not isinstance(env, dict):
        raise ValidationError("env must map variable names to values")
    if len(env) > MAX_ENV_VARS:
        raise ValidationError(f"env has {len(env)} variables; the limit is {MAX_ENV_VARS}")
    for name, value in env.items():
        secret_name(name, "env var name")
        validation.text(f"env var {name!r}", value, max_bytes=MAX_ENV_VALUE_BYTES)
        if secret_targets and name in secret_targets:
            raise ValidationError(
                f"env var {name!r} is also set from secret {secret_targets[name]!r} "
                "(secret_env); a secret's variable cannot be overridden"
            )
    return dict(env)


def exec_stdin(stdin: Any) -> bytes:
    """The command's stdin as bytes (none: /dev/null)."""
    if stdin is None:
        return b""
    return validation.text("stdin", stdin, max_bytes=MAX_STDIN_BYTES, allow_nul=True).encode()


def parse_env_args(items: list[str] | None) -> dict[str, str] | None:
    """CLI ``--env NAME=VALUE`` (repeatable) → ``{NAME: VALUE}``."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(f"--env expects NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def read_stdin_file(path: str) -> str:
    """CLI ``--stdin-file PATH`` (``-``: this process's stdin) → the text, bounded."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_STDIN_BYTES + 1)
    except OSError as exc:
        raise ValidationError(f"--stdin-file {path!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_STDIN_BYTES:
        raise ValidationError(f"--stdin-file {path!r} is over the {MAX_STDIN_BYTES}-byte limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"--stdin-file {path!r} is not UTF-8 text") from None
