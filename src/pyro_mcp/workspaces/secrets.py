"""Host side of workspace secrets: validation, private storage, env mapping, redaction.

Values live only in the workspace's private directory (0700, files 0600) and in the guest's
/run/pyro-secrets; records and payloads carry names and source kinds only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from ..guest.secrets import MARK

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_SECRET_BYTES = 64 * 1024
MARK_TEXT = MARK.decode()


def secret_name(name: Any, what: str = "secret name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(f"{what} {name!r} must match {NAME_RE.pattern}")
    return name


def _value(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"secret {name!r} must have a non-empty UTF-8 value")
    if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
        raise ValidationError(f"secret {name!r} is larger than 64 KiB")
    return value


def resolve(items: Any) -> list[tuple[str, str, str]]:
    """Validate ``[{name, value} | {name, file_path}]`` → [(name, value, source_kind)].

    Files are read once, now. Errors name the secret, never its value.
    """
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValidationError("secrets must be a list of {name, value} or {name, file_path}")
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            raise ValidationError("each secret must be {name, value} or {name, file_path}")
        name = secret_name(item.get("name"))
        if name in seen:
            raise ValidationError(f"secret {name!r} is given twice")
        seen.add(name)
        has_value, has_file = "value" in item, "file_path" in item
        if has_value == has_file:
            raise ValidationError(f"secret {name!r} needs exactly one of value or file_path")
        if has_value:
            out.append((name, _value(name, item["value"]), "literal"))
            continue
        path = Path(str(item["file_path"])).expanduser()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ValidationError(f"secret {name!r}: cannot read {path}: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(f"secret {name!r}: {path} is not UTF-8 text") from None
        out.append((name, _value(name, text), "file"))
    return out


def parse_cli(items: list[str] | None, kind: str) -> list[dict[str, str]]:
    """``--secret NAME=VALUE`` / ``--secret-file NAME=PATH`` → SDK secret dicts."""
    out = []
    for item in items or []:
        name, sep, rest = item.partition("=")
        if not sep:
            flag = "--secret" if kind == "value" else "--secret-file"
            raise ValidationError(f"{flag} expects NAME={'VALUE' if kind == 'value' else 'PATH'}")
        out.append({"name": name, kind: rest})
    return out


def parse_secret_env(items: list[str] | None) -> dict[str, str] | None:
    """``--secret-env SECRET[=ENV]`` (repeatable) → ``{SECRET: ENV}``."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        secret, _, env = item.partition("=")
        out[secret] = env or secret
    return out


def env_mapping(mapping: Any, known: list[str]) -> dict[str, str] | None:
    """Validate ``{SECRET: ENV}`` against the workspace's secrets → ``{ENV: SECRET}``."""
    if mapping is None:
        return None
    if not isinstance(mapping, dict):
        raise ValidationError("secret_env must map secret names to env var names")
    out: dict[str, str] = {}
    for secret, env in mapping.items():
        secret_name(secret)
        if secret not in known:
            raise ValidationError(f"secret_env names unknown secret {secret!r}")
        env_name = secret_name(env or secret, "env var name")
        if env_name in out:
            raise ValidationError(f"env var {env_name!r} is mapped twice")
        out[env_name] = secret
    return out


def store(directory: Path, values: list[tuple[str, str, str]]) -> None:
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    for name, value, _kind in values:
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)


def load(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        return {}
    return {p.name: p.read_text() for p in sorted(directory.iterdir()) if p.is_file()}


def install_payload(directory: Path) -> bytes:
    return json.dumps(load(directory)).encode()


class Redactor:
    """One workspace's secret values, masked as ``[REDACTED]``: the host's one home of
    redaction (commands, results, history, patches and error messages all pass here)."""

    def __init__(self, values: Iterable[str]) -> None:
        ordered = sorted({v for v in values if v}, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, text: str) -> str:
        if self.pattern is None:
            return text
        return self.pattern.sub(MARK_TEXT, text)

    def value(self, value: Any) -> Any:
        """Every string inside ``value`` (dicts, lists, tuples) redacted."""
        if self.pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(item) for item in value)
        return value

    def error(self, exc: BaseException) -> None:
        """Redact an exception's message in place (its type and traceback are kept)."""
        if self.pattern is not None:
            exc.args = tuple(self.value(arg) for arg in exc.args)


def redactor(directory: Path) -> Redactor:
    return Redactor(load(directory).values())
