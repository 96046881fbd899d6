"""The intercepting path of the egress proxy: a CONNECT to a host a secret is bound to.

The guest's TLS ends at the proxy (a leaf certificate from the workspace's CA); each HTTP/1.1
request it sends (parsed with ``h11``) gets its secrets added (network/broker.py) and goes out
on the proxy's own, verified TLS connection to the real server; the response comes back the
same way. One upstream connection per guest connection, reused while both sides keep alive.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import h11

READ = 65536
IDLE_TIMEOUT = 300.0

Rewrite = Callable[[h11.Request], list[tuple[bytes, bytes]]]
Record = Callable[[h11.Request, int, str | None], None]


class UpstreamFailed(Exception):
    pass


class Refused(Exception):
    """A request the proxy answers itself (``status``) without sending it on."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


# Methods whose answer echoes the request, the added credential included.
ECHO_METHODS = {b"TRACE", b"TRACK"}


def check_request(host: str, request: h11.Request) -> None:
    """Refuse a request the proxy will not add a secret to: TRACE (405: the server echoes
    it back), or one that names a host other than the one the guest CONNECTed to, in its
    Host header or an absolute-form target (421: a front end that routes by name, a CDN,
    would hand it, secret added, to that other host: domain fronting)."""
    if request.method.upper() in ECHO_METHODS:
        method = request.method.decode("latin-1")
        raise Refused(405, f"refused: {method} would echo the brokered secret back")
    bare = host.rstrip(".")
    # Exactly the name (a trailing dot and a port allowed): no userinfo, no backslash, no
    # second host a server's own URL parser might pick out.
    exact = re.compile(
        rf"({re.escape(f'[{bare}]' if ':' in bare else bare)})\.?(:[0-9]{{1,5}})?", re.IGNORECASE
    )
    named = [v.decode("latin-1") for k, v in request.headers if k == b"host"]
    target = request.target.decode("latin-1")
    if not target.startswith("/") and target != "*":
        parts = urlsplit(target)
        named.append(parts.netloc if parts.scheme.lower() == "https" else target)
    for authority in named:
        if not exact.fullmatch(authority):
            raise Refused(421, f"refused: the request names {authority}, not {host}")


class _Side:
    """One end of the exchange: a socket and its h11 state; counts the bytes it moved."""

    def __init__(self, sock: socket.socket, role: type[h11.CLIENT] | type[h11.SERVER]) -> None:
        self.sock = sock
        self.conn = h11.Connection(role)
        self.received = 0
        self.sent = 0

    def next(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = self.sock.recv(READ)
            self.received += len(data)
            self.conn.receive_data(data)

    def send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.sent += len(data)
            self.sock.sendall(data)

    def reusable(self) -> bool:
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE


def serve(
    guest_sock: socket.socket,
    open_upstream: Callable[[], socket.socket],
    rewrite: Rewrite,
    record: Record,
) -> tuple[int, int]:
    """Relay the guest's requests until either side is done; bytes (up, down)."""
    guest = _Side(guest_sock, h11.SERVER)
    origin: _Side | None = None
    up = 0
    try:
        while True:
            event = guest.next()
            if not isinstance(event, h11.Request):
                break
            try:
                outgoing = _outgoing(event, rewrite(event))
            except Refused as exc:
                record(event, exc.status, str(exc))
                _fail(guest, str(exc), exc.status)
                break
            try:
                if origin is None:
                    origin = _Side(open_upstream(), h11.CLIENT)
                origin.send(outgoing)
                _body(guest, origin)
                status = _response(origin, guest)
            except (OSError, h11.ProtocolError, UpstreamFailed) as exc:
                reason = f"upstream failed: {_describe(exc)}"
                record(event, 502, reason)
                _fail(guest, reason, 502)
                break
            record(event, status, None)
            if not guest.reusable():
                break
            guest.conn.start_next_cycle()
            if origin.reusable():
                origin.conn.start_next_cycle()
            else:
                up += origin.sent
                _close(origin.sock)
                origin = None
    except (OSError, h11.ProtocolError):
        pass  # the guest went away or spoke nonsense: its connection ends here
    finally:
        if origin is not None:
            up += origin.sent
            _close(origin.sock)
    return up, guest.sent


def _outgoing(event: h11.Request, headers: list[tuple[bytes, bytes]]) -> h11.Request:
    """The request to send on; h11's refusal would quote the header value (a secret's)."""
    try:
        return h11.Request(method=event.method, target=event.target, headers=headers)
    except h11.LocalProtocolError:
        raise Refused(
            502,
            "refused: its headers, secrets added, are not valid HTTP/1.1 (not shown: they may "
            "hold a secret's value; an HTTP/1.0 request needs a Host header)",
        ) from None


def _body(guest: _Side, origin: _Side) -> None:
    while True:
        event = guest.next()
        if isinstance(event, h11.Data):
            origin.send(event)
        elif isinstance(event, h11.EndOfMessage):
            origin.send(event)
            return
        else:
            raise h11.RemoteProtocolError("the request ended early")


def _response(origin: _Side, guest: _Side) -> int:
    status = 0
    while True:
        event = origin.next()
        if isinstance(event, h11.InformationalResponse | h11.Response):
            status = status if isinstance(event, h11.InformationalResponse) else event.status_code
            guest.send(event)
        elif isinstance(event, h11.Data):
            guest.send(event)
        elif isinstance(event, h11.EndOfMessage):
            guest.send(event)
            return status
        else:
            raise UpstreamFailed("the server closed the connection mid-response")


def _fail(guest: _Side, reason: str, status: int) -> None:
    """An error response to the guest, if it can still take one."""
    if guest.conn.our_state is not h11.SEND_RESPONSE:
        return
    body = f"pyro egress proxy: {reason}\n".encode()
    with contextlib.suppress(OSError, h11.ProtocolError):
        guest.send(
            h11.Response(
                status_code=status,
                headers=[
                    ("Content-Type", "text/plain"),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                ],
            )
        )
        guest.send(h11.Data(data=body))
        guest.send(h11.EndOfMessage())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the server's certificate is not trusted ({exc.verify_message})"
    return str(getattr(exc, "strerror", None) or exc or type(exc).__name__)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
