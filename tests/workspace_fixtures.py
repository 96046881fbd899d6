"""Fixtures and helpers for the persistent-workspace tests (stories, hostile input, lifecycle).

A test module takes the fixtures with ``from workspace_fixtures import *`` (``__all__`` names
just the fixtures; helpers are imported by name). Each module gets its own state dir
(``ws_home``, also exported as ``PYRO_HOME`` to the CLI and MCP processes it starts), while
the environment cache stays the real one. Every workspace made through ``new_workspace`` is
deleted after its test, and when the module ends nothing may be left: no record, no
supervisor, no runsc or qemu process mentioning the module's state dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from pyro_mcp import Pyro
from support import (
    ENVIRONMENT,
    CliResult,
    processes_mentioning,
    pyro_argv,
    short_tmp_dir,
    wait_until_no_process,
)

__all__ = ["host_dir", "new_workspace", "pyro_for", "qemu_pyro", "ws_home", "ws_pyro"]

CORE_TOOLS = (  # PRODUCT_SPEC §3, written out here so a drift in the code is caught
    "vm_run",
    "workspace_create",
    "workspace_list",
    "workspace_update",
    "workspace_status",
    "workspace_sync_push",
    "workspace_exec",
    "workspace_logs",
    "workspace_file_list",
    "workspace_file_read",
    "workspace_file_write",
    "workspace_patch_apply",
    "workspace_diff",
    "workspace_export",
    "workspace_reset",
    "workspace_delete",
    "workspace_fork",  # 3.7.0 (issue 13)
)


# -- the module's state dir --------------------------------------------------------------------


def delete_all_workspaces(home: Path) -> None:
    """Delete every workspace recorded in ``home`` (whatever state it is in)."""
    if not (home / "state.db").exists():
        return
    with Pyro(base_dir=home) as pyro:
        for record in pyro.manager.workspaces.store.all():
            try:
                pyro.delete_workspace(record["workspace_id"])
            except (ValueError, RuntimeError):
                pass


def clean_up(home: Path) -> None:
    """A test's state dir after it: every workspace deleted, nothing of them left running
    (checked), then the directory removed whatever the check found."""
    delete_all_workspaces(home)
    try:
        assert_home_is_clean(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def assert_home_is_clean(home: Path, timeout: float = 15.0) -> None:
    """No supervisor, runsc or qemu process for ``home`` and no workspace record or dir."""
    left = wait_until_no_process(str(home), timeout=timeout)
    assert left == [], f"processes left behind for {home}:\n" + "\n".join(left)
    workspaces = home / "workspaces"
    assert not workspaces.exists() or list(workspaces.iterdir()) == []
    if (home / "state.db").exists():
        with Pyro(base_dir=home) as pyro:
            assert pyro.manager.workspaces.store.all() == []


@pytest.fixture(scope="module")
def ws_home() -> Iterator[Path]:
    """This module's PYRO_HOME (gVisor by default for the processes it starts)."""
    home = short_tmp_dir("pyro-ws-")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYRO_HOME", str(home))
        mp.setenv("PYRO_ENGINE", "gvisor")
        yield home
    clean_up(home)


@pytest.fixture(scope="module")
def ws_pyro(ws_home: Path) -> Iterator[Pyro]:
    """An SDK instance on the module's state dir, on gVisor."""
    with Pyro(backend_name="gvisor", base_dir=ws_home) as pyro:
        yield pyro


@pytest.fixture(scope="module")
def qemu_pyro(ws_home: Path) -> Iterator[Pyro]:
    """An SDK instance on the module's state dir, on QEMU."""
    with Pyro(backend_name="qemu", base_dir=ws_home) as pyro:
        yield pyro


@pytest.fixture
def pyro_for(ws_pyro: Pyro, qemu_pyro: Pyro) -> Callable[[str], Pyro]:
    """``pyro_for(engine)``: the module's SDK instance for "gvisor" or "qemu"."""
    return lambda engine: qemu_pyro if engine == "qemu" else ws_pyro


@pytest.fixture
def new_workspace(ws_pyro: Pyro) -> Iterator[Callable[..., dict[str, Any]]]:
    """``new_workspace(pyro=None, **create_kwargs)``: create a workspace, deleted after the test."""
    made: list[tuple[Pyro, str]] = []

    def create(pyro: Pyro | None = None, **kwargs: Any) -> dict[str, Any]:
        pyro = pyro or ws_pyro
        kwargs.setdefault("environment", ENVIRONMENT)
        workspace = pyro.create_workspace(**kwargs)
        made.append((pyro, workspace["workspace_id"]))
        return workspace

    yield create
    for pyro, workspace_id in made:
        forget(pyro, workspace_id)


def forget(pyro: Pyro, workspace_id: str) -> None:
    """Delete a workspace if it still exists."""
    try:
        pyro.delete_workspace(workspace_id)
    except ValueError:
        pass  # already gone (deleted by the test, or expired)


