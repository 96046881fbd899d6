"""The little HTTP the egress proxy reads: one request head (CONNECT or absolute-form)."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

MAX_HEAD = 64 * 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")
_METHOD_RE = re.compile(r"^[A-Z]{1,20}$")
# Hop-by-hop headers the proxy drops before forwarding a plain HTTP request.
_HOP = {"connection", "proxy-connection", "proxy-authorization", "keep-alive", "te", "upgrade"}


class BadRequest(Exception):
    pass


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The request head (through the blank line) and whatever followed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise BadRequest(f"request head over {MAX_HEAD} bytes")
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise BadRequest("no complete request head in time") from None
        if not chunk:
            raise BadRequest("the connection closed before a complete request head")
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``: a checked host and port."""
    if text.startswith("["):
        host, _, after = text[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else after
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise BadRequest(f"bad address {text!r}") from None
    else:
        host, _, port_text = text.partition(":")
        if not _NAME_RE.match(host):
            raise BadRequest(f"bad host {host!r}")
    if not port_text:
        if default_port is None:
            raise BadRequest(f"{text!r} has no port")
        return host.lower(), default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadRequest(f"bad port in {text!r}")
    return host.lower(), int(port_text)


@dataclass
class Request:
    method: str
    host: str
    port: int
    path: str
    version: str
    headers: list[tuple[str, str]]

    @classmethod
    def parse(cls, head: bytes) -> Request:
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise BadRequest("undecodable head") from None
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not _METHOD_RE.match(parts[0]) or not parts[2].startswith("HTTP/1."):
            raise BadRequest("not an HTTP/1.x proxy request")
        method, target, version = parts
        headers = []
        for line in lines[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep or not name or name != name.strip():
                    raise BadRequest("malformed header line")
                headers.append((name, value.strip()))
        if method == "CONNECT":
            host, port = split_host_port(target, None)
            return cls(method, host, port, "", version, headers)
        if not target.lower().startswith("http://"):
            raise BadRequest("a plain request needs an absolute http:// URL (https uses CONNECT)")
        rest = target[len("http://") :]
        authority, slash, path = rest.partition("/")
        authority = authority.rpartition("@")[2]  # userinfo is not part of the host
        host, port = split_host_port(authority, 80)
        return cls(method, host, port, slash + path or "/", version, headers)

    def origin_head(self) -> bytes:
        """The request as the origin server sees it (path form, one request per connection)."""
        lines = [f"{self.method} {self.path or '/'} {self.version}"]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in _HOP]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
