"""The CLI and MCP surfaces, derived from the operation declarations (no sandbox boots here).

Every bad input must end as one clear line: ``[error] …`` on stderr (or ``{"ok": false, …}``
with ``--json``), a non-zero exit, and never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from pyro_mcp import Pyro
from pyro_mcp import create_server as package_create_server
from pyro_mcp.api import operations
from pyro_mcp.cli.parser import flag_name
from pyro_mcp.mcp import schema
from pyro_mcp.mcp.server import TOOL_ORDER, create_server, tools_for_profile
from pyro_mcp.operations.registry import PROFILES
from pyro_mcp.version import __version__
from workspace_fixtures import CORE_TOOLS

VM_LIFECYCLE = ("run", "create", "start", "exec", "stop", "delete", "status", "network_info")
VM_TOOLS = {f"vm_{name}" for name in (*VM_LIFECYCLE, "reap_expired", "list_environments")}


def run_op():
    return next(op for op in operations() if op.name == "run_in_vm")


# -- help ------------------------------------------------------------------------------------


def test_top_level_help_lists_the_command_groups(run_pyro) -> None:
    result = run_pyro("--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "env", "mcp", "doctor", "demo"):
        assert f"    {command} " in result.stdout


def test_version(run_pyro) -> None:
    result = run_pyro("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"pyro {__version__}")


def test_run_help_is_derived_from_the_declaration(run_pyro) -> None:
    result = run_pyro("run", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps help text
    op = run_op()
    assert op.summary in text
    for param in op.params:
        if param.meta.cli == "remainder":
            assert "-- CMD" in text
        elif param.meta.cli == "positional":
            assert "ENVIRONMENT" in text
        else:
            assert flag_name(param.name) in text
        assert " ".join(param.meta.help.split()) in text
    for flag, default in (("--vcpu-count", 1), ("--mem-mib", 1024), ("--ttl-seconds", 600)):
        assert flag in text and f"(default: {default})" in text
    assert "--json" in text


def test_run_usage_line_names_the_environment(run_pyro) -> None:
    usage = run_pyro("run", "--help").stdout.split("\n\n")[0]
    assert usage.startswith("usage: pyro run ")
    assert " ".join(usage.split()).endswith("ENVIRONMENT -- CMD ...")


def test_env_help_lists_its_subcommands(run_pyro) -> None:
    result = run_pyro("env", "--help")
    assert result.returncode == 0, result.stderr
    for sub in ("list", "pull", "inspect", "prune"):
        assert f"    {sub} " in result.stdout


def test_group_without_subcommand_shows_help_and_fails(run_pyro) -> None:
    result = run_pyro("env")
    assert result.returncode != 0
    assert "usage: pyro env" in result.stderr
    assert "Traceback" not in result.stderr


# -- bad input: one [error] line ----------------------------------------------------------------

# (command line, expected message, whether stderr also gets a '[run] phase' line today).
# Leading NAME=VALUE words are environment variables.
BAD_INPUTS = [
    ("run nosuch:1 -- true", "unknown environment 'nosuch:1'", False),
    ("run debian:12", "command is required after `--`", False),
    ("run debian:12 --", "command is required after `--`", False),
    ("run debian:12 --vcpu-count 0 -- true", "vcpu_count must be between 1 and 8", False),
    ("run debian:12 --vcpu-count 9 -- true", "vcpu_count must be between 1 and 8", False),
    ("run debian:12 --mem-mib 100 -- true", "mem_mib must be between 256 and 32768", False),
    ("run debian:12 --ttl-seconds 5 -- true", "ttl_seconds must be between 60 and 86400", False),
    ("run debian:12 --vcpu-count abc -- true", "invalid int value: 'abc'", False),
    ("run debian:12 --timeout-seconds 0 -- true", "timeout_seconds must be greater than 0", False),
    ("run debian:12 --engine bogus -- true", "invalid choice: 'bogus'", False),
    ("PYRO_ENGINE=bogus run debian:12 -- true", "unknown engine 'bogus'", True),
    ("mcp serve --profile bogus", "invalid choice: 'bogus'", False),
    ("nosuchcommand", "invalid choice: 'nosuchcommand'", False),
]


def split_line(line: str) -> tuple[list[str], dict[str, str]]:
    words = line.split()
    env = {}
    while words and re.match(r"[A-Z_]+=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return words, env


STRICT = [pytest.param(*split_line(line), msg, id=line) for line, msg, _noisy in BAD_INPUTS]


def assert_no_traceback(result) -> None:
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(("args", "env", "message"), STRICT)
def test_bad_input_is_a_clear_error(run_pyro, args, env, message) -> None:
    result = run_pyro(*args, env=env)
    assert result.returncode != 0
    assert_no_traceback(result)
    assert message in result.stderr
    assert result.stdout == ""
    assert len(result.stderr_lines) == 1, result.stderr
    assert result.stderr_lines[0].startswith("[error] ")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"environment": "nosuch:1"}, "unknown environment"),
        ({"command": "  "}, "command must be a non-empty string"),
        ({"timeout_seconds": 0}, "timeout_seconds must be greater than 0"),
        ({"vcpu_count": 9}, "vcpu_count must be between 1 and 8"),
        ({"mem_mib": 100}, "mem_mib must be between"),
        ({"ttl_seconds": 5}, "ttl_seconds must be between"),
    ],
)
def test_sdk_run_rejects_bad_input_before_any_phase(kwargs, message) -> None:
    phases: list[str] = []
    args = {"environment": "debian:12", "command": "true", **kwargs}
    with Pyro() as pyro, pytest.raises(ValueError, match=message):
        pyro.run_in_vm(**args, on_phase=phases.append)
    assert phases == []  # nothing was created, let alone booted


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nosuch:1", "--json", "--", "true"], "known environments: debian:12"),
        (["run", "debian:12", "--json", "--vcpu-count", "9", "--", "true"], "vcpu_count"),
        (["run", "debian:12", "--json", "--vcpu-count", "abc", "--", "true"], "invalid int"),
        (["run", "debian:12", "--json", "--"], "command is required after `--`"),
    ],
)
def test_json_errors_are_json_on_stdout(run_pyro, args, message) -> None:
    result = run_pyro(*args)
    assert result.returncode != 0
    assert_no_traceback(result)
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert message in payload["error"]


def test_json_after_double_dash_belongs_to_the_command(run_pyro) -> None:
    # `--json` after `--` is part of the guest command, so the error stays human.
    result = run_pyro("run", "nosuch:1", "--", "echo", "--json")
    assert result.stdout == ""
    assert "[error] unknown environment" in result.stderr


def test_unknown_engine_is_rejected_even_with_host_compat(run_pyro, tmp_path: Path) -> None:
    marker = tmp_path / "ran-on-host"
    argv = ["run", "debian:12", "--allow-host-compat", "--", "touch", str(marker)]
    result = run_pyro(*argv, env={"PYRO_ENGINE": "bogus"})
    assert not marker.exists(), "the command ran on the host"
    assert result.returncode != 0
    assert "unknown engine 'bogus'" in result.stderr


# -- MCP ----------------------------------------------------------------------------------------


def list_tools(profile: str) -> dict:
    server = create_server(Pyro(), profile=profile)
    return {tool.name: tool for tool in asyncio.run(server.list_tools())}


def test_vm_run_profile_has_exactly_vm_run() -> None:
    assert [op.mcp_name for op in tools_for_profile("vm-run")] == ["vm_run"]
    assert list(list_tools("vm-run")) == ["vm_run"]


def test_workspace_full_has_every_vm_tool() -> None:
    names = {op.mcp_name for op in tools_for_profile("workspace-full")}
    assert names >= VM_TOOLS
    assert set(list_tools("workspace-full")) == names


def test_tools_are_listed_in_the_spec_order() -> None:
    """PRODUCT_SPEC §3's order, core tools first; TOOL_ORDER names every tool once."""
    assert len(set(TOOL_ORDER)) == len(TOOL_ORDER) == 46
    assert [op.mcp_name for op in tools_for_profile("workspace-full")] == list(TOOL_ORDER)
    assert list(list_tools("workspace-full")) == list(TOOL_ORDER)
    core = [op.mcp_name for op in tools_for_profile("workspace-core")]
    assert core == list(TOOL_ORDER[:17]) == list(CORE_TOOLS)  # the spec's list, written out
    assert list(list_tools("workspace-core")) == core


