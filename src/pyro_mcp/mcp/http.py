"""Streamable HTTP for ``pyro mcp serve --transport http`` (operator's flags, never a model's).

- Binds 127.0.0.1 unless ``--bind HOST`` is given, and ``--bind`` needs a token the operator
  set (``--token-file FILE`` or ``PYRO_MCP_TOKEN``), not a generated one.
- Every request carries ``Authorization: Bearer TOKEN`` or gets 401. Without ``--token-file``
  or ``PYRO_MCP_TOKEN`` a token is generated and shown once on stderr.
- A body over ``MAX_BODY_BYTES`` gets 413 (or, chunked, ends the request).
- On loopback, a ``Host`` other than 127.0.0.1/localhost/[::1]:PORT gets 421 (DNS rebinding).
- A request whose ``Origin`` is not this server's own (http://127.0.0.1:PORT, localhost,
  [::1] or the bound host) gets 403: a web page the user visits cannot drive the server.
  Clients that are not browsers send no Origin.

FastMCP's ``streamable_http_app()`` is wrapped in :class:`Guard` and served by uvicorn.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import shlex
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings

from ..errors import ValidationError

TOKEN_ENV = "PYRO_MCP_TOKEN"  # noqa: S105 (the variable's name, not a token)
DEFAULT_PORT = 8765
MIN_TOKEN_CHARS = 16
# A request body's largest size (a 1 MiB file write, JSON-escaped, fits): the SDK reads the
# whole body into memory.
MAX_BODY_BYTES = 16 * 1024 * 1024
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _read_token(token_file: str | None, environ: Mapping[str, str]) -> str | None:
    if token_file:
        where = f"--token-file {token_file}"
        try:
            mode = os.stat(token_file).st_mode
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not a UTF-8 text file"
            raise ValidationError(f"{where}: cannot read it: {reason}") from None
        if mode & 0o077:  # as ssh does with a private key
            raise ValidationError(
                f"{where}: other users may read it (chmod 600 {shlex.quote(token_file)})"
            )
    elif environ.get(TOKEN_ENV, "").strip():
        where, token = TOKEN_ENV, environ[TOKEN_ENV].strip()
    else:
        return None
    if len(token) < MIN_TOKEN_CHARS or not token.isprintable() or " " in token:
        raise ValidationError(
            f"{where}: the token must be at least {MIN_TOKEN_CHARS} printable characters "
            "without spaces"
        )
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str = field(default="", repr=False)
    generated: bool = False  # shown once on stderr when the server starts

    @classmethod
    def from_args(
        cls,
        bind: str | None,
        port: int | None,
        token_file: str | None,
        environ: Mapping[str, str],
    ) -> HttpSettings:
        port = DEFAULT_PORT if port is None else port
        if not 0 <= port <= 65535:
            raise ValidationError(f"--port {port}: expected 0-65535 (0: any free port)")
        token = _read_token(token_file, environ)
        if bind and token is None:
            raise ValidationError(
                f"--bind {bind} needs a token you set: --token-file FILE or {TOKEN_ENV} "
                "(without --bind the server listens on 127.0.0.1 only)"
            )
        if token is None:
            return cls("127.0.0.1", port, secrets.token_urlsafe(32), True)
        return cls(bind or "127.0.0.1", port, token)


def allowed_origins(host: str, port: int) -> frozenset[str]:
    shown = f"[{host}]" if ":" in host else host
    names = {*LOOPBACK_NAMES, shown} if _is_loopback(host) else {shown}
    return frozenset(f"http://{name}:{port}" for name in names)


def allowed_hosts(host: str, port: int) -> frozenset[str] | None:
    """The Host headers a loopback server answers (a DNS-rebinding page sends its own name);
    None for a bind the operator chose (clients may know the machine by any name)."""
    if not _is_loopback(host):
        return None
    return frozenset(f"{name}:{port}" for name in LOOPBACK_NAMES)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": message}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="pyro-mcp"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: a foreign Origin gets 403, a missing or wrong token 401."""

    def __init__(
        self,
        app: App,
        token: str,
        origins: frozenset[str],
        hosts: frozenset[str] | None = None,
    ) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.origins = origins
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # MCP has no WebSocket transport here
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or ())
            host = headers.get(b"host", b"").decode("latin-1").lower()
            if self.hosts is not None and host not in self.hosts:
                names = ", ".join(sorted(self.hosts))
                return await _refuse(send, 421, f"misdirected: this server answers to {names}")
            origin = headers.get(b"origin")
            if origin is not None and origin.decode("latin-1") not in self.origins:
                return await _refuse(send, 403, "forbidden: this Origin may not use the server")
            if not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
                return await _refuse(
                    send, 401, "unauthorized: send the header 'Authorization: Bearer TOKEN'"
                )
            length = headers.get(b"content-length", b"0")
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                return await _refuse(send, 413, f"request body over {MAX_BODY_BYTES} bytes")
            receive = _limited(receive)
        await self.app(scope, receive, send)


def _limited(receive: Receive) -> Receive:
    """``receive`` that ends the request (a disconnect) once its body passes the limit (a
    chunked body has no Content-Length to check first)."""
    seen = 0

    async def read() -> MutableMapping[str, Any]:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > MAX_BODY_BYTES:
            return {"type": "http.disconnect"}
        return message

    return read


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise ValidationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve_http(server: FastMCP, settings: HttpSettings) -> None:
    import uvicorn

    sock = _listen(settings.host, settings.port)
    port = int(sock.getsockname()[1])
    # Our Guard checks Origin for every bound host; the SDK's own Host/Origin check would
    # refuse any host name but localhost's.
    server.settings.transport_security = TransportSecuritySettings(
        enable_dns_rebinding_protection=False
    )
    app = Guard(
        server.streamable_http_app(),
        settings.token,
        allowed_origins(settings.host, port),
        allowed_hosts(settings.host, port),
    )
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    sys.stderr.write(f"[mcp] serving streamable HTTP on http://{shown}:{port}/mcp\n")
    if settings.generated:
        sys.stderr.write(
            f"[mcp] bearer token (shown once; clients send 'Authorization: Bearer TOKEN'; set "
            f"your own with --token-file or {TOKEN_ENV}): {settings.token}\n"
        )
    sys.stderr.flush()
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
