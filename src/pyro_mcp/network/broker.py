"""Brokered secrets: the guest holds a placeholder, the egress proxy adds the value.

A brokered secret is bound to hosts. Its binding (hosts, header, format and the random
placeholder the guest sees) is kept beside the values in the workspace's private secret
store (``broker.json``; no value in it). The proxy reads the store on every request, so a
rotated value is used from the next request on. This module is the one home of the rule:

- a request to a bound host (over TLS, intercepted by the proxy) gets the value: the
  placeholder in the named header is replaced by it, or, when the request has no such
  header, the header is added as ``format`` with the value;
- a placeholder left anywhere else (another host, another header, plain http) is not
  replaced, and the request is logged as a denied use.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from . import policy

BROKER_FILE = "broker.json"
DEFAULT_HEADER = "Authorization"
DEFAULT_FORMAT = "Bearer {value}"
HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
# Headers that frame or route a request: a secret never goes there.
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade"}
MAX_FORMAT = 256


@dataclass(frozen=True)
class Binding:
    hosts: tuple[str, ...]
    header: str = DEFAULT_HEADER
    format: str = DEFAULT_FORMAT
    placeholder: str = ""

    def with_placeholder(self, placeholder: str) -> Binding:
        return Binding(self.hosts, self.header, self.format, placeholder)

    def binds(self, host: str) -> bool:
        return bool(self.hosts) and policy.host_allowed(host, list(self.hosts))


def new_placeholder(name: str) -> str:
    """What the guest sees instead of the value: random, so worthless outside its workspace."""
    return f"pyro-secret-{name}-{secrets.token_hex(16)}"


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` (0600) at once: the proxy, reading on every request, sees the old
    text or the new one, never an empty or half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(directory: Path, bindings: dict[str, Binding]) -> None:
    data = {name: asdict(b) for name, b in sorted(bindings.items())}
    write_private(directory / BROKER_FILE, json.dumps(data))


def load(directory: Path) -> dict[str, Binding]:
    """The saved bindings ({} when none). A damaged file binds nothing (nothing is added)."""
    try:
        data = json.loads((directory / BROKER_FILE).read_text())
        return {
            name: Binding(tuple(b["hosts"]), b["header"], b["format"], b["placeholder"])
            for name, b in data.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


@dataclass(frozen=True)
class Brokered:
    """One request's view of a workspace's brokered secrets (bindings and their values)."""

    bindings: dict[str, Binding]
    values: dict[str, str]

    @classmethod
    def read(cls, secrets_dir: Path | None) -> Brokered:
        if secrets_dir is None:
            return cls({}, {})
        bindings = load(secrets_dir)
        values: dict[str, str] = {}
        for name in bindings:
            try:
                values[name] = (secrets_dir / name).read_text()
            except OSError:
                continue
        return cls({n: b for n, b in bindings.items() if n in values}, values)

    def intercepts(self, host: str) -> bool:
        """True if some secret is bound to ``host``: its TLS is terminated at the proxy."""
        return any(b.binds(host) for b in self.bindings.values())

    def rewrite(
        self, host: str, headers: list[tuple[bytes, bytes]]
    ) -> tuple[list[tuple[bytes, bytes]], list[str]]:
        """The headers with the values of the secrets bound to ``host`` added (placeholder
        replaced in the named header, or the header added); and the names used."""
        out = list(headers)
        used: list[str] = []
        for name, binding in self.bindings.items():
            if not binding.binds(host):
                continue
            value = self.values[name].encode("utf-8")
            mark = binding.placeholder.encode()
            wanted = binding.header.lower().encode()
            named = [i for i, (key, _v) in enumerate(out) if key.lower() == wanted]
            for i in named:
                key, text = out[i]
                if mark in text:
                    out[i] = (key, text.replace(mark, value))
                    used.append(name)
            if not named:
                added = binding.format.replace("{value}", self.values[name])
                out.append((binding.header.encode(), added.encode("utf-8")))
                used.append(name)
        return out, sorted(set(used))

    def leftovers(self, data: bytes) -> list[str]:
        """Names whose placeholder is still in ``data`` (a request about to leave)."""
        return sorted(n for n, b in self.bindings.items() if b.placeholder.encode() in data)


def denied_use_reason(names: list[str], host: str) -> str:
    return (
        f"denied use of secret {', '.join(names)}: its placeholder was sent to {host} "
        "outside its bound hosts and header; not replaced"
    )
