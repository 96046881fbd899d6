"""Host side of workspace secrets: validation, private storage, env mapping, redaction.

Values live only in the workspace's private directory (0700, files 0600). A plain secret's
value is also in the guest (/run/pyro-secrets, mapped env vars); a brokered one (bound to
hosts) never is: the guest gets its placeholder and the egress proxy adds the value
(network/broker.py). Records and payloads carry names, source kinds and hosts only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import NotFoundError, ValidationError
from ..guest.secrets import MARK
from ..network import broker
from ..network.policy import allow_hosts

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_SECRET_BYTES = 64 * 1024
MARK_TEXT = MARK.decode()
LOCK = "secrets.lock"  # in the workspace's directory (``locked``)


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


class Secret(NamedTuple):
    name: str
    value: str
    kind: str  # source kind: literal | file
    binding: broker.Binding | None = None  # brokered: the hosts it is added for

    def public(self) -> dict[str, Any]:
        """What records and payloads show (never the value nor the placeholder)."""
        out: dict[str, Any] = {"name": self.name, "source_kind": self.kind}
        if self.binding is not None:
            out["hosts"] = list(self.binding.hosts)
        return out


BIND_KEYS = ("hosts", "header", "format")


def binding(name: str, item: dict[str, Any], value: str) -> broker.Binding | None:
    """The checked ``hosts``/``header``/``format`` of one secret (None: a plain secret)."""
    if item.get("hosts") is None:
        if any(item.get(key) is not None for key in BIND_KEYS):
            raise ValidationError(f"secret {name!r}: header and format need hosts")
        return None
    hosts = allow_hosts(item["hosts"], f"secret {name!r} hosts")
    if not hosts:
        raise ValidationError(f"secret {name!r}: hosts must name at least one host")
    for host in hosts:
        if host.startswith("*.") and "." not in host[2:]:
            raise ValidationError(
                f"secret {name!r}: {host} covers a whole top-level domain (anyone can register "
                "a name there); bind the service's own domain"
            )
    header = item.get("header") or broker.DEFAULT_HEADER
    if not isinstance(header, str) or not broker.HEADER_RE.match(header):
        raise ValidationError(f"secret {name!r}: header must be an HTTP header name")
    if header.lower() in broker.RESERVED_HEADERS:
        raise ValidationError(f"secret {name!r}: a secret cannot go in the {header} header")
    form = item.get("format") or broker.DEFAULT_FORMAT
    if (
        not isinstance(form, str)
        or form.count("{value}") != 1
        or len(form) > broker.MAX_FORMAT
        or not _header_text(form)
    ):
        raise ValidationError(
            f"secret {name!r}: format must hold {{value}} once, on one line, no space at "
            "either end (≤256 chars)"
        )
    if not _header_text(value):
        raise ValidationError(
            f"secret {name!r}: a brokered value must be one line of text (no control "
            "characters, no space at either end)"
        )
    return broker.Binding(tuple(hosts), header, form)


def _header_text(text: str) -> bool:
    """Fit for an HTTP header value: no control character but tab, no space or tab at either
    end (h11 would refuse it, and its error would quote the value)."""
    if text != text.strip(" \t"):
        return False
    return not any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in text)


def resolve(items: Any) -> list[Secret]:
    """Validate ``[{name, value | file_path, hosts?, header?, format?}]`` → [Secret].

    Files are read once, now. Errors name the secret, never its value.
    """
    items = merge_bindings(items)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValidationError("secrets must be a list of {name, value} or {name, file_path}")
    out: list[Secret] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            raise ValidationError("each secret must be {name, value} or {name, file_path}")
        name = secret_name(item.get("name"))
        if name in seen:
            raise ValidationError(f"secret {name!r} is given twice")
        seen.add(name)
        value, kind = _source(name, item)
        if kind == "file" and item.get("hosts") is not None:
            value = value.rstrip("\r\n")  # a header value: the file's line ending is not in it
        out.append(Secret(name, value, kind, binding(name, item, value)))
    return out


def check_network(values: list[Secret], network_policy: str) -> None:
    """A brokered secret is added at the egress proxy: it needs a network."""
    bound = [s.name for s in values if s.binding is not None]
    if bound and network_policy == "off":
        raise ValidationError(
            f"secret {bound[0]!r} is bound to hosts: it needs network_policy 'egress'"
        )


def _source(name: str, item: dict[str, Any]) -> tuple[str, str]:
    has_value, has_file = "value" in item, "file_path" in item
    if has_value == has_file:
        raise ValidationError(f"secret {name!r} needs exactly one of value or file_path")
    if has_value:
        return _value(name, item["value"]), "literal"
    path = Path(str(item["file_path"])).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"secret {name!r}: cannot read {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"secret {name!r}: {path} is not UTF-8 text") from None
    return _value(name, text), "file"


def parse_cli(items: list[str] | None, kind: str) -> list[dict[str, Any]]:
    """``--secret NAME=VALUE`` (``NAME=@PATH`` reads PATH) / ``--secret-file NAME=PATH`` /
    ``--secret-host NAME=HOST`` / ``--secret-header NAME=HEADER`` → SDK secret dicts (a host
    or header joins the secret of the same name in ``resolve``)."""
    flag = {"value": "--secret", "file_path": "--secret-file", "hosts": "--secret-host"}.get(
        kind, f"--secret-{kind}"
    )
    out: list[dict[str, Any]] = []
    for item in items or []:
        name, sep, rest = item.partition("=")
        if not sep or not rest:
            what = {"value": "VALUE|@PATH", "file_path": "PATH", "hosts": "HOST"}.get(
                kind, kind.upper()
            )
            raise ValidationError(f"{flag} expects NAME={what}")
        if kind == "value" and rest.startswith("@"):
            out.append({"name": name, "file_path": rest[1:]})
        elif kind == "hosts":
            out.append({"name": name, "hosts": [rest], BINDING_ONLY: flag})
        elif kind == "header":
            out.append({"name": name, "header": rest, BINDING_ONLY: flag})
        else:
            out.append({"name": name, kind: rest})
    return out


BINDING_ONLY = "_cli_binding"


def merge_bindings(items: Any) -> Any:
    """The CLI's ``--secret-host``/``--secret-header`` items joined to their secrets."""
    if not isinstance(items, list) or not any(
        isinstance(i, dict) and BINDING_ONLY in i for i in items
    ):
        return items
    merged = [dict(i) for i in items if not (isinstance(i, dict) and BINDING_ONLY in i)]
    by_name = {i.get("name"): i for i in merged if isinstance(i, dict)}
    for extra in (i for i in items if isinstance(i, dict) and BINDING_ONLY in i):
        target = by_name.get(extra["name"])
        if target is None:
            raise ValidationError(f"{extra[BINDING_ONLY]} {extra['name']}: no such --secret")
        if "hosts" in extra:
            target["hosts"] = [*(target.get("hosts") or []), *extra["hosts"]]
        if "header" in extra:
            target["header"] = extra["header"]
    return merged


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


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """The workspace's secrets held still while the block runs (an ``flock`` beside
    ``directory``): a set (files, bindings and the record's list: each a read, then a write)
    never loses another's secret, and a fork copies them all or none of one set."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(directory.parent / LOCK, flags, 0o600)
    except FileNotFoundError:  # its workspace was deleted meanwhile
        raise NotFoundError(f"workspace {directory.parent.name!r} does not exist") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def store(directory: Path, values: list[Secret]) -> None:
    """Save (or replace) secrets; a brokered one keeps the placeholder it already had."""
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    bindings = broker.load(directory)
    for secret in values:
        broker.write_private(directory / secret.name, secret.value)
        old = bindings.pop(secret.name, None)
        if secret.binding is not None:
            mark = old.placeholder if old else broker.new_placeholder(secret.name)
            bindings[secret.name] = secret.binding.with_placeholder(mark)
    broker.save(directory, bindings)


def load(directory: Path) -> dict[str, str]:
    """Every secret's value, by name."""
    if not directory.is_dir():
        return {}
    return {
        p.name: p.read_text()
        for p in sorted(directory.iterdir())
        if p.is_file() and NAME_RE.match(p.name)
    }


