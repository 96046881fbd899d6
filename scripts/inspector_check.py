"""`make check`: a real external MCP client, the MCP Inspector CLI (Node, pinned in
.ci/inspector/package.json, installed there by scripts/host-setup.sh), drives `pyro mcp serve`
over stdio and over streamable HTTP.

On each transport: `tools/list` for every profile (the names must be the profile's tools,
in order), then a repro-fix loop through `tools/call` (create a workspace from a seed
directory, a failing test, write the fix, the test passes, delete). Over HTTP also: no token
is refused with 401, a foreign Origin with 403.

Everything runs under a private PYRO_HOME that is removed at the end, with every workspace
this run created deleted first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INSPECTOR = ROOT / ".ci" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"
PYRO = str(Path(sys.executable).with_name("pyro"))
CALL_SECONDS = 300
TOKEN = "inspector-check-" + os.urandom(12).hex()
SEED = {
    "calc.sh": "add() { echo $(($1 - $2)); }\n",  # the bug: minus
    "test.sh": '. ./calc.sh\n[ "$(add 2 3)" = 5 ] || { echo "FAIL: add 2 3 gave $(add 2 3)"; '
    "exit 1; }\necho PASS\n",
}
FIX = "add() { echo $(($1 + $2)); }\n"


class CheckFailed(RuntimeError):
    pass


def inspector(target: list[str], method: list[str], expect_ok: bool = True) -> Any:
    """One Inspector CLI run; its JSON answer (or, with expect_ok=False, its stderr)."""
    argv = [str(INSPECTOR), "--cli", *method, *target]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=CALL_SECONDS, check=False)
    if not expect_ok:
        if proc.returncode == 0:
            raise CheckFailed(f"the Inspector was served, expected a refusal: {method}")
        return proc.stderr
    if proc.returncode != 0:
        raise CheckFailed(f"Inspector {method} failed ({proc.returncode}): {proc.stderr[-800:]}")
    return json.loads(proc.stdout)


def call(target: list[str], tool: str, **arguments: Any) -> dict[str, Any]:
    method = ["--method", "tools/call"]
    for key, value in arguments.items():  # JSON, so "123" stays a string for the Inspector
        method += ["--tool-arg", f"{key}={json.dumps(value)}"]
    method += ["--tool-name", tool]  # last: --tool-arg takes every word up to an option
    result = inspector(target, method)
    if result.get("isError") or not isinstance(result.get("structuredContent"), dict):
        raise CheckFailed(f"{tool} failed: {result.get('content')}")
    text = result["content"][0]["text"]
    if json.loads(text) != result["structuredContent"] or "\n" in text:
        raise CheckFailed(f"{tool}: the text block is not compact JSON of structuredContent")
    return dict(result["structuredContent"])


def check_tools(target: list[str], profile: str) -> None:
    from pyro_mcp.mcp.server import tools_for_profile

    expected = [op.mcp_name for op in tools_for_profile(profile)]
    listed = [tool["name"] for tool in inspector(target, ["--method", "tools/list"])["tools"]]
    if listed != expected:
        raise CheckFailed(f"{profile}: tools/list gave {listed}, expected {expected}")
    print(f"  tools/list {profile}: {len(listed)} tools")


def repro_fix(target: list[str], seed: Path, home: Path) -> None:
    ws = call(target, "workspace_create", environment="debian:12", seed_path=str(seed))
    wid = ws["workspace_id"]
    try:
        if wid not in listed_workspaces(home):
            raise CheckFailed(f"workspace {wid} is not in this run's PYRO_HOME {home}")
        failing = call(target, "workspace_exec", workspace_id=wid, command="sh test.sh")
        if failing["exit_code"] == 0 or "FAIL: add 2 3 gave -1" not in failing["stdout"]:
            raise CheckFailed(f"the seeded test should fail: {failing}")
        call(target, "workspace_file_write", workspace_id=wid, path="calc.sh", text=FIX)
        passing = call(target, "workspace_exec", workspace_id=wid, command="sh test.sh")
        if passing["exit_code"] != 0 or passing["stdout"].strip() != "PASS":
            raise CheckFailed(f"the fixed test should pass: {passing}")
    finally:
        call(target, "workspace_delete", workspace_id=wid)
    print("  repro-fix: create (seeded), exec fails, file_write, exec passes, delete")


def stdio_target(home: Path, root: Path, profile: str) -> list[str]:
    # The Inspector passes its server only the variables named with -e.
    serve = [PYRO, "mcp", "serve", "--profile", profile, "--host-root", str(root)]
    return ["-e", f"PYRO_HOME={home}", "--", *serve]


@contextmanager
def http_server(home: Path, root: Path, profile: str) -> Iterator[str]:
    env = {**os.environ, "PYRO_HOME": str(home), "PYRO_MCP_TOKEN": TOKEN}
    argv = [PYRO, "mcp", "serve", "--transport", "http", "--port", "0", "--profile", profile]
    log = home.parent / f"http-{profile}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*argv, "--host-root", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"http://127\.0\.0\.1:\d+/mcp", log.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise CheckFailed(f"the HTTP server did not start: {log.read_text()}")
            time.sleep(0.1)
        yield found.group(0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def http_target(url: str, *headers: str) -> list[str]:
    return [url, "--transport", "http", *(arg for h in headers for arg in ("--header", h))]


def check_http_refusals(url: str) -> None:
    listing = ["--method", "tools/list"]
    refused = inspector(http_target(url), listing, expect_ok=False)
    # The Inspector prints the refusal's body (the status codes are checked by
    # tests/test_mcp_http.py); the server sends "unauthorized" with 401, "forbidden" with 403.
    if "unauthorized: send the header" not in refused:
        raise CheckFailed(f"no token: expected 401, the Inspector said: {refused[-400:]}")
    foreign = http_target(url, f"Authorization: Bearer {TOKEN}", "Origin: http://evil.example")
    refused = inspector(foreign, listing, expect_ok=False)
    if "forbidden: this Origin" not in refused:
        raise CheckFailed(f"foreign Origin: expected 403, the Inspector said: {refused[-400:]}")
    print("  no token: refused (401, unauthorized); foreign Origin: refused (403, forbidden)")


def run(work: Path) -> None:
    from pyro_mcp.operations.registry import PROFILES

    home, root = work / "home", work / "root"
    seed = root / "seed"
    seed.mkdir(parents=True)
    for name, text in SEED.items():
        (seed / name).write_text(text)
    print("== MCP Inspector CLI over stdio ==")
    for profile in PROFILES:
        check_tools(stdio_target(home, root, profile), profile)
    repro_fix(stdio_target(home, root, "workspace-core"), seed, home)
    print("== MCP Inspector CLI over streamable HTTP ==")
    for profile in PROFILES:
        with http_server(home, root, profile) as url:
            target = http_target(url, f"Authorization: Bearer {TOKEN}")
            check_tools(target, profile)
            if profile == "workspace-core":
                repro_fix(target, seed, home)
                check_http_refusals(url)


def listed_workspaces(home: Path) -> list[str]:
    from pyro_mcp import Pyro

    with Pyro(base_dir=home) as pyro:
        return [w["workspace_id"] for w in pyro.list_workspaces()["workspaces"]]


def delete_workspaces(home: Path) -> list[str]:
    """Delete (and name) any workspace this run left behind."""
    if not home.exists():
        return []
    from pyro_mcp import Pyro

    left = listed_workspaces(home)
    with Pyro(base_dir=home) as pyro:
        for wid in left:
            pyro.delete_workspace(wid)
    return left


def main() -> int:
    if not INSPECTOR.exists():
        print(f"[error] {INSPECTOR} is missing: run scripts/host-setup.sh", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="pyro-inspector-"))
    try:
        run(work)
    except (CheckFailed, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        print(f"[error] inspector check: {exc}", file=sys.stderr)
        return 1
    finally:
        leftovers = delete_workspaces(work / "home")
        shutil.rmtree(work, ignore_errors=True)
    if leftovers:
        print(f"[error] inspector check: workspaces were left behind: {leftovers}")
        return 1
    print("inspector check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
