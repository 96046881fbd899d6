"""Parameter declarations shared by several operations."""

from __future__ import annotations

from typing import Annotated

from ..validation import (
    DISK_RANGE,
    FILE_ENCODINGS,
    ID_PATTERN,
    MAX_COMMAND_BYTES,
    MAX_TIMEOUT_SECONDS,
    MAX_TTL_DEFAULT,
    MAX_TTL_SETTING,
    MEM_RANGE,
    TTL_MIN,
    VCPU_RANGE,
)
from ..workspaces.bounds import MCP_RESULT_BYTES
from .registry import Param

EnvironmentName = Annotated[
    str,
    Param(
        "Environment name from the catalog, e.g. debian:12.",
        cli="positional",
        metavar="ENVIRONMENT",
    ),
]


def ranged(what: str, bounds: tuple[int, int], more: str = "") -> Param:
    """An integer within ``bounds`` (validation.py's constants): the range's one home, shown
    in the help text and checked on every surface (operations/checks.py, mcp/schema.py)."""
    low, high = bounds
    return Param(f"{what} ({low}-{high}){more}.", ge=low, le=high)


VcpuCount = Annotated[int, ranged("Virtual CPUs", VCPU_RANGE)]
MemMib = Annotated[int, ranged("Memory in MiB", MEM_RANGE)]
DiskMib = Annotated[
    int,
    ranged(
        "Size of /workspace in MiB",
        DISK_RANGE,
        "; writing past it fails with ENOSPC in the guest (host compat: no limit)",
    ),
]
_CEILING = f"the operator's ceiling {MAX_TTL_SETTING}, default {MAX_TTL_DEFAULT}"
TtlSeconds = Annotated[
    int,
    Param(
        f"Lifetime in seconds (at least {TTL_MIN}, at most {_CEILING}); the sandbox is "
        "removed when it ends.",
        ge=TTL_MIN,
        ceiling=True,
    ),
]
TtlExtension = Annotated[
    int | None,
    Param(
        f"Expire this many seconds from now (1 to {_CEILING}); extends or shortens the lifetime.",
        ge=1,
        ceiling=True,
    ),
]
_IDLE_STOP = Param(
    "Stop (not delete) the workspace after this many seconds without activity (exec, "
    f"writes, shell and service calls…; a call in progress counts); 0: never (at most "
    f"{_CEILING}). start brings it back with /workspace intact.",
    ge=0,
    ceiling=True,
)
IdleStopSeconds = Annotated[int, _IDLE_STOP]
IdleStopChange = Annotated[int | None, _IDLE_STOP]
TimeoutSeconds = Annotated[
    float,
    Param(
        "Kill the command (its whole process group) after this many seconds; exit code 124.",
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
    ),
]
AllowHostCompat = Annotated[
    bool,
    Param(
        "Opt in to running UNISOLATED on the host when no sandbox engine works.",
        mcp_role="operator",  # over MCP: pyro mcp serve --allow-host-compat
    ),
]
VmId = Annotated[
    str, Param("The VM's id (12 hex characters).", cli="positional", pattern=ID_PATTERN)
]
ShellCommand = Annotated[
    str,
    Param(
        "The command; the guest runs it with /bin/sh -lc.",
        cli="remainder",
        metavar="CMD",
        max_length=MAX_COMMAND_BYTES,
    ),
]
FileEncoding = Annotated[
    str,
    Param(
        "utf-8: content as text (bytes that are not UTF-8 show as U+FFFD; binary=true says "
        "so); base64: the exact bytes, base64-encoded.",
        choices=FILE_ENCODINGS,
    ),
]
GuestPath = Annotated[
    str,
    Param(
        "Path inside the workspace (relative paths are under /workspace).",
        cli="positional",
        metavar="PATH",
    ),
]
ListPath = Annotated[
    str, Param("Directory or file under /workspace.", cli="positional", metavar="PATH")
]
Recursive = Annotated[bool, Param("List subdirectories too.")]
NewHostPath = Annotated[
    str,
    Param(
        "Host path to create (it must not exist).",
        cli="--output",
        metavar="HOST_PATH",
        mcp_role="host_path",
    ),
]
_BOUND = (
    "Keep the result within about this many bytes of JSON (1024-16777216): long output or "
    "patch text is cut in the middle with the cut marked, long lists are paged (next_offset)."
)
MaxResultBytes = Annotated[
    int | None,
    Param(
        f"{_BOUND} Null: the whole result (the SDK's and command line's default; MCP "
        f"calls default to {MCP_RESULT_BYTES}, a reply under 16 KiB).",
        ge=1024,
        le=16 * 1024 * 1024,
        mcp_default=MCP_RESULT_BYTES,
        metavar="BYTES",
    ),
]
PageOffset = Annotated[
    int, Param("Start at this entry (0: the first); pass a result's next_offset.", ge=0)
]
PageLimit = Annotated[
    int | None, Param("At most this many entries (null: as many as fit).", ge=1, le=100000)
]
FILE_READ_MCP_BYTES = 4096
FileMaxBytes = Annotated[
    int,
    Param(
        f"Read at most this many bytes (1-1048576; MCP calls default to {FILE_READ_MCP_BYTES}, "
        "a reply under 16 KiB for text).",
        ge=1,
        le=1024 * 1024,
        mcp_default=FILE_READ_MCP_BYTES,
    ),
]
