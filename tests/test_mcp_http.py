"""``pyro mcp serve --transport http``: a real server process, real HTTP requests.

No token: 401. A foreign Origin: 403 (even with the token). The token and the server's own
Origin: the official MCP client lists and calls tools, and every result's text block is
compact JSON of its structuredContent. No sandbox is booted here (workspace_list only).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from pyro_mcp.errors import ValidationError
from pyro_mcp.mcp.http import (
    MAX_BODY_BYTES,
    Guard,
    HttpSettings,
    allowed_hosts,
    allowed_origins,
)
from support import INITIALIZE, pyro_argv

START_SECONDS = 60
SERVE = ("mcp", "serve", "--transport", "http", "--port", "0", "--profile", "workspace-core")


@dataclass
class Served:
    url: str
    token: str
    stderr: list[str]


def _read_lines(proc: subprocess.Popen[str], count: int) -> list[str]:
    """``count`` stderr lines, or fail after START_SECONDS (never hang the suite)."""
    assert proc.stderr is not None
    stream = proc.stderr
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    got: list[str] = []
    deadline = time.monotonic() + START_SECONDS
    while len(got) < count:
        try:
            got.append(lines.get(timeout=max(deadline - time.monotonic(), 0)).rstrip("\n"))
        except queue.Empty:
            pytest.fail(f"server did not start in {START_SECONDS} s (exit {proc.poll()}): {got}")
    return got


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    proc = subprocess.Popen(
        [*pyro_argv(), *SERVE],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYRO_MCP_TOKEN"},
    )
    try:
        lines = _read_lines(proc, 2)
        url = re.search(r"http://127\.0\.0\.1:\d+/mcp", lines[0])
        assert url, lines
        token = lines[1].rsplit(": ", 1)[1]
        yield Served(url.group(0), token, lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(INITIALIZE).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **headers,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {}, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def test_generated_token_is_shown_once_and_long(served: Served) -> None:
    assert "bearer token (shown once" in served.stderr[1]
    assert len(served.token) >= 32


def test_no_token_gets_401(served: Served) -> None:
    status, body, headers = _post(served.url, {})
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in body["error"]["message"]


def test_wrong_token_gets_401(served: Served) -> None:
    status, _body, _headers = _post(served.url, {"Authorization": f"Bearer {served.token}x"})
    assert status == 401


def test_foreign_origin_gets_403_even_with_the_token(served: Served) -> None:
    auth = {"Authorization": f"Bearer {served.token}"}
    for origin in ("http://evil.example", "http://127.0.0.1:1", "null"):
        status, body, _headers = _post(served.url, {**auth, "Origin": origin})
        assert status == 403, origin
        assert "Origin" in body["error"]["message"]


def test_own_origin_with_the_token_is_served(served: Served) -> None:
    own = served.url.removesuffix("/mcp")
    status, _body, _headers = _post(
        served.url, {"Authorization": f"Bearer {served.token}", "Origin": own}
    )
    assert status == 200


async def _client_calls(served: Served) -> tuple[list[str], Any]:
    headers = {"Authorization": f"Bearer {served.token}"}
    async with (
        httpx.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(served.url, http_client=http) as (read, write, _session_id),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        names = [tool.name for tool in (await session.list_tools()).tools]
        return names, await session.call_tool("workspace_list", {})


def test_official_client_over_http_lists_and_calls(served: Served) -> None:
    names, result = asyncio.run(asyncio.wait_for(_client_calls(served), 120))
    assert "workspace_exec" in names and "shell_open" not in names  # workspace-core
    assert result.isError is False
    assert isinstance(result.structuredContent["workspaces"], list)
    [block] = result.content
    assert block.text == json.dumps(result.structuredContent, separators=(",", ":"))
    assert "\n" not in block.text  # not a second, pretty-printed copy


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "8000"], "--port applies to --transport http only"),
        (["--transport", "http", "--bind", "0.0.0.0"], "--bind 0.0.0.0 needs a token you set"),
        (["--transport", "http", "--port", "70000"], "--port 70000: expected 0-65535"),
        (["--transport", "http", "--token-file", "/nonexistent/t"], "cannot read it"),
    ],
)
def test_bad_http_flags_are_one_line_errors(run_pyro: Any, args: list[str], message: str) -> None:
    result = run_pyro("mcp", "serve", *args, env={"PYRO_MCP_TOKEN": ""}, timeout=60)
    assert result.returncode != 0
    [line] = result.stderr_lines
    assert line.startswith("[error] ") and message in line
    assert "Traceback" not in result.stderr


def test_token_sources(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a" * 40 + "\n")
    token_file.chmod(0o644)
    with pytest.raises(ValidationError, match=r"other users may read it \(chmod 600 "):
        HttpSettings.from_args("0.0.0.0", 9000, str(token_file), {})
    token_file.chmod(0o600)
    from_file = HttpSettings.from_args("0.0.0.0", 9000, str(token_file), {})
    assert (from_file.host, from_file.port, from_file.token, from_file.generated) == (
        "0.0.0.0",
        9000,
        "a" * 40,
        False,
    )
    from_env = HttpSettings.from_args(None, None, None, {"PYRO_MCP_TOKEN": "b" * 20})
    assert (from_env.host, from_env.token, from_env.generated) == ("127.0.0.1", "b" * 20, False)
    assert "b" * 20 not in repr(from_env)
    with pytest.raises(ValidationError, match="at least 16"):
        HttpSettings.from_args(None, None, None, {"PYRO_MCP_TOKEN": "short"})


def test_allowed_origins_are_this_servers_own() -> None:
    assert allowed_origins("127.0.0.1", 8765) == {
        "http://127.0.0.1:8765",
        "http://localhost:8765",
        "http://[::1]:8765",
    }
    assert allowed_origins("10.0.0.5", 80) == {"http://10.0.0.5:80"}
    assert allowed_origins("::", 1) == {"http://[::]:1"}


def test_a_port_in_use_is_a_one_line_error(run_pyro: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_pyro("mcp", "serve", "--transport", "http", "--port", str(port), timeout=60)
    assert result.returncode == 1
    assert result.stderr_lines == [
        f"[error] cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def _drive(guard: Guard, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> dict:
    """One request through ``guard`` in-process: what the app read, the status sent."""
    got: dict[str, Any] = {"status": None, "read": 0, "disconnected": False}
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                got["disconnected"] = True
                return
            got["read"] += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            got["status"] = message["status"]

    guard.app = app
    scope = {"type": "http", "headers": [(b"authorization", b"Bearer " + b"t" * 20), *headers]}
    asyncio.run(guard(scope, receive, send))
    return got


def test_a_body_over_the_limit_is_refused_unread() -> None:
    guard = Guard(None, "t" * 20, frozenset())  # type: ignore[arg-type]
    big = str(MAX_BODY_BYTES + 1).encode()
    assert _drive(guard, [(b"content-length", big)], [b"x"]) == {
        "status": 413,
        "read": 0,
        "disconnected": False,
    }
    chunk = b"x" * (1024 * 1024)
    chunked = _drive(guard, [], [chunk] * (MAX_BODY_BYTES // len(chunk) + 2))
    assert chunked["disconnected"] and chunked["read"] <= MAX_BODY_BYTES
    assert _drive(guard, [(b"content-length", b"2")], [b"{}"])["status"] == 200


def test_a_loopback_server_answers_only_to_its_own_host_names() -> None:
    """DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its own Host."""
    hosts = allowed_hosts("127.0.0.1", 8765)
    assert hosts == {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    assert allowed_hosts("192.0.2.7", 8765) is None  # the operator's bind: names unknown
    guard = Guard(None, "t" * 20, frozenset(), hosts)  # type: ignore[arg-type]
    for host in (b"evil.example:8765", b"127.0.0.1.evil.example:8765", b"127.0.0.1:9"):
        assert _drive(guard, [(b"host", host)], [b""])["status"] == 421
    for host in (b"127.0.0.1:8765", b"LOCALHOST:8765", b"[::1]:8765"):
        assert _drive(guard, [(b"host", host)], [b""])["status"] == 200
