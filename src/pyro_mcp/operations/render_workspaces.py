"""Human renderings of workspace results (the CLI's non-JSON output)."""

from __future__ import annotations

import time
from typing import Any

from .registry import HumanOutput
from .render import details, kv_line


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "-"


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 1048576:.1f} MiB"


def _clocks(data: dict[str, Any]) -> str:
    """The two clocks, counted from now, and the usage, in one line each."""
    now = time.time()
    line = f"lifetime: expires in {max(0, int(data['expires_at'] - now))}s"
    if data.get("idle_stop_at") is not None:
        line += f"; idle stop in {max(0, int(data['idle_stop_at'] - now))}s"
    elif data.get("idle_stop_seconds"):
        line += f"; idle stop after {data['idle_stop_seconds']}s without activity"
    if "disk_used_bytes" not in data:
        return line + "\n"
    cpu = data["cpu_time_seconds"]
    return (
        f"{line}\nusage: disk {_mib(data['disk_used_bytes'])} of "
        f"{_mib(data['disk_limit_bytes'])}, memory {_mib(data['memory_used_bytes'])}, "
        f"cpu {'-' if cpu is None else f'{cpu:.2f} s'}\n"
    )


def render_workspace(data: dict[str, Any]) -> HumanOutput:
    skip = ("metadata", "workspace_reset")
    text = details(data, skip=skip) + _clocks(data)
    if "workspace_reset" in data:
        text += details({"workspace_reset": data["workspace_reset"]})
    return HumanOutput(stdout=text)


def render_list(data: dict[str, Any]) -> HumanOutput:
    if not data["workspaces"]:
        return HumanOutput(stdout="No workspaces.\n")
    lines = []
    for ws in data["workspaces"]:
        lines.append(
            f"[workspace] workspace_id={ws['workspace_id']} name={ws['name']!r} "
            f"state={ws['state']} environment={ws['environment']} labels={_labels(ws['labels'])} "
            f"last_activity_at={ws['last_activity_at']:.3f} expires_at={ws['expires_at']:.3f} "
            f"commands={ws['command_count']} "
            f"services={ws['running_service_count']}/{ws['service_count']}"
        )
    more = data.get("next_offset")
    hint = f"[page] {data['total'] - more} more: --offset {more}\n" if more is not None else ""
    return HumanOutput(stdout="\n".join(lines) + "\n", stderr=hint)


def render_logs(data: dict[str, Any]) -> HumanOutput:
    if "page" in data:  # one page of one stream, exactly as the command printed it
        return HumanOutput(stdout=data["entries"][0][data["page"]["stream"]])
    if not data["entries"]:
        return HumanOutput(stdout="No commands.\n")
    out = []
    for entry in data["entries"]:
        marker = ["cancelled"] if entry.get("cancelled") else []  # shown when it was
        keys = ["sequence", "exit_code", *marker, "duration_ms", "cwd", "command"]
        out.append(kv_line("workspace-log", entry, keys))
        for stream in ("stdout", "stderr"):
            if entry[stream]:
                out.append(f"--- {stream}\n{entry[stream].rstrip()}")
    return HumanOutput(stdout="\n".join(out) + "\n")


def render_delete(data: dict[str, Any]) -> HumanOutput:
    return HumanOutput(stdout=f"Deleted workspace {data['workspace_id']}.\n")


def render_exec(data: dict[str, Any]) -> HumanOutput:
    footer = kv_line(
        "workspace-exec",
        data,
        ["workspace_id", "sequence", "cwd", "execution_mode", "exit_code", "duration_ms"],
    )
    return HumanOutput(
        stdout=data["stdout"],
        stderr=data["stderr"] + footer + "\n",
        exit_code=int(data["exit_code"]),
    )


def render_sync(data: dict[str, Any]) -> HumanOutput:
    sync = data["workspace_sync"]
    return HumanOutput(
        stdout=kv_line(
            "workspace-sync",
            {"workspace_id": data["workspace_id"], **sync},
            ["workspace_id", "mode", "source_path", "destination", "entry_count", "bytes_written"],
        )
        + "\n"
    )


def render_file_list(data: dict[str, Any]) -> HumanOutput:
    lines = []
    for entry in data["entries"]:
        suffix = "/" if entry["artifact_type"] == "directory" else ""
        link = f" -> {entry['link_target']}" if entry["link_target"] else ""
        size = f"{entry['size_bytes']:>10}" if entry["artifact_type"] == "file" else " " * 10
        lines.append(f"{size}  {entry['path']}{suffix}{link}")
    return HumanOutput(stdout="\n".join(lines) + ("\n" if lines else ""))


def render_file_read(data: dict[str, Any]) -> HumanOutput:
    # Content alone on stdout; the summary on stderr so the two never run together.
    return HumanOutput(
        stdout=data["content"],
        stderr=kv_line(
            "workspace-file-read",
            data,
            ["workspace_id", "path", "size_bytes", "truncated"]
            + [key for key in ("binary",) if data.get(key)]
            + [key for key in ("encoding",) if data.get(key) not in (None, "utf-8")],
        )
        + "\n",
    )


def render_file_write(data: dict[str, Any]) -> HumanOutput:
    return HumanOutput(
        stdout=kv_line("workspace-file-write", data, ["workspace_id", "path", "bytes_written"])
        + "\n"
    )


def render_patch(data: dict[str, Any]) -> HumanOutput:
    summary = data["summary"]
    line = kv_line(
        "workspace-patch",
        {"workspace_id": data["workspace_id"], **summary},
        ["workspace_id", "total", "added", "modified", "deleted"],
    )
    entries = "".join(f"  {e['status']:<9} {e['path']}\n" for e in data["entries"])
    return HumanOutput(stdout=line + "\n" + entries)


def render_export(data: dict[str, Any]) -> HumanOutput:
    return HumanOutput(
        stdout=kv_line(
            "workspace-export",
            data,
            [
                "workspace_id",
                "workspace_path",
                "output_path",
                "artifact_type",
                "entry_count",
                "bytes_written",
            ],
        )
        + "\n"
    )


def render_diff(data: dict[str, Any]) -> HumanOutput:
    if not data["changed"]:
        return HumanOutput(stdout="No workspace changes.\n")
    summary = data["summary"]
    line = kv_line("workspace-diff", summary, list(summary))
    listing = "".join(f"  {e['status']:<12} {e['path']}\n" for e in data["entries"])
    return HumanOutput(stdout=line + "\n" + listing + data["patch"])
