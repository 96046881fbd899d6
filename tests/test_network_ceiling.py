"""Issue 11: the operator's network ceiling over MCP (``pyro mcp serve --network-ceiling POLICY
--allow-host NAME…``). A model may narrow within it, never widen; by default it gets no network.

Driven through the official ``mcp`` client over stdio; the guest-backed test checks the
allowlist a workspace records (no network traffic needed).
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from pyro_mcp.errors import ValidationError
from pyro_mcp.mcp.network import NetworkCeiling
from support import ENVIRONMENT, one_line, pyro_argv
from workspace_fixtures import *  # noqa: F403  (the fixtures)
from workspace_fixtures import McpClient

OPERATOR_HOSTS = ["*.example.com", "pypi.org"]
CEILING = ["--network-ceiling", "egress", *(f"--allow-host={h}" for h in OPERATOR_HOSTS)]


# -- pure rules ------------------------------------------------------------------------------------


def test_a_model_list_must_lie_within_the_operators() -> None:
    ceiling = NetworkCeiling.from_args("egress", OPERATOR_HOSTS)
    for inside in (["a.example.com"], ["*.example.com"], ["*.a.example.com", "PyPI.org."]):
        assert ceiling.hosts(inside) == [h.lower().rstrip(".") for h in inside]
    for outside in (["example.com"], ["evil.com"], ["*.pypi.org"], ["a.example.com.evil.com"]):
        with pytest.raises(ValidationError, match="not within what the operator allows"):
            ceiling.hosts(outside)
    # No model list (or an empty one) is "as much as allowed": the operator's list.
    assert ceiling.hosts(None) == ceiling.hosts([]) == OPERATOR_HOSTS
    # No operator list: any public host the proxy allows, so any model list.
    assert NetworkCeiling.from_args("egress", None).hosts(["evil.com"]) == ["evil.com"]
    assert NetworkCeiling.from_args("egress", None).hosts(None) == []


def test_the_ceiling_orders_policies_and_checks_the_operators_flags() -> None:
    assert NetworkCeiling().policies == ("off",)
    assert NetworkCeiling.from_args("egress", None).policies == ("off", "egress")
    with pytest.raises(ValidationError, match="--allow-host needs --network-ceiling egress"):
        NetworkCeiling.from_args(None, ["pypi.org"])
    with pytest.raises(ValidationError, match=r"--allow-host: 'a b' is not a host name"):
        NetworkCeiling.from_args("egress", ["a b"])


def test_serve_refuses_a_bad_ceiling_in_one_line(tmp_path: Path) -> None:
    argv = pyro_argv()
    for flags, expected in (
        (["--allow-host", "pypi.org"], "--allow-host needs --network-ceiling"),
        (["--network-ceiling", "egress", "--allow-host", "*"], "--allow-host: '*'"),
    ):
        done = subprocess.run(
            [*argv, "mcp", "serve", *flags],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={"PYRO_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done
        one_line(done.stderr, expected)


# -- over MCP, refused before any sandbox --------------------------------------------------------


def test_default_ceiling_is_off_and_a_model_cannot_raise_it(ws_home: Path) -> None:
    with McpClient(ws_home, "workspace-full") as client:
        assert client.instructions and "Network: none" in client.instructions
        assert "egress" not in client.instructions
        tools = client.tools()
        props = tools["workspace_create"].inputSchema["properties"]
        assert props["network_policy"]["enum"] == ["off"]
        for prop in (props["network_policy"], props["allow_hosts"]):
            assert "egress" not in prop["description"], prop
        for policy in ("egress", "egress+published-ports"):
            error = client.error("workspace_create", environment=ENVIRONMENT, network_policy=policy)
            one_line(error, "operator sets this server's network ceiling", "at most 'off'")
            assert "--network-ceiling" not in error  # never suggests raising it
        error = client.error("vm_run", environment=ENVIRONMENT, command="true", network=True)
        one_line(error, "network:", "at most 'off'")
        error = client.error("workspace_create", environment=ENVIRONMENT, allow_hosts=["x.org"])
        one_line(error, "allow_hosts:", "at most 'off'")
        assert client.ok("workspace_list")["count"] == 0  # nothing was created


def test_above_the_ceiling_and_outside_the_list_are_refused(ws_home: Path) -> None:
    with McpClient(ws_home, "workspace-full", args=CEILING) as client:
        text = client.instructions or ""
        assert "at most network_policy 'egress'" in text
        assert "*.example.com, pypi.org" in text
        props = client.tools()["workspace_create"].inputSchema["properties"]
        assert props["network_policy"]["enum"] == ["off", "egress"]
        assert "*.example.com, pypi.org" in props["allow_hosts"]["description"]
        error = client.error(
            "workspace_create", environment=ENVIRONMENT, network_policy="egress+published-ports"
        )
        one_line(error, "operator sets this server's network ceiling", "at most 'egress'")
        error = client.error(
            "workspace_create",
            environment=ENVIRONMENT,
            network_policy="egress",
            allow_hosts=["a.example.com", "evil.com"],
        )
        one_line(error, "allow_hosts: evil.com not within what the operator allows")
        # A one-shot VM cannot be held to a host list: with an operator list, no network.
        error = client.error("vm_run", environment=ENVIRONMENT, command="true", network=True)
        one_line(error, "network: vm_run cannot hold its guest to a host list")
        assert client.ok("workspace_list")["count"] == 0


# -- guest-backed: what a workspace records -------------------------------------------------------


@pytest.mark.guest
def test_a_model_narrows_within_the_ceiling_and_gets_the_operators_list(ws_home: Path) -> None:
    # engine auto: networked workspaces go where networking works (QEMU, or gVisor with it).
    with McpClient(ws_home, "workspace-full", "auto", args=CEILING) as client:
        given = client.ok("workspace_create", environment=ENVIRONMENT, network_policy="egress")
        wid = given["workspace_id"]
        try:
            status = client.ok("workspace_status", workspace_id=wid)
            assert (status["network_policy"], status["allow_hosts"]) == ("egress", OPERATOR_HOSTS)
            assert_host_loopback_unreachable(client, wid)
            narrowed = client.ok("workspace_update", workspace_id=wid, allow_hosts=["pypi.org"])
            assert narrowed["allow_hosts"] == ["pypi.org"]
            error = client.error("workspace_update", workspace_id=wid, allow_hosts=["evil.com"])
            one_line(error, "allow_hosts: evil.com not within")
            # [] asks for as much as allowed: the operator's list, never "any public host".
            widest = client.ok("workspace_update", workspace_id=wid, allow_hosts=[])
            assert widest["allow_hosts"] == OPERATOR_HOSTS
        finally:
            client.ok("workspace_delete", workspace_id=wid)
        narrow = client.ok(
            "workspace_create",
            environment=ENVIRONMENT,
            network_policy="egress",
            allow_hosts=["files.example.com"],
        )
        try:
            status = client.ok("workspace_status", workspace_id=narrow["workspace_id"])
            assert status["allow_hosts"] == ["files.example.com"]
        finally:
            client.ok("workspace_delete", workspace_id=narrow["workspace_id"])


PROBE = """python3 - PORT <<'EOF'
import os, sys, urllib.request as u
url = f"http://127.0.0.1:{sys.argv[1]}/"
for name in ("NO_PROXY", "no_proxy"):  # ask the proxy for the host's loopback on purpose
    os.environ.pop(name, None)