def install_payload(directory: Path) -> bytes:
    """What the guest gets: a plain secret's value, a brokered secret's placeholder."""
    bindings = broker.load(directory) if directory.is_dir() else {}
    values = load(directory)
    return json.dumps(
        {n: bindings[n].placeholder if n in bindings else v for n, v in values.items()}
    ).encode()


class Redactor:
    """One workspace's secret values, masked as ``[REDACTED]``: the host's one home of
    redaction (commands, results, history, patches and error messages all pass here)."""

    def __init__(self, values: Iterable[str]) -> None:
        ordered = sorted({v for v in values if v}, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        # A progress message is one output line: each line of a multi-line value (a key)
        # is masked there on its own (fragments under 4 characters tell nothing).
        lines = {p.strip() for v in ordered for p in v.splitlines() if len(p.strip()) >= 4}
        pieces = sorted(lines | set(ordered), key=len, reverse=True)
        self.line_pattern = re.compile("|".join(map(re.escape, pieces))) if pieces else None

    def text(self, text: str) -> str:
        if self.pattern is None:
            return text
        return self.pattern.sub(MARK_TEXT, text)

    def progress_line(self, line: str) -> str:
        """One whole output line as a progress message: values and their lines masked."""
        return self.line_pattern.sub(MARK_TEXT, line) if self.line_pattern else line

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

    def labels(self, labels: dict[str, str]) -> dict[str, str]:
        """Labels to store: keys masked too (a label key is the caller's text, unlike the
        field names ``value`` keeps)."""
        return {self.text(key): self.text(item) for key, item in labels.items()}

    def error(self, exc: BaseException) -> None:
        """Redact an exception's message in place (its type and traceback are kept)."""
        if self.pattern is not None:
            exc.args = tuple(self.value(arg) for arg in exc.args)


def redactor(directory: Path) -> Redactor:
    return Redactor(load(directory).values())
