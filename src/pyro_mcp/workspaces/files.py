"""Files of a started workspace (PRODUCT_SPEC §2.6-2.10): sync push, list, read, write,
patch, export and diff, through its supervisor."""

from __future__ import annotations

from typing import Any

from .. import hostpaths, validation
from ..engines.agent_client import AgentCallError, AgentInvalid
from ..errors import ValidationError
from ..hostpaths import NewEntry
from .archives import extract_export, seed_archive
from .bounds import next_offset, take_page
from .content import file_content
from .diff import diff_trees, page_diff
from .handle import Handle, operation
from .layout import archive_limit, disk_full
from .patch import parse_patch, plan_patch, summarize_patch
from .paths import normalize_workspace_path
from .streams import STREAM_TIMEOUT, Download, download

MAX_READ_BYTES = 1024 * 1024
MAX_WRITE_BYTES = 1024 * 1024


@operation
def sync_push(ws: Handle, source_path: str, dest: str) -> dict[str, Any]:
    record = ws.started("workspace_sync_push")
    destination = normalize_workspace_path(dest)
    # Spooled to a private file beside the workspace and streamed in: any size that fits.
    limit = archive_limit(record["disk_mib"])
    with seed_archive(
        source_path, label="source_path", limit=limit, spool_dir=ws.layout.root
    ) as archive:
        try:
            result, _ = ws.call(
                "tar_in", {"dest": destination}, data=archive.file, timeout=STREAM_TIMEOUT
            )
        except AgentCallError as exc:
            raise disk_full(exc, record["disk_mib"]) from None
    ws.touch()
    return {
        "workspace_id": ws.id,
        "execution_mode": ws.execution_mode(record),
        "workspace_sync": {
            "mode": archive.mode,
            "source_path": str(archive.seed_path),
            "destination": destination,
            "entry_count": result.get("entry_count", 0),
            "bytes_written": result.get("bytes_written", 0),
        },
    }


@operation
def file_list(
    ws: Handle,
    path: str,
    recursive: bool,
    offset: int = 0,
    limit: int | None = None,
    budget: int | None = None,
) -> dict[str, Any]:
    record = ws.started("workspace_file_list")
    result, _ = ws.call(
        "file_list",
        {"path": normalize_workspace_path(path), "recursive": bool(recursive)},
    )
    entries = [
        {k: e[k] for k in ("path", "artifact_type", "size_bytes", "link_target")}
        for e in result["entries"]
    ]
    page = take_page(entries[offset:], limit, budget and budget - 1024)
    return {
        "workspace_id": ws.id,
        "path": result["path"],
        "recursive": bool(recursive),
        "entries": page,
        "total": len(entries),
        "offset": offset,
        "next_offset": next_offset(offset, len(page), len(entries)),
        "truncated": result.get("truncated", False),
        **({"special_files": result["special_files"]} if "special_files" in result else {}),
        "execution_mode": ws.execution_mode(record),
    }


@operation
def file_read(ws: Handle, path: str, max_bytes: int, encoding: str = "utf-8") -> dict[str, Any]:
    limit = max_bytes
    how = validation.file_encoding(encoding)
    record = ws.started("workspace_file_read")
    result, content = ws.call(
        "file_read", {"path": normalize_workspace_path(path), "max_bytes": limit}
    )
    return {
        "workspace_id": ws.id,
        "path": result["path"],
        "size_bytes": result["size_bytes"],
        "max_bytes": limit,
        "truncated": result["truncated"],
        "execution_mode": ws.execution_mode(record),
        **file_content(content, result["truncated"], how, ws.redact),
    }


@operation
def file_write(ws: Handle, path: str, text: str) -> dict[str, Any]:
    data = validation.text("text", text, allow_nul=True).encode("utf-8")
    if len(data) > MAX_WRITE_BYTES:
        raise ValidationError(f"text is larger than {MAX_WRITE_BYTES} bytes (1 MiB)")
    record = ws.started("workspace_file_write")
    result, _ = ws.call("file_write", {"path": normalize_workspace_path(path)}, data=data)
    ws.touch()
    return {
        "workspace_id": ws.id,
        "path": result["path"],
        "size_bytes": result["size_bytes"],
        "bytes_written": result["bytes_written"],
        "execution_mode": ws.execution_mode(record),
    }


@operation
def patch_apply(ws: Handle, patch: str) -> dict[str, Any]:
    patches = parse_patch(patch)
    record = ws.started("workspace_patch_apply")

    def read(path: str) -> str | None:
        try:
            result, content = ws.call("file_read", {"path": path, "max_bytes": MAX_READ_BYTES})
        except AgentInvalid as exc:
            if "does not exist" in str(exc):
                return None
            raise ValidationError(f"cannot patch {path}: {exc}") from exc
        if result["truncated"]:
            raise ValidationError(f"cannot patch {path}: larger than 1 MiB")
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(f"cannot patch {path}: not UTF-8 text") from None

    plan = plan_patch(patches, read)  # every file computed before anything is written
    for path, text, _status in plan:
        if text is not None:
            ws.call("file_write", {"path": path}, data=text.encode())
    for path, text, _status in plan:
        if text is None:
            ws.call("file_delete", {"path": path})
    ws.touch()
    return {
        "workspace_id": ws.id,
        **summarize_patch(plan),
        "patch": patch,
        "execution_mode": ws.execution_mode(record),
    }


@operation
def export(ws: Handle, path: str, output_path: str) -> dict[str, Any]:
    record = ws.started("workspace_export")
    target = hostpaths.resolve(output_path, "output_path")
    # Refused before the guest does any work (undoing any parent the check made).
    NewEntry(target, "output_path").close(failed=True)

    def extract(stream: Download) -> dict[str, Any]:
        return extract_export(stream, target, artifact_type=lambda: stream.reply()["artifact_type"])

    info, result = download(ws, normalize_workspace_path(path), extract)
    return {
        "workspace_id": ws.id,
        "workspace_path": info["workspace_path"],
        "output_path": target.shown,
        "artifact_type": result["artifact_type"],
        "entry_count": result["entry_count"],
        "bytes_written": result["bytes_written"],
        "execution_mode": ws.execution_mode(record),
    }


@operation
def diff(
    ws: Handle, offset: int = 0, limit: int | None = None, budget: int | None = None
) -> dict[str, Any]:
    ws.started("workspace_diff")
    with ws.layout.baseline.open("rb") as baseline:  # both read as streams: any size
        _info, result = download(ws, "/workspace", lambda current: diff_trees(baseline, current))
    return {"workspace_id": ws.id, **page_diff(result, offset, limit, budget)}