# -- host files --------------------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Create ``files`` (relative path → text) under ``root``; return ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A fresh host directory under /tmp for seeds, patches and exports."""
    path = short_tmp_dir("pyro-wsh-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- the CLI -----------------------------------------------------------------------------------


def run_cli(*args: str, home: Path, timeout: float = 120, engine: str = "gvisor") -> CliResult:
    """Run ``pyro ARGS`` with PYRO_HOME=home and PYRO_ENGINE=engine."""
    env = {**os.environ, "PYRO_HOME": str(home), "PYRO_ENGINE": engine}
    started = time.monotonic()
    proc = subprocess.run(
        [*pyro_argv(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def cli_json(*args: str, home: Path, expect_rc: int | None = 0, **kwargs: Any) -> dict[str, Any]:
    """Run a ``--json`` command and parse stdout; ``expect_rc=None`` accepts any exit code."""
    result = run_cli(*args, "--json", home=home, **kwargs)
    assert "Traceback" not in result.stderr, result.stderr
    if expect_rc is not None:
        assert result.returncode == expect_rc, (result.returncode, result.stdout, result.stderr)
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def cli_error(*args: str, home: Path, **kwargs: Any) -> str:
    """Run a ``--json`` command that must fail: exit 1 and ``{"ok": false, "error": …}``."""
    data = cli_json(*args, home=home, expect_rc=1, **kwargs)
    assert data["ok"] is False, data
    return str(data["error"])


# -- MCP over stdio, driven from synchronous test code -----------------------------------------


class McpClient:
    """The official MCP client on ``pyro mcp serve`` over stdio, usable from plain threads.

    A private thread runs the event loop that owns the session; ``call`` submits a request to
    it and waits, so several threads may call at once (requests then overlap on the wire).
    """

    def __init__(
        self,
        home: Path,
        profile: str = "workspace-core",
        engine: str = "gvisor",
        *,
        roots: Sequence[Path] = (),
        args: Sequence[str] = (),
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        """``roots``: the operator's ``--host-root`` directories; ``args``: more serve flags."""
        argv = pyro_argv()
        flags = [arg for root in roots for arg in ("--host-root", str(root))]
        self.params = StdioServerParameters(
            command=argv[0],
            args=[*argv[1:], "mcp", "serve", "--profile", profile, *flags, *args],
            env={**os.environ, "PYRO_HOME": str(home), "PYRO_ENGINE": engine, **(env or {})},
            cwd=cwd,
        )
        self.instructions: str | None = None
        self.log_path = home / f"mcp-server-{os.getpid()}-{id(self)}.log"
        self.loop = asyncio.new_event_loop()
        self.session: ClientSession | None = None
        self.ready: Future[None] = Future()
        self.done: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> McpClient:
        self.thread.start()
        self.ready.result(timeout=60)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.done is not None
        self.loop.call_soon_threadsafe(self.done.set)
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the MCP session did not close"
        log = self.log_path.read_text(errors="replace")
        self.log_path.unlink(missing_ok=True)
        assert "Traceback" not in log, log

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self.done = asyncio.Event()
        with self.log_path.open("w") as errlog:
            async with (
                stdio_client(self.params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                self.instructions = (await session.initialize()).instructions
                self.session = session
                self.ready.set_result(None)
                await self.done.wait()

    def _submit(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def tools(self) -> dict[str, Any]:
        """The server's tools by name (``mcp.types.Tool``), in the order it lists them."""
        assert self.session is not None
        return {tool.name: tool for tool in self._submit(self.session.list_tools(), 60).tools}

    def call(self, tool: str, timeout: float = 120, **arguments: Any) -> Any:
        assert self.session is not None
        return self._submit(self.session.call_tool(tool, arguments), timeout)

    def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool that must succeed; return its structured result."""
        result = self.call(tool, **arguments)
        assert result.isError is False, (tool, result.content)
        assert isinstance(result.structuredContent, dict)
        return result.structuredContent

    def error(self, tool: str, **arguments: Any) -> str:
        """Call a tool that must fail; return the error text."""
        result = self.call(tool, **arguments)
        assert result.isError is True, (tool, result.structuredContent)
        return str(result.content[0].text)


# -- host processes of one workspace -----------------------------------------------------------


def pids_mentioning(*needles: str) -> list[int]:
    """PIDs of live processes whose command line contains every needle."""
    found = []
    for line in processes_mentioning(needles[0]):
        if all(needle in line for needle in needles[1:]):
            found.append(int(line.split()[0]))
    return found


def supervisor_pids(home: Path, workspace_id: str) -> list[int]:
    """By command line, or (one started ahead: its command line names no workspace) by the
    identity its starter recorded: owners.supervisors."""
    from pyro_mcp.workspaces import owners

    return owners.supervisors(home, workspace_id)


def engine_pids(home: Path, workspace_id: str) -> list[int]:
    """The engine's own process: ``runsc … run --bundle …`` or ``qemu-system-x86_64``."""
    workdir = str(home / "workspaces" / workspace_id / "runtime")
    return [
        int(line.split()[0])
        for line in processes_mentioning(workdir)
        if " run --bundle " in line or "qemu-system" in line
    ]


def workspace_processes(home: Path, workspace_id: str) -> list[str]:
    """Every live process of one workspace (supervisor, engine and its helpers)."""
    return [
        *processes_mentioning(f"--workspace {workspace_id}"),
        *processes_mentioning(str(home / "workspaces" / workspace_id)),
    ]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` every 50 ms until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def capped_home(prefix: str, cap: int) -> Iterator[Pyro]:
    """A gVisor SDK on a state dir of its own whose cap is ``cap`` running workspaces (other
    tests' workspaces never count), checked clean and removed afterwards."""
    home = short_tmp_dir(prefix)
    with Pyro(backend_name="gvisor", base_dir=home, max_active_vms=cap) as pyro:
        yield pyro
    clean_up(home)