proxy = u.build_opener(u.ProxyHandler({"http": os.environ["HTTP_PROXY"]}))
for name, opener in (("direct", u.build_opener()), ("proxy", proxy)):
    try:
        opener.open(url, timeout=5)
        print(name, "reached")
    except Exception as exc:
        print(name, "refused", exc)
EOF"""


def assert_host_loopback_unreachable(client: McpClient, wid: str) -> None:
    """The break a model could use before: a listener on the host's loopback, through the
    guest's network. Through the proxy it gets a 403, and the log says so."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        probe = PROBE.replace("PORT", str(port))
        out = client.ok("workspace_exec", workspace_id=wid, command=probe)["stdout"]
        # direct: the guest's own loopback; through the proxy: refused by the address policy
        assert "direct refused" in out and "proxy refused HTTP Error 403" in out, out
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever arrived
    log = client.ok("workspace_network_log", workspace_id=wid)
    assert any(not e["allowed"] and e["port"] == port for e in log["entries"]), log


# -- a fork copies its source's network: held to the ceiling too ------------------------------


def test_a_copy_of_a_network_gets_no_more_than_the_ceiling() -> None:
    off, listed = NetworkCeiling(), NetworkCeiling.from_args("egress", OPERATOR_HOSTS)
    off.check_copy("workspace_fork", {"network_policy": "off"})
    with pytest.raises(ValidationError, match=r"network_policy 'egress'.*at most 'off'"):
        off.check_copy("workspace_fork", {"network_policy": "egress", "allow_hosts": []})
    listed.check_copy("workspace_fork", {"network_policy": "egress", "allow_hosts": ["pypi.org"]})
    for hosts, shown in ((["evil.com"], "evil.com"), ([], "any host")):
        with pytest.raises(ValidationError, match=f"reaches {shown}, beyond what the operator"):
            listed.check_copy("workspace_fork", {"network_policy": "egress", "allow_hosts": hosts})
    with pytest.raises(ValidationError, match="at most 'egress'"):
        listed.check_copy("workspace_fork", {"network_policy": "egress+published-ports"})


@pytest.mark.guest
def test_a_model_cannot_fork_a_networked_workspace_past_the_ceiling(ws_home: Path) -> None:
    from pyro_mcp import Pyro

    with Pyro(base_dir=ws_home) as pyro:
        source = pyro.create_workspace(environment=ENVIRONMENT, network_policy="egress")
    wid = source["workspace_id"]
    try:
        with McpClient(ws_home, "workspace-core") as client:  # the default ceiling: off
            error = client.error("workspace_fork", workspace_id=wid)
            one_line(error, "workspace_fork: the workspace's network_policy 'egress'", "'off'")
            assert "--network-ceiling" not in error
            assert client.ok("workspace_list")["count"] == 1  # nothing was forked
    finally:
        with Pyro(base_dir=ws_home) as pyro:
            pyro.delete_workspace(wid)
