"""Every example runs, and every MCP host config starts a working server.

The scripts run as a user would run them (``python examples/<name>.py``) from an empty
directory, with PYRO_ENGINE=gvisor, a fresh PYRO_HOME and the checkout's .venv/bin first on
PATH (the MCP examples start ``pyro`` from there). Each must exit 0, print what its story
promises, and leave no workspace behind.

The configs in examples/mcp-configs/ must parse, name exactly the documented launch
command, and start a server that answers over stdio with the workspace-core tools. The
checkout form (``uv run --project /path/to/pyro-mcp …``) is started as written, with the
placeholder replaced by this checkout; the uvx form (``uvx --from pyro-mcp pyro …``) would
fetch a release from PyPI, so its ``pyro …`` part is started from this checkout instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from pyro_mcp import Pyro
from pyro_mcp.api import operations
from support import short_tmp_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CONFIGS = EXAMPLES / "mcp-configs"
PLACEHOLDER = "/path/to/pyro-mcp"
PROJECT = "/path/to/your/project"  # the operator's --host-root in every config
SERVE = ["pyro", "mcp", "serve", "--profile", "workspace-core", "--host-root", PROJECT]
LAUNCHERS = {
    "uvx": ("uvx", ["--from", "pyro-mcp", *SERVE]),
    "checkout": ("uv", ["run", "--project", PLACEHOLDER, *SERVE]),
}
CORE_TOOLS = {op.mcp_name for op in operations() if "workspace-core" in op.profiles}

# What each script must print besides "[example] OK" (one entry per script in examples/).
EXPECTED: dict[str, list[str]] = {
    "sdk_run.py": ["stdout: git version", "exit_code=7", "exit_code=124 timed_out=True"],
    "sdk_cold_start_validation.py": [
        "stdout='validated'",
        "service app: state=running",
        "probe: service=ready",
        "exported report: validation=pass",
        "service app: state=stopped",
    ],
    "sdk_repro_fix_loop.py": [
        "message.txt: broken",
        "repro: exit_code=1",
        "check after fix: exit_code=0",
        "+fixed",
        "exported message.txt: fixed",
        "reset: reset_count=1 diff changed=False",
    ],
    "sdk_parallel_workspaces.py": [
        "alpha sees 'alpha was last', beta sees 'beta was here'",
        "'owner': 'alice'",
    ],
    "sdk_untrusted_inspection.py": [
        "network_policy=off",
        "/workspace/suspicious.sh",
        "3:curl -fsSL",
    ],
    "sdk_review_eval.py": [
        "Review checklist",
        "artifact.txt after reset: PASS",
        "exported report: review=pass",
    ],
    "mcp_workspace_core_client.py": [
        "17 tools",
        "workspace_exec sh check.sh -> exit_code=1",
        "workspace_patch_apply -> changed=True",
        "workspace_exec sh check.sh -> exit_code=0",
        "workspace_export message.txt -> 'fixed'",
        "workspace_reset -> reset_count=1; workspace_diff -> changed=False",
        "workspace_delete",
    ],
    "mcp_vm_run_client.py": [
        "tools ['vm_run']",
        "exit_code=0 stdout='git version",
        "isError=True: Error executing tool vm_run: unknown environment 'nosuch:1'",
    ],
}
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))


def venv_bin() -> Path:
    candidate = ROOT / ".venv" / "bin"
    return candidate if (candidate / "pyro").exists() else Path(sys.executable).parent


def test_every_example_has_expectations() -> None:
    assert SCRIPTS, "no examples found"
    assert set(SCRIPTS) == set(EXPECTED), "update EXPECTED for new or removed examples"


def test_examples_are_documented() -> None:
    index = (EXAMPLES / "README.md").read_text()
    for name in SCRIPTS:
        assert f"]({name})" in index, f"examples/README.md does not list {name}"
    for config in sorted(CONFIGS.iterdir()):
        assert f"](mcp-configs/{config.name})" in index, f"examples/README.md lacks {config}"


@pytest.mark.guest
@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs(name: str) -> None:
    home = short_tmp_dir("pyro-ex-")
    cwd = short_tmp_dir("pyro-ex-cwd-")
    env = {
        **os.environ,
        "PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYRO_ENGINE": "gvisor",
        "PYRO_HOME": str(home),
    }
    env.pop("PYRO_BIN", None)
    try:
        proc = subprocess.run(
            [str(venv_bin() / "python"), str(EXAMPLES / name)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        with Pyro(base_dir=home) as pyro:
            left = [w["workspace_id"] for w in pyro.list_workspaces()["workspaces"]]
            for workspace_id in left:
                pyro.delete_workspace(workspace_id)
        leftover_files = list(cwd.iterdir())
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)
    report = f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{report}"
    for needle in ["[example] OK", *EXPECTED[name]]:
        assert needle in proc.stdout, f"{name} did not print {needle!r}\n{report}"
    assert not left, f"{name} left workspaces behind: {left}"
    assert not leftover_files, f"{name} left files in its working directory: {leftover_files}"


# -- MCP host configs --------------------------------------------------------------------
CONFIG_FILES = sorted(p.name for p in CONFIGS.iterdir())


def load_servers(path: Path) -> dict[str, Any]:
    if path.suffix == ".toml":
        return dict(tomllib.loads(path.read_text())["mcp_servers"])
    data = json.loads(path.read_text())
    if path.name.startswith("opencode"):  # OpenCode: "mcp", and the command as one array
        assert data["$schema"] == "https://opencode.ai/config.json"
        return dict(data["mcp"])
    return dict(data["mcpServers"])


def launcher_of(server: dict[str, Any]) -> str:
    command, args = server.get("command"), server.get("args")
    if isinstance(command, list) and args is None:  # OpenCode's ["cmd", "arg", ...]
        command, args = command[0], command[1:]
    for form, (launcher, launcher_args) in LAUNCHERS.items():
        if command == launcher and args == launcher_args:
            return form
    raise AssertionError(f"not a documented launch command: {server}")


def test_there_is_a_config_per_host_and_form() -> None:
    hosts = {"claude-desktop", "claude-code", "codex", "cursor", "opencode", "generic-stdio"}
    forms: dict[str, set[str]] = {}
    for name in CONFIG_FILES:
        host = name.split(".")[0]
        forms.setdefault(host, set()).add(launcher_of(load_servers(CONFIGS / name)["pyro"]))
    assert set(forms) == hosts
    assert all(found == {"uvx", "checkout"} for found in forms.values()), forms


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_parses_and_names_the_documented_command(name: str) -> None:
    servers = load_servers(CONFIGS / name)
    assert list(servers) == ["pyro"], f"{name}: one server, named pyro"
    server = servers["pyro"]
    launcher_of(server)
    if name.startswith("opencode"):
        assert server["type"] == "local" and server["enabled"] is True
        assert server["timeout"] >= 30000  # ms to list tools; OpenCode's default is 5000
    elif "type" in server:
        assert server["type"] == "stdio"
    if "env" in server:
        assert isinstance(server["env"], dict)
    if name.startswith("codex"):
        assert server["startup_timeout_sec"] >= 30 and server["tool_timeout_sec"] >= 120


async def _serve_and_list(command: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    params = StdioServerParameters(command=command, args=args, env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        listed = await session.call_tool("workspace_list", {})
        return {
            "server": init.serverInfo.name,
            "tools": set(tools),
            "create_params": set(tools["workspace_create"].inputSchema["properties"]),
            "list": listed.structuredContent,
            "list_error": listed.isError,
        }


_LAUNCHED: dict[str, dict[str, Any]] = {}


def launch(form: str) -> dict[str, Any]:
    """Start the server the way a host would, once per launch form (the files share them)."""
    if form not in _LAUNCHED:
        command, args = LAUNCHERS[form]
        if form == "uvx":  # never fetch a release: run this checkout's `pyro …` instead
            command, args = str(venv_bin() / "pyro"), args[3:]
        else:
            uv = shutil.which("uv")
            assert uv, "uv is not on PATH: the checkout configs launch the server with uv"
            command, args = uv, [ROOT.as_posix() if a == PLACEHOLDER else a for a in args]
        home = short_tmp_dir("pyro-cfg-")
        args = [home.as_posix() if a == PROJECT else a for a in args]
        env = {**os.environ, "PYRO_HOME": str(home), "UV_FROZEN": "1"}
        try:
            _LAUNCHED[form] = asyncio.run(
                asyncio.wait_for(_serve_and_list(command, args, env), timeout=120)
            )
        finally:
            shutil.rmtree(home, ignore_errors=True)
    return _LAUNCHED[form]


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_starts_a_workspace_core_server(name: str) -> None:
    result = launch(launcher_of(load_servers(CONFIGS / name)["pyro"]))
    assert result["server"] == "pyro_mcp"
    assert result["tools"] == CORE_TOOLS and len(CORE_TOOLS) == 17
    assert "network_policy" not in result["create_params"]
    assert "secrets" not in result["create_params"]
    assert not result["list_error"] and result["list"]["count"] == 0


def test_config_blocks_in_integrations_match_the_files() -> None:
    """The JSON and TOML shown in docs/integrations.md are copies of files in mcp-configs/."""
    text = (ROOT / "docs" / "integrations.md").read_text()
    blocks = re.findall(r"^```(json|toml)\n(.*?)^```", text, re.M | re.S)
    assert len(blocks) >= 4
    files = {
        name: (CONFIGS / name).read_text()
        for name in CONFIG_FILES
        if name.endswith((".json", ".toml"))
    }
    for lang, body in blocks:
        parsed = tomllib.loads(body) if lang == "toml" else json.loads(body)
        matches = [
            n
            for n, content in files.items()
            if n.endswith(lang)
            and (tomllib.loads(content) if lang == "toml" else json.loads(content)) == parsed
        ]
        assert matches, f"this {lang} block in integrations.md matches no config file:\n{body}"
