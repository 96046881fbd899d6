"""Brokered secrets over MCP: the operator declares them (``--secret GH=@FILE
--secret-host GH=HOST``); a model names them, for create and for ``workspace_secret_set``,
and can never pass a value, a file, hosts or a header."""

from __future__ import annotations

import shutil
from pathlib import Path

from pyro_mcp.api import operations
from pyro_mcp.mcp.policy import OperatorPolicy
from support import one_line, short_tmp_dir
from workspace_fixtures import McpClient


def _op(name: str):  # type: ignore[no-untyped-def]
    return next(op for op in operations() if op.name == name)


def test_declared_hosts_broker_the_secret_and_a_file_is_read_at_use(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-value")
    policy = OperatorPolicy.from_args(
        [str(tmp_path)],
        secrets=[f"GH=@{token}", "PLAIN"],
        secret_hosts=["GH=api.example.com"],
        plain_secrets=["PLAIN"],
        environ={"PLAIN": "plain-value"},
    )
    assert policy.plain_secret_names == ["PLAIN"]
    assert "GH (brokered: added by the egress proxy for api.example.com" in policy.instructions()
    assert "first-value" not in policy.instructions() + repr(policy)
    create = _op("create_workspace")
    kwargs = policy.arguments(create, {"secrets": ["GH"]})
    assert kwargs["secrets"] == [
        {"name": "GH", "file_path": str(token), "hosts": ["api.example.com"]}
    ]
    token.write_text("rotated-value")  # the operator rotates by rewriting the file
    set_op = _op("set_workspace_secret")
    filled = policy.arguments(set_op, {"workspace_id": "0123456789ab", "name": "GH"})
    assert filled["file_path"] == str(token) and filled["hosts"] == ["api.example.com"]
    assert filled["value"] is None and filled["header"] is None


def test_a_model_names_the_secret_to_set_and_nothing_else(tmp_path: Path) -> None:
    home = short_tmp_dir("pyro-bkm-")
    token = tmp_path / "token"
    token.write_text("tok-never-shown")
    args = ["--secret", f"GH=@{token}", "--secret-host", "GH=api.example.com"]
    try:
        _set_over_mcp(home, args)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _set_over_mcp(home: Path, args: list[str]) -> None:
    with McpClient(home, "workspace-full", args=args) as client:
        assert "brokered" in (client.instructions or "")
        tool = client.tools()["workspace_secret_set"]
        assert sorted(tool.inputSchema["properties"]) == ["name", "workspace_id"]
        error = client.error(
            "workspace_secret_set", workspace_id="0123456789ab", name="GH", value="x"
        )
        one_line(error, "unknown argument 'value'")
        error = client.error("workspace_secret_set", workspace_id="0123456789ab", name="NOPE")
        one_line(error, "unknown secret 'NOPE'", "the operator declared GH")
        error = client.error("workspace_secret_set", workspace_id="0123456789ab", name="GH")
        one_line(error, "0123456789ab")
        assert "tok-never-shown" not in error
