"""Parameter declarations shared by several operations."""

from __future__ import annotations

from typing import Annotated

from ..validation import (
    DISK_RANGE,
    FILE_ENCODINGS,
    ID_PATTERN,
    MAX_COMMAND_BYTES,
    MAX_TIMEOUT_SECONDS,
    MEM_RANGE,
    TTL_RANGE,
    VCPU_RANGE,
)
from .registry import Param

EnvironmentName = Annotated[
    str,
    Param(
        "Environment name from the catalog, e.g. debian:12.",
        cli="positional",
        metavar="ENVIRONMENT",
    ),
]
VcpuCount = Annotated[
    int,
    Param(f"Virtual CPUs ({VCPU_RANGE[0]}-{VCPU_RANGE[1]}).", ge=VCPU_RANGE[0], le=VCPU_RANGE[1]),
]
MemMib = Annotated[
    int, Param(f"Memory in MiB ({MEM_RANGE[0]}-{MEM_RANGE[1]}).", ge=MEM_RANGE[0], le=MEM_RANGE[1])
]
DiskMib = Annotated[
    int,
    Param(
        f"Size of /workspace in MiB ({DISK_RANGE[0]}-{DISK_RANGE[1]}); writing past it "
        "fails with ENOSPC in the guest (host compat: no limit).",
        ge=DISK_RANGE[0],
        le=DISK_RANGE[1],
    ),
]
TtlSeconds = Annotated[
    int,
    Param(
        f"Lifetime in seconds ({TTL_RANGE[0]}-{TTL_RANGE[1]}); the sandbox is removed "
        "when it ends.",
        ge=TTL_RANGE[0],
        le=TTL_RANGE[1],
    ),
]
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
MaxBytes = Annotated[int, Param("Read at most this many bytes (1-1048576).", ge=1, le=1024 * 1024)]
