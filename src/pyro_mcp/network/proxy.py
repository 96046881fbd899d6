"""The egress proxy a supervisor runs for its sandbox: HTTP CONNECT and plain HTTP.

It listens on a Unix socket in the sandbox's private network directory. A client is either
a guest connection whose descriptor arrives over that socket (``fdpass``: QEMU's guest
forward) or the Unix connection itself (a stream tunnelled by the agent). Every request is
checked (allowlist, then the resolved address) before anything leaves the host, and every
connection is logged.

A CONNECT to a host a brokered secret is bound to is intercepted (network/intercept.py: the
proxy terminates the guest's TLS and adds the secret); every other CONNECT is a plain tunnel.
``PYRO_EGRESS_RESOLVE=name=address[,...]`` (the operator's, e.g. for tests) pins names to
addresses, which are then not checked against the denied ranges.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..guest.tunnel import relay
from ..paths import socket_address
from . import certs, intercept, policy
from .broker import Brokered, denied_use_reason
from .egress_log import EgressLog
from .http import BadRequest, Request, read_head

MAX_CONNECTIONS = 64
HEAD_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
SOCKET_FILE = "proxy.sock"
FDPASS = Path(__file__).with_name("fdpass.py")
RESOLVE_ENV = "PYRO_EGRESS_RESOLVE"


def pinned_addresses(text: str | None) -> dict[str, str]:
    """``name=address,...`` → {name: address} (the operator's pins; bad items ignored)."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        name, sep, address = item.strip().partition("=")
        if sep and name and address:
            out[name.lower()] = address
    return out


def forward_command(socket_path: str) -> str:
    """The command QEMU runs per guest connection (``guestfwd=...-cmd:``): it hands the
    connection to the proxy listening at ``socket_path``."""
    return shlex.join([sys.executable, "-I", "-S", str(FDPASS), socket_path])


class Denied(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class EgressProxy:
    def __init__(self, directory: Path, secrets_dir: Path | None = None) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self.secrets_dir = secrets_dir
        self.authority = certs.Authority()  # its key stays in this process's memory
        self.upstream_tls = certs.upstream_context()
        self.pinned = pinned_addresses(os.environ.get(RESOLVE_ENV))
        self.socket_path = directory / SOCKET_FILE
        self.log = EgressLog(directory)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.own_addresses = policy.host_addresses()
        self.closed = threading.Event()
        self.socket_path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Its directory is private (0700): no process-wide umask here, other threads run.
        with socket_address(self.socket_path) as address:
            self.listener.bind(address)
        os.chmod(self.socket_path, 0o600)
        self.listener.listen(64)
        threading.Thread(target=self._serve, daemon=True, name="egress-proxy").start()

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        self.socket_path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._accept, args=(conn,), daemon=True).start()

    def _accept(self, conn: socket.socket) -> None:
        client = conn
        try:
            conn.settimeout(HEAD_TIMEOUT)
            kind, fds, _flags, _addr = socket.recv_fds(conn, 1, 1)
            if kind == b"F" and fds:
                client = socket.socket(fileno=fds[0])
                for extra in fds[1:]:
                    os.close(extra)
                with contextlib.suppress(OSError):
                    conn.sendall(b"k")
                conn.close()
            elif kind != b"S":
                for fd in fds:
                    os.close(fd)
                conn.close()
                return
        except OSError:
            conn.close()
            return
        if not self.slots.acquire(blocking=False):
            _answer(client, 503, "too many connections")
            self._log({"host": "", "port": 0, "method": "", "allowed": False}, "too many", 0.0)
            client.close()
            return
        try:
            self.handle(client)
        finally:
            self.slots.release()

    def handle(self, client: socket.socket) -> None:
        """One client: read its request, check it, connect and relay, log it."""
        started = time.monotonic()
        entry: dict[str, Any] = {"host": "", "port": 0, "method": "", "allowed": False}
        reason: str | None = None
        upstream: socket.socket | None = None
        try:
            client.settimeout(HEAD_TIMEOUT)
            head, rest = read_head(client)
            request = Request.parse(head)
            entry.update(host=request.host, port=request.port, method=request.method)
            address = self._check(request)
            entry.update(allowed=True, address=address)
            brokered = Brokered.read(self.secrets_dir)
            if request.method == "CONNECT" and brokered.intercepts(request.host):
                entry["reason"] = "intercepted: a brokered secret is bound to this host"
                up, down = self._intercept(client, request, address, rest)
                entry.update(bytes_up=up, bytes_down=down)
                return
            self._denied_use(brokered, request, head)
            upstream = _connect(address, request.port)
            entry["bytes_up"] = len(rest)
            if request.method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.sendall(request.origin_head())
                entry["bytes_up"] = len(request.origin_head()) + len(rest)
            upstream.sendall(rest)
            up, down = relay(client, upstream)
            entry["bytes_up"] += up
            entry["bytes_down"] = down
        except BadRequest as exc:
            reason = f"bad request: {exc}"
            _answer(client, 400, reason)
        except Denied as exc:
            reason = str(exc)
            _answer(client, exc.status, reason)
        except OSError as exc:
            reason = reason or f"connection failed: {exc.strerror or exc}"
            if upstream is None:
                _answer(client, 502, reason)
        finally:  # logged before the client sees the end: whoever reads the log next finds it
            self._log(entry, reason or entry.pop("reason", None), time.monotonic() - started)
            for sock in (upstream, client):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()

    def _intercept(
        self, client: socket.socket, request: Request, address: str, rest: bytes
    ) -> tuple[int, int]:
        """TLS from the guest ended here, its requests sent on with their secrets added."""
        if rest:
            raise BadRequest("data sent before the tunnel was open")
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        context = self.authority.server_context(request.host)
        guest = context.wrap_socket(client, server_side=True)  # handshake: HEAD_TIMEOUT
        guest.settimeout(intercept.IDLE_TIMEOUT)

        def open_upstream() -> socket.socket:
            sock = _connect(address, request.port)
            sock.settimeout(CONNECT_TIMEOUT)
            tls = self.upstream_tls.wrap_socket(sock, server_hostname=request.host)
            tls.settimeout(intercept.IDLE_TIMEOUT)
            return tls

        def rewrite(event: Any) -> list[tuple[bytes, bytes]]:
            intercept.check_request(request.host, event)
            brokered = Brokered.read(self.secrets_dir)  # a rotated value counts at once
            headers, used = brokered.rewrite(request.host, list(event.headers))
            left = brokered.leftovers(event.target + b"".join(k + v for k, v in headers))
            if left:
                self._denied(request, event.method.decode(), denied_use_reason(left, request.host))
            notes[id(event)] = f"secret {', '.join(used)} added" if used else None
            return headers

        def record(event: Any, status: int, failed: str | None) -> None:
            note = failed or notes.pop(id(event), None)
            row = {"host": request.host, "port": request.port, "allowed": failed is None}
            self._log({**row, "method": event.method.decode()}, note or f"status {status}", 0.0)

        notes: dict[int, str | None] = {}
        try:
            return intercept.serve(guest, open_upstream, rewrite, record)
        finally:
            with contextlib.suppress(OSError):
                guest.close()

    def _denied_use(self, brokered: Brokered, request: Request, head: bytes) -> None:
        """A placeholder going anywhere but through the intercepting path is not replaced;
        it is logged as a denied use (a tunnel's TLS content cannot be seen, so only plain
        http requests are caught here)."""
        left = brokered.leftovers(head)
        if left:
            self._denied(request, request.method, denied_use_reason(left, request.host))

    def _denied(self, request: Request, method: str, reason: str) -> None:
        row = {"host": request.host, "port": request.port, "method": method, "allowed": False}
        self._log(row, reason, 0.0)

    def _check(self, request: Request) -> str:
        """The address to connect to, or Denied saying why not."""
        try:
            allowed = policy.load(self.directory)
        except ValueError as exc:
            raise Denied(403, f"refused: {exc}") from None
        if not policy.host_allowed(request.host, allowed):
            raise Denied(403, f"refused: {request.host} is not in allow_hosts")
        if request.host in self.pinned:  # the operator's own pin: not checked further
            return self.pinned[request.host]
        try:
            infos = socket.getaddrinfo(request.host, request.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise Denied(502, f"cannot resolve {request.host}") from None
        why = ""
        for info in infos:
            address = str(info[4][0])
            denied = policy.denied_address(address, self.own_addresses)
            if denied is None:
                return address
            why = why or f"{request.host} resolves to {address}, a {denied}"
        raise Denied(403, f"refused: {why}")

    def _log(self, entry: dict[str, Any], reason: str | None, seconds: float) -> None:
        row = {**entry, "reason": reason, "duration_ms": int(seconds * 1000)}
        with contextlib.suppress(Exception):  # a log failure never breaks the guest
            self.log.record(row)


def _connect(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect((address, port))
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def _answer(client: socket.socket, status: int, reason: str) -> None:
    phrase = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway", 503: "Unavailable"}
    body = f"pyro egress proxy: {reason}\n".encode()
    head = (
        f"HTTP/1.1 {status} {phrase.get(status, 'Error')}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        client.sendall(head.encode() + body)
