"""Plain helpers and constants shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENGINES = ("gvisor", "qemu")
ENVIRONMENT = "debian:12"
HOST_KERNEL = Path("/proc/version").read_text().strip()


def pyro_argv() -> list[str]:
    """How to start the ``pyro`` console script of this checkout's virtualenv."""
    script = Path(sys.executable).with_name("pyro")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pyro_mcp.cli import main; main()"]


def engine_key_matches(engine: str, key: str) -> bool:
    """``--engine qemu`` runs as qemu-kvm or qemu-tcg; gvisor is just gvisor."""
    return key == engine or key.startswith(f"{engine}-")


def short_tmp_dir(prefix: str) -> Path:
    """A new directory directly under /tmp.

    QEMU's Unix sockets live under the state dir and their paths must stay below 108 bytes,
    so state dirs are kept short (pytest's tmp_path names can get long).
    """
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()


def stop_cli_helpers(home: Path, sig: int = signal.SIGTERM) -> list[int]:
    """Stop the warm CLI helpers serving ``home``; returns their pids."""
    pids = [
        int(line.split()[0])
        for line in processes_mentioning(f"--home {home}")
        if "pyro_mcp.cli.helper" in line
    ]
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return pids


def processes_mentioning(needle: str) -> list[str]:
    """Live (non-zombie) processes whose command line contains ``needle``.

    Every engine process carries its sandbox's state path in its arguments (runsc's --root
    and --bundle, QEMU's socket and log paths), so this finds exactly one test's sandboxes
    even when other pyro sessions run on the same host. Read from /proc: ``ps`` cuts long
    command lines when its output is not a terminal.
    """
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # it ended while we looked
        if needle in args and state != "Z":
            found.append(f"{proc.name} {state} {args.strip()}")
    return found


def wait_until_no_process(needle: str, timeout: float = 5.0) -> list[str]:
    """Poll until no live process mentions ``needle``; return what is left after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = processes_mentioning(needle)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def as_at_a_terminal() -> None:
    """``preexec_fn`` for a CLI a test interrupts: Ctrl-C and hang-up act as they do for a
    foreground command, even when the test run itself was started in the background (a
    shell starts background jobs with SIGINT ignored, and children inherit that)."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def one_line(message: str, *fragments: str) -> str:
    """``message`` is one line, no traceback, and holds every fragment; returns it."""
    assert "\n" not in message.strip(), message
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# A raw MCP initialize request (tests that speak JSON-RPC themselves).
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def workspace_row(workspace_id: str, state: str = "started") -> dict[str, Any]:
    """A workspace record with every required column, for tests of the store alone."""
    now = time.time()
    return {
        "workspace_id": workspace_id,
        "environment": "debian:12",
        "environment_version": "1",
        "vcpu_count": 1,
        "mem_mib": 512,
        "ttl_seconds": 600,
        "created_at": now,
        "last_activity_at": now,
        "expires_at": now + 600,
        "state": state,
        "network_policy": "off",
        "allow_host_compat": False,
        "engine": "gvisor",
    }
