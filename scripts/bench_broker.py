"""`make bench`, brokered secrets (issue 15), for information: 50 MB downloaded over HTTPS
through the egress proxy, on the intercepting path (a host a secret is bound to: TLS ended
at the proxy, the request parsed and the secret added, a second TLS connection upstream)
beside the plain CONNECT tunnel (a host no secret is bound to) in the same run.

Host side only (the proxy as the supervisor runs it, a local HTTPS upstream with its own
CA pinned by name): what interception costs, without the guest's own network path.
"""

from __future__ import annotations

import os
import socket
import ssl
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pyro_mcp.network.certs import Authority
from pyro_mcp.network.proxy import EgressProxy
from pyro_mcp.workspaces import secrets as secret_store

BODY_BYTES = 50 * 1024 * 1024
RUNS = 3
CHUNK = bytes(1 << 20)


class _Zeros(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(BODY_BYTES))
        self.end_headers()
        for _ in range(BODY_BYTES >> 20):
            self.wfile.write(CHUNK)

    def log_message(self, *args: Any) -> None:
        return None


def _upstream(ca: Authority, directory: Path) -> ThreadingHTTPServer:
    chain, key, _ = ca.leaf("bench.pyro.test")
    pem = directory / "upstream.pem"
    pem.write_bytes(chain + key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Zeros)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _download(proxy: EgressProxy, port: int, trust: str) -> float:
    """Seconds for one GET of BODY_BYTES through the proxy (as a guest makes it)."""
    ours, theirs = socket.socketpair()
    threading.Thread(target=proxy.handle, args=(theirs,), daemon=True).start()
    started = time.monotonic()
    ours.sendall(f"CONNECT bench.pyro.test:{port} HTTP/1.1\r\n\r\n".encode())
    if not ours.recv(4096).startswith(b"HTTP/1.1 200"):
        raise RuntimeError("bench: the proxy refused the CONNECT")
    context = ssl.create_default_context(cadata=trust)
    total = 0
    with context.wrap_socket(ours, server_hostname="bench.pyro.test") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: bench.pyro.test\r\nConnection: close\r\n\r\n")
        while chunk := tls.recv(1 << 20):
            total += len(chunk)
    if total < BODY_BYTES:
        raise RuntimeError(f"bench: got {total} bytes through the proxy")
    return time.monotonic() - started


def section_broker(bench: Any) -> None:
    print("\n== brokered secrets: 50 MB over HTTPS, intercepting proxy vs plain tunnel ==")
    directory = Path(tempfile.mkdtemp(prefix="pyro-bench-broker-", dir="/tmp"))
    ca = Authority("bench upstream")
    (directory / "ca.pem").write_text(ca.pem)
    server = _upstream(ca, directory)
    old = {k: os.environ.get(k) for k in ("PYRO_EGRESS_RESOLVE", "PYRO_EGRESS_CA_BUNDLE")}
    os.environ["PYRO_EGRESS_RESOLVE"] = "bench.pyro.test=127.0.0.1"
    os.environ["PYRO_EGRESS_CA_BUNDLE"] = str(directory / "ca.pem")
    store = directory / "secrets"
    bound = {"name": "TOKEN", "value": "bench-value", "hosts": ["bench.pyro.test"]}
    secret_store.store(store, secret_store.resolve([bound]))
    proxy = EgressProxy(directory / "network", store)
    plain = EgressProxy(directory / "network-plain", None)
    port = server.server_address[1]
    try:
        rates: dict[str, list[float]] = {"intercepted": [], "tunnel": []}
        for _ in range(RUNS):
            rates["intercepted"].append(_download(proxy, port, proxy.authority.pem))
            rates["tunnel"].append(_download(plain, port, ca.pem))
    finally:
        proxy.close()
        plain.close()
        server.shutdown()
        server.server_close()
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    mb = BODY_BYTES / 1e6
    cut = mb / statistics.median(rates["intercepted"])
    tunnel = mb / statistics.median(rates["tunnel"])
    print(
        f"HTTPS download through the proxy: intercepting path (secret added) median "
        f"{cut:.0f} MB/s  plain CONNECT tunnel {tunnel:.0f} MB/s  ratio {cut / tunnel:.2f}  "
        "(information)"
    )
