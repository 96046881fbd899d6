"""A minimal QMP (QEMU Machine Protocol) client: JSON lines over a Unix socket."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import SandboxError
from ..paths import socket_address


class Qmp:
    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with socket_address(path) as address:
                    self.sock.connect(address)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise SandboxError(f"QMP socket {path} did not open") from None
                time.sleep(0.005)
        self.sock.settimeout(timeout)
        self.reader = self.sock.makefile("rb")
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        while True:
            try:
                line = self.reader.readline()
            except OSError as exc:  # QEMU ended (a state it could not load, a crash)
                raise SandboxError(f"QMP connection broke: {exc}") from exc
            if not line:
                raise SandboxError("QMP connection closed")
            message = json.loads(line)
            if "event" not in message:
                return dict(message)

    def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise SandboxError(f"QMP connection broke: {exc}") from exc
        reply = self._read()
        if "error" in reply:
            raise SandboxError(f"QMP {command} failed: {reply['error'].get('desc')}")
        return reply.get("return")

    def close(self) -> None:
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass
