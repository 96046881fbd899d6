"""The five use-case stories through the MCP server, driven by the official MCP client.

The same scenario code as the SDK smoke packs (pyro_mcp.smoke.scenarios) runs against
``McpPyro``, which turns every SDK-style call into a real ``tools/call`` over stdio. Each
story uses its recommended profile, so a tool missing from that profile fails the story.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from mcp_adapter import McpPyro, McpToolError
from pyro_mcp.smoke.scenarios import SCENARIOS, SmokeFailure, Story

PROFILE = {
    "cold-start-validation": "workspace-full",
    "repro-fix-loop": "workspace-core",
    "parallel-workspaces": "workspace-core",
    "untrusted-inspection": "workspace-core",
    "review-eval": "workspace-full",
}

pytestmark = pytest.mark.guest


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_story_through_mcp(scenario: str, state_dir: Path) -> None:
    env = {"PYRO_HOME": str(state_dir), "PYRO_ENGINE": "gvisor"}
    with tempfile.TemporaryDirectory() as tmp, McpPyro(PROFILE[scenario], env, (tmp,)) as pyro:
        story = Story(pyro, scenario, "debian:12", Path(tmp))  # type: ignore[arg-type]
        with story.workspaces():
            result = SCENARIOS[scenario](story, False)
        assert result
        listed = pyro.list_workspaces()["workspaces"]
        assert not [w for w in listed if w["workspace_id"] in story.created], "left behind"


def test_broken_fixture_fails_clearly_through_mcp(state_dir: Path) -> None:
    env = {"PYRO_HOME": str(state_dir), "PYRO_ENGINE": "gvisor"}
    with tempfile.TemporaryDirectory() as tmp, McpPyro("workspace-core", env, (tmp,)) as pyro:
        story = Story(pyro, "repro-fix-loop", "debian:12", Path(tmp))  # type: ignore[arg-type]
        with (
            pytest.raises((SmokeFailure, McpToolError), match="does not apply"),
            story.workspaces(),
        ):
            SCENARIOS["repro-fix-loop"](story, True)


def test_core_profile_lacks_the_full_tools(state_dir: Path) -> None:
    env = {"PYRO_HOME": str(state_dir), "PYRO_ENGINE": "gvisor"}
    with McpPyro("workspace-core", env) as pyro:
        names = pyro.tool_names()
        assert "shell_open" not in names and "service_start" not in names
        with pytest.raises(McpToolError, match="shell_open"):
            pyro.call_tool("shell_open", {"workspace_id": "0" * 12})
