"""The egress proxy on the host, without a guest: its rules, its log, and a client handed
over exactly as QEMU does it (the real ``fdpass`` helper with the connection as stdin).

All traffic stays on this machine: refused requests never leave the proxy, and the relay
tests use a listener the test runs on 127.0.0.1 with the address check stubbed."""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyro_mcp.errors import ValidationError
from pyro_mcp.network import policy
from pyro_mcp.network.egress_log import EgressLog
from pyro_mcp.network.proxy import EgressProxy, forward_command
from support import short_tmp_dir


@pytest.fixture
def scratch() -> Iterator[Path]:
    directory = short_tmp_dir("pyro-egress-")  # short: the proxy's Unix socket lives here
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def proxy(scratch: Path) -> Iterator[EgressProxy]:
    proxy = EgressProxy(scratch / "network")
    yield proxy
    proxy.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listener on the host's loopback that no refused request may reach."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    yield srv
    srv.close()


def ask(proxy: EgressProxy, head: str, body: bytes = b"") -> tuple[bytes, float]:
    """Send one request through the fdpass helper (as QEMU runs it); the answer and time."""
    guest, ours = socket.socketpair()
    started = time.monotonic()
    helper = subprocess.run(
        shlex.split(forward_command(str(proxy.socket_path))),
        stdin=guest.fileno(),
        timeout=10,
        check=False,
    )
    guest.close()
    assert helper.returncode == 0
    ours.settimeout(5)
    ours.sendall(head.encode() + body)
    ours.shutdown(socket.SHUT_WR)
    answer = b""
    while chunk := ours.recv(65536):
        answer += chunk
    ours.close()
    return answer, time.monotonic() - started


def logged(proxy: EgressProxy) -> list[dict[str, object]]:
    """The log once the (relayed) connection has been recorded: bounded wait."""
    deadline = time.monotonic() + 5
    while not (entries := proxy.log.entries()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return entries


def never_reached(srv: socket.socket) -> bool:
    try:
        conn, _ = srv.accept()
    except TimeoutError:
        return True
    conn.close()
    return False


def test_allow_hosts_validation_and_matching() -> None:
    assert policy.allow_hosts(["PyPI.org.", "*.pythonhosted.org", "pypi.org"]) == [
        "pypi.org",
        "*.pythonhosted.org",
    ]
    for bad in (["a b"], ["*"], ["x.*.com"], [3], "pypi.org", ["-x.com"]):
        with pytest.raises(ValidationError, match="allow_hosts"):
            policy.allow_hosts(bad)
    allowed = ["pypi.org", "*.pythonhosted.org"]
    assert policy.host_allowed("files.pythonhosted.org", allowed)
    assert policy.host_allowed("PYPI.ORG.", allowed)
    assert not policy.host_allowed("pythonhosted.org", allowed)
    assert not policy.host_allowed("evilpypi.org", allowed)
    assert not policy.host_allowed("pypi.org.evil.com", allowed)
    assert policy.host_allowed("anything.example", [])


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.2.2", "private"),
        ("192.168.1.1", "private"),
        ("172.20.0.5", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "reserved"),
        ("100.64.1.1", "shared"),
    ],
)
def test_denied_addresses(address: str, why: str) -> None:
    reason = policy.denied_address(address)
    assert reason is not None and why in reason


def test_public_and_own_addresses() -> None:
    assert policy.denied_address("203.0.113.80") is None  # a public address is not refused
    assert policy.denied_address("2001:db8::1") is None
    own = policy.host_addresses()
    assert "127.0.0.1" in own
    for address in own:
        assert policy.denied_address(address, own) is not None


@pytest.mark.parametrize(
    "target",
    [
        "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
        "CONNECT localhost:{port} HTTP/1.1\r\n\r\n",
        "GET http://localhost:{port}/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET http://[::ffff:127.0.0.1]:{port}/ HTTP/1.1\r\n\r\n",
        "CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n",
        "GET http://10.0.2.2:{port}/ HTTP/1.1\r\n\r\n",
        "CONNECT 192.168.1.1:443 HTTP/1.1\r\n\r\n",
    ],
)
def test_refusals_are_fast_logged_and_reach_nothing(
    proxy: EgressProxy, listener: socket.socket, target: str
) -> None:
    port = listener.getsockname()[1]
    answer, seconds = ask(proxy, target.format(port=port))
    assert answer.startswith(b"HTTP/1.1 403"), answer
    assert seconds < 1.0
    assert never_reached(listener)
    (entry,) = proxy.log.entries()
    assert entry["allowed"] is False and "refused" in entry["reason"]
    assert proxy.log.totals() == {"allowed": 0, "denied": 1}


