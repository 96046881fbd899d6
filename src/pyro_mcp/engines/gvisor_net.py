"""gVisor guest networking, host side: the sandbox's socket directory and published ports.

The sandbox has loopback only (``runsc --network none``). A private directory holding two
Unix sockets is mounted read-only at ``TUNNEL_DIR`` and ``runsc --host-uds open`` lets the
guest connect to them (and to no host socket it could name or create itself):

- ``proxy.sock``: each connection the guest makes is handed, as it is, to the workspace's
  egress proxy (``fdpass.hand_over``, as QEMU's guest forward does): the proxy checks and
  logs it like any other, and no host process copies its bytes;
- ``ports.sock``: a published port listens on the host's 127.0.0.1; for each connection the
  agent is asked (``port_connect``) to connect to the guest port and to come back here with
  a one-time token, and the two are joined. See guest/tunnel.py for the guest side.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

from ..errors import SandboxError
from ..guest.tunnel import MAX_CONNECTIONS, TOKEN_BYTES, relay
from ..network.fdpass import hand_over
from ..paths import socket_address
from .agent_client import AgentClient
from .network import TUNNEL_DIR

PORT_CONNECT_TIMEOUT = 15.0


def _unix_listener(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with socket_address(path) as address:
        sock.bind(address)
    sock.listen(64)
    return sock


class GvisorNet:
    def __init__(self, workdir: Path, egress_proxy: str | None, sandbox_id: str) -> None:
        # One directory per sandbox: a reset boots the new sandbox while the old one is torn
        # down, and the old one's close() must not remove the new one's sockets.
        (workdir / "net").mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = workdir / "net" / sandbox_id
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(mode=0o700)
        self.egress_proxy = Path(egress_proxy) if egress_proxy else None
        self.client: AgentClient | None = None
        self.lock = threading.Lock()
        self.pending: dict[bytes, socket.socket] = {}
        self.ports: dict[int, socket.socket] = {}
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.listeners = [_unix_listener(self.directory / "ports.sock")]
        self._loop(self.listeners[0], self._port_arrived)
        if self.egress_proxy is not None:
            self.listeners.append(_unix_listener(self.directory / "proxy.sock"))
            self._loop(self.listeners[1], self._to_proxy)

    def mount(self) -> dict[str, Any]:
        """The OCI mount of the socket directory."""
        return {
            "destination": TUNNEL_DIR,
            "type": "bind",
            "source": str(self.directory),
            "options": ["rbind", "ro"],
        }

    @staticmethod
    def _loop(listener: socket.socket, handle: Any) -> None:
        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return  # closed
                handle(conn)

        threading.Thread(target=accept, daemon=True, name="gvisor-net").start()

    def _to_proxy(self, conn: socket.socket) -> None:
        assert self.egress_proxy is not None
        try:
            with socket_address(self.egress_proxy) as address:
                hand_over(address, conn.fileno())
        except OSError:
            pass  # no proxy (stopping): the guest sees its connection close
        finally:
            conn.close()

    def _port_arrived(self, conn: socket.socket) -> None:
        threading.Thread(target=self._join_port, args=(conn,), daemon=True).start()

    def _join_port(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(PORT_CONNECT_TIMEOUT)
            token = conn.recv(TOKEN_BYTES, socket.MSG_WAITALL)
        except OSError:
            token = b""
        with self.lock:
            outside = self.pending.pop(token, None)
        if outside is None:
            conn.close()
            return
        try:
            relay(outside, conn)
        finally:
            outside.close()
            conn.close()
            self.slots.release()

    # -- published ports ---------------------------------------------------------------------
    def publish(self, guest_port: int, host_port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", host_port))
            listener.listen(64)
        except OSError as exc:
            listener.close()
            raise SandboxError(
                f"cannot publish port {guest_port} on 127.0.0.1:{host_port}: {exc.strerror}"
            ) from None
        with self.lock:
            self.ports[host_port] = listener
        self._loop(listener, lambda conn: self._port_connection(conn, guest_port))

    def unpublish(self, host_port: int) -> None:
        with self.lock:
            listener = self.ports.pop(host_port, None)
        if listener is not None:
            _close(listener)

    def _port_connection(self, conn: socket.socket, guest_port: int) -> None:
        if self.client is None or not self.slots.acquire(blocking=False):
            conn.close()  # over the limit: refused at once
            return
        token = secrets.token_bytes(TOKEN_BYTES)
        with self.lock:
            self.pending[token] = conn
        threading.Thread(
            target=self._ask_guest, args=(token, guest_port), daemon=True, name="gvisor-port"
        ).start()

    def _ask_guest(self, token: bytes, guest_port: int) -> None:
        assert self.client is not None
        args = {"port": guest_port, "socket": f"{TUNNEL_DIR}/ports.sock", "token": token.hex()}
        try:
            self.client.call("port_connect", args, timeout=PORT_CONNECT_TIMEOUT)
        except Exception:  # nothing listens on the guest port, the sandbox ended, a refusal
            with self.lock:
                conn = self.pending.pop(token, None)
            if conn is not None:
                conn.close()
                self.slots.release()

    def close(self) -> None:
        with self.lock:
            listeners = [*self.listeners, *self.ports.values()]
            pending = list(self.pending.values())
            self.ports.clear()
            self.pending.clear()
        for sock in [*listeners, *pending]:
            _close(sock)
        shutil.rmtree(self.directory, ignore_errors=True)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