def test_profiles_nest() -> None:
    run, core, full = ({op.mcp_name for op in tools_for_profile(p)} for p in PROFILES)
    assert run <= core <= full
    assert "vm_create" not in core  # the low-level lifecycle is a workspace-full tool


@pytest.mark.parametrize(
    "make",
    [
        lambda: tools_for_profile("bogus"),
        lambda: create_server(Pyro(), profile="bogus"),
        lambda: Pyro().create_server(profile="bogus"),
        lambda: package_create_server(profile="bogus"),
    ],
    ids=["tools_for_profile", "mcp.server.create_server", "Pyro.create_server", "package"],
)
def test_unknown_profile_raises_value_error(make) -> None:
    with pytest.raises(ValueError, match="unknown profile 'bogus'"):
        make()


def test_vm_run_schema_carries_the_ranges() -> None:
    schema = list_tools("vm-run")["vm_run"].inputSchema
    props = schema["properties"]
    assert sorted(schema["required"]) == ["command", "environment"]
    assert (props["vcpu_count"]["minimum"], props["vcpu_count"]["maximum"]) == (1, 8)
    assert (props["mem_mib"]["minimum"], props["mem_mib"]["maximum"]) == (256, 32768)
    assert (props["ttl_seconds"]["minimum"], props["ttl_seconds"]["maximum"]) == (60, 86400)
    assert props["timeout_seconds"]["exclusiveMinimum"] == 0
    defaults = [props[name].get("default") for name in props]
    assert list(props) == [
        "environment",
        "command",
        "vcpu_count",
        "mem_mib",
        "timeout_seconds",
        "ttl_seconds",
        "network",
        "max_result_bytes",
    ]  # fmt: skip (no allow_host_compat: over MCP only the operator decides, issue 11)
    assert defaults == [None, None, 1, 1024, 30, 600, False, 7168]  # bounded over MCP