def test_allowlist_refuses_other_names_before_resolving(proxy: EgressProxy) -> None:
    policy.save(proxy.directory, ["pypi.org", "*.pythonhosted.org"])
    answer, seconds = ask(proxy, "CONNECT registry.npmjs.org:443 HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403") and b"not in allow_hosts" in answer
    assert seconds < 1.0
    (entry,) = proxy.log.entries()
    assert (entry["host"], entry["port"], entry["address"]) == ("registry.npmjs.org", 443, None)


def test_damaged_allowlist_refuses_everything(proxy: EgressProxy) -> None:
    (proxy.directory / policy.POLICY_FILE).write_text("{not json")
    answer, _ = ask(proxy, "CONNECT pypi.org:443 HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403") and b"damaged" in answer


@pytest.mark.parametrize(
    "head",
    ["garbage\r\n\r\n", "GET /relative HTTP/1.1\r\n\r\n", "CONNECT host HTTP/1.1\r\n\r\n"],
)
def test_bad_requests_get_400(proxy: EgressProxy, head: str) -> None:
    answer, _ = ask(proxy, head)
    assert answer.startswith(b"HTTP/1.1 400")
    assert proxy.log.entries()[0]["reason"].startswith("bad request")


class LoopbackProxy(EgressProxy):
    """The relay under test with the address rules stubbed (they are tested above)."""

    def _check(self, request: object) -> str:
        return "127.0.0.1"


def test_plain_http_is_rewritten_and_counted(listener: socket.socket, scratch: Path) -> None:
    proxy = LoopbackProxy(scratch)
    seen: list[bytes] = []

    def origin() -> None:
        listener.settimeout(5)
        conn, _ = listener.accept()
        seen.append(conn.recv(65536))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        conn.close()

    thread = threading.Thread(target=origin)
    thread.start()
    port = listener.getsockname()[1]
    head = (
        f"GET http://example.test:{port}/a?b=1 HTTP/1.1\r\nHost: example.test\r\n"
        "Proxy-Connection: keep-alive\r\nProxy-Authorization: x\r\n\r\n"
    )
    answer, _ = ask(proxy, head)
    thread.join()
    assert answer.endswith(b"hello")
    assert seen[0].startswith(b"GET /a?b=1 HTTP/1.1\r\nHost: example.test\r\n")
    assert b"Proxy-" not in seen[0] and b"Connection: close" in seen[0]
    (entry,) = logged(proxy)
    proxy.close()
    assert entry["allowed"] and entry["bytes_up"] == len(seen[0]) and entry["bytes_down"] > 5


def test_connect_tunnels_both_ways(listener: socket.socket, scratch: Path) -> None:
    proxy = LoopbackProxy(scratch)

    def echo() -> None:
        listener.settimeout(5)
        conn, _ = listener.accept()
        while data := conn.recv(65536):
            conn.sendall(data.upper())
        conn.close()

    thread = threading.Thread(target=echo)
    thread.start()
    port = listener.getsockname()[1]
    answer, _ = ask(proxy, f"CONNECT example.test:{port} HTTP/1.1\r\n\r\n", b"x" * 100_000)
    thread.join()
    assert answer.startswith(b"HTTP/1.1 200 Connection established\r\n\r\n")
    assert answer.endswith(b"X" * 100_000)
    (entry,) = logged(proxy)
    proxy.close()
    assert (entry["bytes_up"], entry["bytes_down"]) == (100_000, 100_000)


def test_log_is_bounded_and_totals_count_everything(tmp_path: Path) -> None:
    log = EgressLog(tmp_path, max_rows=5)
    for n in range(12):
        log.record({"host": f"h{n}", "port": 443, "method": "CONNECT", "allowed": n % 3 == 0})
    entries = log.entries()
    assert [e["host"] for e in entries] == ["h7", "h8", "h9", "h10", "h11"]
    assert log.totals() == {"allowed": 4, "denied": 8}
