"""Services (PRODUCT_SPEC §2.12)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

from ..errors import ValidationError
from ..validation import MAX_TIMEOUT_SECONDS, NAME_PATTERN
from .base import OperationsBase
from .params import MaxResultBytes, ShellCommand
from .registry import FULL, HumanOutput, Param, operation
from .render import kv_line
from .workspace_files import SecretEnv
from .workspaces import WorkspaceId

if TYPE_CHECKING:  # the shapes are for mypy and the MCP schema: not on the CLI's path
    from .results_work import ServiceInfo, ServiceList, ServiceLogs

ServiceName = Annotated[
    str,
    Param(
        "The service's name (letters, digits, . _ -; at most 64).",
        cli="positional",
        metavar="NAME",
        mcp_name="service_name",
        pattern=NAME_PATTERN,
    ),
]
KEYS = ["workspace_id", "service_name", "state", "cwd", "execution_mode"]
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
PORT_ITEM = {
    "type": "object",
    "properties": {"guest_port": _PORT, "host_port": _PORT},
    "required": ["guest_port"],
    "additionalProperties": False,
}


def parse_publish(items: list[str]) -> list[dict[str, int]]:
    """``--publish GUEST_PORT`` or ``--publish HOST_PORT:GUEST_PORT`` (repeatable)."""
    out = []
    for item in items:
        host, sep, guest = item.rpartition(":")
        try:
            entry = {"guest_port": int(guest)}
            if sep:
                entry["host_port"] = int(host)
        except ValueError:
            raise ValidationError(
                f"--publish expects GUEST_PORT or HOST_PORT:GUEST_PORT, got {item!r}"
            ) from None
        out.append(entry)
    return out


def _render_start(data: dict[str, Any]) -> HumanOutput:
    return _render(data, "workspace-service-start")


def _keys(service: dict[str, Any], *extra: str) -> list[str]:
    """The keys shown for a service: ``extra`` when present, and ``restarted`` after a start."""
    return [*KEYS, *(k for k in (*extra, "restarted") if service.get(k) is not None)]


def _render(data: dict[str, Any], tag: str = "workspace-service") -> HumanOutput:
    keys = _keys(data, "stop_reason")
    ports = ",".join(
        f"{p['host']}:{p['host_port']}->{p['guest_port']}/tcp"
        for p in data.get("published_ports", [])
    )
    line = kv_line(tag, data, keys) + (f" published_ports={ports}" if ports else "")
    failed = data["state"] == "failed"
    return HumanOutput(stdout=line + "\n", exit_code=1 if failed else 0)


def _render_list(data: dict[str, Any]) -> HumanOutput:
    if not data["services"]:
        return HumanOutput(stdout="No services.\n")
    return HumanOutput(
        stdout="".join(kv_line("workspace-service", s, _keys(s)) + "\n" for s in data["services"])
    )


def _render_logs(data: dict[str, Any]) -> HumanOutput:
    return HumanOutput(stdout=data["stdout"], stderr=data["stderr"])


PublishedPorts = Annotated[
    list[dict[str, int]] | None,
    Param(
        "Publish guest ports on the host's 127.0.0.1: [{guest_port, host_port?}] "
        "(host_port unset: a free one). Needs network_policy egress+published-ports.",
        cli_help="Publish guest ports on 127.0.0.1: [{guest_port, host_port?}] (CLI: "
        "--publish GUEST_PORT or HOST_PORT:GUEST_PORT).",
        items=PORT_ITEM,
        cli="--publish",
        cli_append=True,
        cli_convert=parse_publish,
        metavar="[HOST_PORT:]GUEST_PORT",
    ),
]


class ServiceOperations(OperationsBase):
    @operation(
        mcp="service_start",
        cli=("workspace", "service", "start"),
        profiles=FULL,
        destructive=True,  # it runs an arbitrary command
        reaches_network=True,
        cli_note="The CLI exits 1 when the service failed.",
        render=_render_start,
    )
    def start_service(
        self,
        workspace_id: WorkspaceId,
        name: ServiceName,
        command: ShellCommand,
        cwd: Annotated[str, Param("Working directory under /workspace.")] = "/workspace",
        readiness: Annotated[
            dict[str, Any] | None,
            Param("SDK: {type: file|tcp|http|command, path|address|url|command}.", sdk_only=True),
        ] = None,
        ready_file: Annotated[
            str | None,
            Param("Ready when this path exists (relative to /workspace).", cli_group="readiness"),
        ] = None,
        ready_tcp: Annotated[
            str | None, Param("Ready when HOST:PORT accepts a connection.", cli_group="readiness")
        ] = None,
        ready_http: Annotated[
            str | None, Param("Ready when this URL answers 2xx/3xx.", cli_group="readiness")
        ] = None,
        ready_command: Annotated[
            str | None, Param("Ready when this command exits 0.", cli_group="readiness")
        ] = None,
        ready_timeout_seconds: Annotated[
            float,
            Param("Give up (and stop it) after this many seconds.", gt=0, le=MAX_TIMEOUT_SECONDS),
        ] = 30,
        ready_interval_ms: Annotated[int, Param("Check this often.", ge=10, le=60000)] = 500,
        secret_env: SecretEnv = None,
        published_ports: PublishedPorts = None,
    ) -> ServiceInfo:
        """Start a long-running process and wait for it to be ready.

        state is 'running' when ready, or 'failed' with stop_reason
        process_exited_before_ready or readiness_timeout.
        """
        from ..workspaces import services
        from ..workspaces.services import readiness_from

        return cast(
            "ServiceInfo",
            services.service_start(
                self._ws(workspace_id),
                name,
                command=command,
                cwd=cwd,
                readiness=readiness_from(
                    readiness, ready_file, ready_tcp, ready_http, ready_command
                ),
                ready_timeout_seconds=ready_timeout_seconds,
                ready_interval_ms=ready_interval_ms,
                secret_env=secret_env,
                published_ports=published_ports,
            ),
        )

    @operation(
        mcp="service_list",
        cli=("workspace", "service", "list"),
        profiles=FULL,
        read_only=True,
        render=_render_list,
    )
    def list_services(self, workspace_id: WorkspaceId) -> ServiceList:
        """List the workspace's services with their current state."""
        from ..workspaces import services

        return cast("ServiceList", services.service_list(self._ws(workspace_id)))

    @operation(
        mcp="service_status",
        cli=("workspace", "service", "status"),
        profiles=FULL,
        read_only=True,
        render=_render,
    )
    def status_service(self, workspace_id: WorkspaceId, name: ServiceName) -> ServiceInfo:
        """One service's state, exit code, readiness and ports."""
        from ..workspaces import services

        return cast("ServiceInfo", services.service_status(self._ws(workspace_id), name))

    @operation(
        mcp="service_logs",
        cli=("workspace", "service", "logs"),
        profiles=FULL,
        read_only=True,
        render=_render_logs,
    )
    def logs_service(
        self,
        workspace_id: WorkspaceId,
        name: ServiceName,
        tail_lines: Annotated[
            int, Param("Last lines of stdout and of stderr.", ge=1, le=1_000_000)
        ] = 200,
        all: Annotated[bool, Param("Everything (up to 1 MiB per stream).")] = False,
        max_result_bytes: MaxResultBytes = None,
    ) -> ServiceLogs:
        """A service's stdout and stderr (redacted); past max_result_bytes each stream is
        cut in the middle, the cut marked."""
        from ..workspaces import services

        ws = self._ws(workspace_id)
        result = services.service_logs(ws, name, tail_lines, all, max_result_bytes)
        return cast("ServiceLogs", result)

    @operation(
        mcp="service_stop",
        cli=("workspace", "service", "stop"),
        profiles=FULL,
        destructive=True,
        render=_render,
    )
    def stop_service(self, workspace_id: WorkspaceId, name: ServiceName) -> ServiceInfo:
        """Stop a service: TERM to its process group, KILL after 5 s."""
        from ..workspaces import services

        return cast("ServiceInfo", services.service_stop(self._ws(workspace_id), name))
