"""Every tool's structured result against its own declared ``outputSchema`` (issue 12c).

One real call of every workspace-full tool, through the official MCP client and a real
gVisor sandbox. The client validates ``structuredContent`` against the schema itself; this
test validates again (jsonschema, ``additionalProperties: false`` on every closed object) so
a result field the declaration lacks, or a declared field of the wrong type, fails here.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mcp_adapter import McpPyro
from workspace_fixtures import McpClient

pytestmark = pytest.mark.guest


def _closed_objects(schema: Any, where: str = "$") -> list[str]:
    """Paths of object schemas with properties that still allow unknown fields."""
    found: list[str] = []
    if isinstance(schema, dict):
        if "properties" in schema and schema.get("additionalProperties") is not False:
            found.append(where)
        for key, value in schema.items():
            found += _closed_objects(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += _closed_objects(value, f"{where}[{index}]")
    return found


def _story(call: Any, tmp: Path) -> None:
    """One call of every tool, in an order that makes each one meaningful."""
    call("vm_list_environments", {})
    call("vm_run", {"environment": "debian:12", "command": "echo hi"})
    vm = call("vm_create", {"environment": "debian:12"})["vm_id"]
    call("vm_status", {"vm_id": vm})
    call("vm_start", {"vm_id": vm})
    call("vm_network_info", {"vm_id": vm})
    call("vm_exec", {"vm_id": vm, "command": "echo vm"})
    vm = call("vm_create", {"environment": "debian:12"})["vm_id"]
    call("vm_start", {"vm_id": vm})
    call("vm_stop", {"vm_id": vm})
    call("vm_delete", {"vm_id": vm})
    call("vm_reap_expired", {})
    seed = tmp / "seed"
    seed.mkdir()
    (seed / "a.txt").write_text("one\n")
    ws = call(
        "workspace_create",
        {"environment": "debian:12", "seed_path": str(seed), "name": "s", "labels": {"k": "v"}},
    )["workspace_id"]
    w = {"workspace_id": ws}
    call("workspace_list", {})
    call("workspace_update", {**w, "name": "t"})
    call("workspace_status", w)
    call("workspace_sync_push", {**w, "source_path": str(seed), "dest": "/workspace/sub"})
    call("workspace_exec", {**w, "command": "echo out; echo err >&2"})
    call("workspace_logs", w)
    call("workspace_file_list", {**w, "recursive": True})
    call("workspace_file_read", {**w, "path": "a.txt"})
    call("workspace_file_write", {**w, "path": "b.txt", "text": "two\n"})
    patch = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-one\n+uno\n"
    call("workspace_patch_apply", {**w, "patch": patch})
    call("workspace_diff", w)
    call("workspace_export", {**w, "path": "a.txt", "output_path": str(tmp / "out.txt")})
    call("snapshot_create", {**w, "name": "s1"})
    call("snapshot_list", w)
    call("workspace_reset", {**w, "snapshot": "s1"})
    child = call("workspace_fork", {**w, "snapshot": "s1", "labels": {"fork": "yes"}})
    call("workspace_delete", {"workspace_id": child["workspace_id"]})
    call("snapshot_delete", {**w, "name": "s1"})
    svc = {**w, "service_name": "web"}
    call("service_start", {**svc, "command": "touch ready; sleep 300", "ready_file": "ready"})
    call("service_list", w)
    call("service_status", svc)
    call("service_logs", svc)
    call("service_stop", svc)
    shell = {**w, "shell_id": call("shell_open", w)["shell_id"]}
    call("shell_write", {**shell, "input": "echo typed"})
    call("shell_read", {**shell, "wait_for_idle_ms": 300})
    call("shell_signal", {**shell, "signal_name": "INT"})
    call("shell_close", shell)
    call("workspace_network_log", w)
    call("workspace_secret_set", {**w, "name": "TOK"})
    call("workspace_stop", w)
    call("workspace_disk_list", w)
    call("workspace_disk_read", {**w, "path": "a.txt"})
    call("workspace_disk_export", {**w, "output_path": str(tmp / "disk.ext4")})
    call("workspace_start", w)
    call("workspace_delete", w)


def test_every_tool_result_matches_its_output_schema(state_dir: Path) -> None:
    env = {"PYRO_HOME": str(state_dir), "PYRO_ENGINE": "gvisor"}
    # PYRO_TEST_DUMP_RESULTS: a directory the results are saved in
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as keys:
        Path(keys, "tok").write_text("not-a-real-token\n")
        serve = McpPyro(
            "workspace-full", env, (tmp,), ("--secret", f"TOK=@{keys}/tok", "--secret-plain", "TOK")
        )
        with serve as pyro:
            _every_tool(pyro, Path(tmp), os.environ.get("PYRO_TEST_DUMP_RESULTS"))


def _every_tool(pyro: McpPyro, tmp: Path, dump: str | None) -> None:
    tools = {t.name: t for t in pyro._call(lambda s: s.list_tools()).tools}
    called: set[str] = set()

    def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = pyro.call_tool(name, arguments)
        if dump:
            Path(dump, f"{name}.json").write_text(json.dumps(result, indent=1))
        schema = tools[name].outputSchema
        assert schema is not None, f"{name} declares no outputSchema"
        jsonschema.validate(result, schema)
        called.add(name)
        return result

    _story(call, tmp)
    assert called == set(tools), f"not called: {sorted(set(tools) - called)}"
    for name, tool in tools.items():
        schema = tool.outputSchema or {}
        assert _closed_objects(schema) == [], f"{name}: open objects"
        assert schema.get("properties"), f"{name}: no fields named"


# Through the egress proxy from the guest, with bash only: a refused CONNECT is logged.
REFUSED_CONNECT = (
    "bash -c 'exec 3<>/dev/tcp/127.0.0.1/3128 && "
    'printf "CONNECT 192.168.1.1:443 HTTP/1.1\\r\\n\\r\\n" >&3 && head -c 12 <&3\''
)


def test_networked_results_match_their_output_schemas(state_dir: Path) -> None:
    """The shapes' network variants: a VM's network info, allow_hosts, published ports and
    egress log entries (the official client checks each result against the schema too)."""
    args = ["--network-ceiling", "egress+published-ports"]
    with McpClient(state_dir, "workspace-full", args=args) as client:
        schemas = {name: tool.outputSchema for name, tool in client.tools().items()}

        def call(name: str, **arguments: Any) -> dict[str, Any]:
            result = client.ok(name, **arguments)
            jsonschema.validate(result, schemas[name])
            return result

        vm = call("vm_create", environment="debian:12", network=True)["vm_id"]
        call("vm_start", vm_id=vm)
        info = call("vm_network_info", vm_id=vm)
        assert info["network_enabled"] is True and "proxy" in info
        call("vm_delete", vm_id=vm)
        wid = call(
            "workspace_create", environment="debian:12", network_policy="egress+published-ports"
        )["workspace_id"]
        try:
            w = {"workspace_id": wid}
            call("workspace_update", **w, allow_hosts=["example.com"])
            done = call("workspace_exec", **w, command=REFUSED_CONNECT)
            assert done["stdout"].startswith("HTTP/1."), done
            log = call("workspace_network_log", **w)
            assert log["entries"] and log["entries"][-1]["allowed"] is False, log
            started = call(
                "service_start",
                **w,
                service_name="idle",
                command="sleep 300",
                published_ports=[{"guest_port": 8080}],
            )
            assert started["published_ports"][0]["guest_port"] == 8080, started
            call("service_list", **w)
            call("workspace_status", **w)
        finally:
            client.ok("workspace_delete", workspace_id=wid)
