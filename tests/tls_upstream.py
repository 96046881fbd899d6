"""A local HTTPS upstream with its own test CA, for the brokered-secret tests.

The proxy reaches it by a pinned name (``PYRO_EGRESS_RESOLVE``) and trusts its CA through
``PYRO_EGRESS_CA_BUNDLE`` (the operator's extra upstream bundle); it records the headers of
every request it gets.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pyro_mcp.network.certs import Authority


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append({"path": self.path, "headers": seen, "body": body})  # type: ignore[attr-defined]
        reply = b"upstream ok " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = _answer

    def do_TRACE(self) -> None:  # as Apache answers it by default: the request echoed
        echo = f"{self.requestline}\r\n{self.headers}".encode()
        self.server.seen.append({"path": self.path, "headers": {}, "body": b""})  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "message/http")
        self.send_header("Content-Length", str(len(echo)))
        self.end_headers()
        self.wfile.write(echo)

    def log_message(self, *args: Any) -> None:
        return None


class Upstream:
    def __init__(self, ca: Authority, host: str, directory: Path) -> None:
        chain, key, _ = ca.leaf(host)
        cert_file = directory / f"{host}.pem"
        cert_file.write_bytes(chain + key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.seen = []  # type: ignore[attr-defined]
        self.host = host
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def seen(self) -> list[dict[str, Any]]:
        return self.server.seen  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def upstream_ca(directory: Path) -> tuple[Authority, Path]:
    """A CA of the test's own (not the proxy's) and its certificate file."""
    ca = Authority("pyro test upstream")
    path = directory / "upstream-ca.pem"
    path.write_text(ca.pem)
    return ca, path
