"""PRODUCT_SPEC §4 stories 2 (repro + fix loop) and 3 (parallel isolated workspaces), each
told three times: through the SDK, the CLI (``--json``) and the MCP server (``workspace-core``
profile, the official client over stdio). The stories are written once, against a small
``Surface`` with one method per step; each surface maps a step to its own names (SDK method,
CLI command and flags, MCP tool) and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from support import ENVIRONMENT, stop_cli_helpers
from workspace_fixtures import *  # noqa: F403  (the fixtures)
from workspace_fixtures import (
    CORE_TOOLS,
    McpClient,
    cli_json,
    forget,
    run_cli,
    write_tree,
)

CHECK_SH = """\
#!/bin/sh
message="$(cat message.txt)"
if [ "$message" = fixed ]; then
    echo fixed
else
    echo "message is '$message', expected 'fixed'" >&2
    exit 1
fi
"""
FIX_PATCH = """\
--- a/message.txt
+++ b/message.txt
@@ -1 +1 @@
-broken
+fixed
"""


# -- three surfaces, one vocabulary -------------------------------------------------------------


class SdkSurface:
    def __init__(self, pyro: Pyro) -> None:
        self.pyro = pyro
        self.created: list[str] = []

    def create(self, seed: Path, name: str, labels: dict[str, str]) -> dict[str, Any]:
        ws = self.pyro.create_workspace(
            environment=ENVIRONMENT, seed_path=str(seed), name=name, labels=labels
        )
        self.created.append(ws["workspace_id"])
        return ws

    def exec(self, wid: str, command: str) -> dict[str, Any]:
        return self.pyro.exec_workspace(wid, command=command)

    def read(self, wid: str, path: str) -> dict[str, Any]:
        return self.pyro.read_workspace_file(wid, path)

    def write(self, wid: str, path: str, text: str) -> dict[str, Any]:
        return self.pyro.write_workspace_file(wid, path, text=text)

    def patch(self, wid: str, patch: str) -> dict[str, Any]:
        return self.pyro.apply_workspace_patch(wid, patch=patch)

    def diff(self, wid: str) -> dict[str, Any]:
        return self.pyro.diff_workspace(wid)

    def export(self, wid: str, path: str, output: Path) -> dict[str, Any]:
        return self.pyro.export_workspace(wid, path, output_path=str(output))

    def reset(self, wid: str) -> dict[str, Any]:
        return self.pyro.reset_workspace(wid)

    def add_labels(self, wid: str, labels: dict[str, str]) -> dict[str, Any]:
        return self.pyro.update_workspace(wid, labels=labels)

    def list(self) -> dict[str, Any]:
        return self.pyro.list_workspaces()

    def delete(self, wid: str) -> dict[str, Any]:
        return self.pyro.delete_workspace(wid)


class CliSurface:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.created: list[str] = []

    def json(self, *args: str) -> dict[str, Any]:
        return cli_json("workspace", *args, home=self.home)

    def create(self, seed: Path, name: str, labels: dict[str, str]) -> dict[str, Any]:
        label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
        ws = self.json("create", ENVIRONMENT, "--seed-path", str(seed), "--name", name, *label_args)
        self.created.append(ws["workspace_id"])
        return ws

    def exec(self, wid: str, command: str) -> dict[str, Any]:
        result = run_cli("workspace", "exec", wid, "--json", "--", command, home=self.home)
        assert "Traceback" not in result.stderr, result.stderr
        data = json.loads(result.stdout)
        assert result.returncode == data["exit_code"], "the CLI must exit with the command's code"
        return data

    def read(self, wid: str, path: str) -> dict[str, Any]:
        return self.json("file", "read", wid, path)

    def write(self, wid: str, path: str, text: str) -> dict[str, Any]:
        return self.json("file", "write", wid, path, "--text", text)

    def patch(self, wid: str, patch: str) -> dict[str, Any]:
        return self.json("patch", "apply", wid, "--patch", patch)

    def diff(self, wid: str) -> dict[str, Any]:
        return self.json("diff", wid)

    def export(self, wid: str, path: str, output: Path) -> dict[str, Any]:
        return self.json("export", wid, path, "--output", str(output))

    def reset(self, wid: str) -> dict[str, Any]:
        return self.json("reset", wid)

    def add_labels(self, wid: str, labels: dict[str, str]) -> dict[str, Any]:
        label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
        return self.json("update", wid, *label_args)

    def list(self) -> dict[str, Any]:
        return self.json("list")

    def delete(self, wid: str) -> dict[str, Any]:
        return self.json("delete", wid)


class McpSurface:
    def __init__(self, client: McpClient) -> None:
        self.mcp = client
        self.created: list[str] = []

    def create(self, seed: Path, name: str, labels: dict[str, str]) -> dict[str, Any]:
        ws = self.mcp.ok(
            "workspace_create",
            environment=ENVIRONMENT,
            seed_path=str(seed),
            name=name,
            labels=labels,
        )
        self.created.append(ws["workspace_id"])
        return ws

    def exec(self, wid: str, command: str) -> dict[str, Any]:
        return self.mcp.ok("workspace_exec", workspace_id=wid, command=command)

    def read(self, wid: str, path: str) -> dict[str, Any]:
        return self.mcp.ok("workspace_file_read", workspace_id=wid, path=path)

    def write(self, wid: str, path: str, text: str) -> dict[str, Any]:
        return self.mcp.ok("workspace_file_write", workspace_id=wid, path=path, text=text)

    def patch(self, wid: str, patch: str) -> dict[str, Any]:
        return self.mcp.ok("workspace_patch_apply", workspace_id=wid, patch=patch)

    def diff(self, wid: str) -> dict[str, Any]:
        return self.mcp.ok("workspace_diff", workspace_id=wid)

    def export(self, wid: str, path: str, output: Path) -> dict[str, Any]:
        return self.mcp.ok("workspace_export", workspace_id=wid, path=path, output_path=str(output))

    def reset(self, wid: str) -> dict[str, Any]:
        return self.mcp.ok("workspace_reset", workspace_id=wid)

    def add_labels(self, wid: str, labels: dict[str, str]) -> dict[str, Any]:
        return self.mcp.ok("workspace_update", workspace_id=wid, labels=labels)

    def list(self) -> dict[str, Any]:
        return self.mcp.ok("workspace_list")

    def delete(self, wid: str) -> dict[str, Any]:
        return self.mcp.ok("workspace_delete", workspace_id=wid)


Surface = SdkSurface | CliSurface | McpSurface


@pytest.fixture(params=["sdk", "cli", "cli-helper", "mcp"])
def surface(
    request: Any, ws_pyro: Pyro, ws_home: Path, host_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Surface]:
    made: Surface
    if request.param == "mcp":  # the stories' host files are in host_dir: the operator's root
        with McpClient(ws_home, roots=[host_dir]) as client:
            made = McpSurface(client)
            yield made
    elif request.param == "sdk":
        made = SdkSurface(ws_pyro)
        yield made
    else:
        if request.param == "cli-helper":  # every command after the first one goes through
            monkeypatch.setenv("PYRO_CLI_HELPER", "1")  # the warm CLI helper
        made = CliSurface(ws_home)
        yield made
        if request.param == "cli-helper":
            assert stop_cli_helpers(ws_home), "the story never started a CLI helper"
    for workspace_id in made.created:
        forget(ws_pyro, workspace_id)  # only does something when the story failed half-way


# -- story 2: repro + fix loop ------------------------------------------------------------------


@pytest.mark.guest
def test_repro_fix_loop(surface: Surface, host_dir: Path) -> None:
    seed = write_tree(host_dir / "repo", {"message.txt": "broken\n", "check.sh": CHECK_SH})
    patch_file = host_dir / "fix.patch"
    patch_file.write_text(FIX_PATCH)
    labels = {"suite": "workspace-use-case-smoke", "use_case": "repro-fix-loop"}

    ws = surface.create(seed, "repro-fix", labels)
    wid = ws["workspace_id"]
    assert (ws["state"], ws["labels"], ws["network_policy"]) == ("started", labels, "off")
    assert ws["workspace_seed"]["mode"] == "directory"
    assert ws["workspace_seed"]["entry_count"] == 2

    assert surface.read(wid, "message.txt")["content"] == "broken\n"
    failing = surface.exec(wid, "sh check.sh")
    assert failing["exit_code"] != 0
    assert "expected 'fixed'" in failing["stderr"]

    patched = surface.patch(wid, patch_file.read_text())
    assert patched["changed"] is True
    assert patched["summary"] == {"total": 1, "added": 0, "modified": 1, "deleted": 0}

    passing = surface.exec(wid, "sh check.sh")
    assert (passing["exit_code"], passing["stdout"]) == (0, "fixed\n")
    assert passing["sequence"] == failing["sequence"] + 1

    diff = surface.diff(wid)
    assert diff["changed"] is True
    assert [(e["path"], e["status"]) for e in diff["entries"]] == [("message.txt", "modified")]
    assert "-broken\n+fixed\n" in diff["entries"][0]["text_patch"]
    if isinstance(surface, McpSurface):  # MCP pages a diff by default: the joined patch is
        assert diff["patch_omitted"] is True and diff["patch"] == ""  # omitted, entries keep
    else:  # theirs; the SDK and the CLI give the whole of it
        assert "patch_omitted" not in diff and "-broken\n+fixed\n" in diff["patch"]

    output = host_dir / "exported" / "message.txt"
    exported = surface.export(wid, "message.txt", output)
    assert exported["artifact_type"] == "file"
    assert output.read_text().strip() == "fixed"

    reset = surface.reset(wid)
    assert reset["reset_count"] == 1
    assert reset["command_count"] == 0
    assert reset["workspace_reset"]["snapshot_name"] == "baseline"
    after = surface.diff(wid)
    assert (after["changed"], after["entries"]) == (False, [])
    assert surface.read(wid, "message.txt")["content"] == "broken\n"

    assert surface.delete(wid) == {
        "workspace_id": wid,
        "deleted": True,
        "reason": "explicit_delete",
    }


# -- story 3: parallel isolated workspaces --------------------------------------------------------


@pytest.mark.guest
def test_parallel_workspaces(surface: Surface, host_dir: Path) -> None:
    seed = write_tree(host_dir / "repo", {"README.md": "shared seed\n"})
    common = {"suite": "workspace-use-case-smoke", "use_case": "parallel-workspaces"}
    alpha = surface.create(seed, "parallel-alpha", {**common, "branch": "alpha"})
    beta = surface.create(seed, "parallel-beta", {**common, "branch": "beta"})
    a, b = alpha["workspace_id"], beta["workspace_id"]
    assert a != b

    surface.write(a, "branch.txt", "alpha\n")
    surface.write(b, "branch.txt", "beta\n")
    updated = surface.add_labels(a, {"owner": "alice"})
    assert updated["labels"] == {**common, "branch": "alpha", "owner": "alice"}  # merged

    # Read alpha, then beta: if a read counted as activity, beta would now be listed first.
    assert surface.read(a, "branch.txt")["content"] == "alpha\n"
    assert surface.read(b, "branch.txt")["content"] == "beta\n"
    assert surface.read(b, "README.md")["content"] == "shared seed\n"

    listed = [w for w in surface.list()["workspaces"] if w["workspace_id"] in (a, b)]
    assert [w["workspace_id"] for w in listed] == [a, b], "alpha (updated last) must lead"
    assert listed[0]["labels"]["owner"] == "alice"
    assert listed[0]["last_activity_at"] == updated["last_activity_at"]
    assert "owner" not in listed[1]["labels"]

    # Isolated: each sees the seed and its own branch.txt only.
    assert surface.exec(a, "cat branch.txt; ls")["stdout"] == "alpha\nREADME.md\nbranch.txt\n"
    assert surface.exec(b, "cat branch.txt; ls")["stdout"] == "beta\nREADME.md\nbranch.txt\n"

    for wid in (a, b):
        assert surface.delete(wid)["deleted"] is True
    assert not [w for w in surface.list()["workspaces"] if w["workspace_id"] in (a, b)]


# -- the workspace-core profile -----------------------------------------------------------------


def test_workspace_core_tools_are_exactly_the_contracts_sixteen(ws_home: Path) -> None:
    with McpClient(ws_home) as client:
        tools = client.tools()
    assert list(tools) == list(CORE_TOOLS)  # PRODUCT_SPEC §3's list, in its order

    def params(name: str) -> set[str]:
        return set(tools[name].inputSchema.get("properties", {}))

    # The narrowed schemas of §3: no network policy or secrets in the core profile.
    assert {"network_policy", "secrets"}.isdisjoint(params("workspace_create"))
    assert {"environment", "seed_path", "name", "labels"} <= params("workspace_create")
    assert "secret_env" not in params("workspace_exec")
    assert params("workspace_reset") <= {"workspace_id", "snapshot"}