def test_tool_schemas_match_the_declarations() -> None:
    tools = list_tools("workspace-full")
    for op in tools_for_profile("workspace-full"):
        tool = tools[op.mcp_name]
        assert tool.description == schema.description(op)
        assert list(tool.inputSchema.get("properties", {})) == [
            p.meta.mcp_name or p.name for p in op.mcp_params("workspace-full")
        ]
        assert tool.annotations.readOnlyHint is op.read_only
        assert tool.annotations.destructiveHint is op.destructive
        assert tool.outputSchema is not None  # structured output


def test_tool_annotations() -> None:
    tools = list_tools("workspace-full")
    assert tools["vm_status"].annotations.readOnlyHint is True
    assert tools["vm_list_environments"].annotations.readOnlyHint is True
    assert tools["vm_delete"].annotations.destructiveHint is True
    assert tools["vm_run"].annotations.readOnlyHint is False


def test_invalid_tool_arguments_are_a_tool_error_naming_the_field() -> None:
    # Rejected by the schema before anything is created: no sandbox boots.
    from mcp.server.fastmcp.exceptions import ToolError

    server = create_server(Pyro(), profile="vm-run")
    with pytest.raises(ToolError, match="vcpu_count"):
        asyncio.run(
            server.call_tool(
                "vm_run", {"environment": "debian:12", "command": "true", "vcpu_count": 99}
            )
        )


def test_json_safe_shows_undecodable_bytes_and_leaves_the_rest() -> None:
    from pyro_mcp.jsonsafe import json_safe

    plain = {"a": ["é ✓", 1, None, {"b": True}]}
    assert json_safe(plain) == plain
    odd = {"bad\udcffkey": ["x\udc80y", ("\ud800",)], "n": 2}
    safe = json_safe(odd)
    assert safe == {"bad\\xffkey": ["x\\x80y", ["\\ud800"]], "n": 2}
    json.dumps(safe, ensure_ascii=False).encode("utf-8")  # UTF-8 can carry it now
