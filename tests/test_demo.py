"""`pyro demo` and `pyro demo ollama` on real sandboxes. The model server is a stand-in on
localhost that speaks the OpenAI chat-completions API and answers with a vm_run call."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.mcp.server import create_server

pytestmark = pytest.mark.guest
LOCAL = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}  # never through a proxy


class FakeModel(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []
    reply: dict[str, Any] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append({"path": self.path, "body": json.loads(body)})
        payload = json.dumps(type(self).reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def model_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), FakeModel)
    FakeModel.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _tool_call(arguments: dict[str, Any]) -> dict[str, Any]:
    call = {"type": "function", "function": {"name": "vm_run", "arguments": json.dumps(arguments)}}
    return {"choices": [{"message": {"role": "assistant", "tool_calls": [call]}}]}


def test_demo_runs_git_in_a_sandbox(run_pyro: Any, installed_env: Any) -> None:
    result = run_pyro("demo")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["stdout"].startswith("git version 2.")
    assert (payload["environment"], payload["exit_code"]) == ("debian:12", 0)


def test_demo_ollama_runs_what_the_model_asked_for(
    run_pyro: Any, model_server: str, installed_env: Any
) -> None:
    FakeModel.reply = _tool_call(
        {"environment": "debian:12", "command": "echo from-model; cat /etc/debian_version"}
    )
    result = run_pyro(
        "demo", "ollama", "--base-url", model_server, "--model", "m1", "-v", env=LOCAL
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "from-model" and lines[1].startswith("12.")
    assert "fallback_used=false" in result.stderr
    [request] = FakeModel.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "m1"
    [tool] = request["body"]["tools"]
    [served] = asyncio.run(create_server(Pyro(), profile="vm-run").list_tools())
    assert tool["function"] == {  # the MCP server's own vm_run, not a copy
        "name": served.name,
        "description": served.description,
        "parameters": served.inputSchema,
    }


def test_demo_ollama_refuses_bad_arguments_from_the_model(
    run_pyro: Any, model_server: str, installed_env: Any
) -> None:
    FakeModel.reply = _tool_call({"command": "true", "vcpu_count": 99, "bogus": 1})
    result = run_pyro("demo", "ollama", "--base-url", model_server, env=LOCAL)
    assert result.returncode != 0
    assert "[error] vcpu_count must be between 1 and 8" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("base_url", "why"),
    [
        ("http://127.0.0.1:1/v1", "model server not reachable"),
        ("ftp://example.com/v1", "--base-url must be an http(s) URL"),
    ],
)
def test_demo_ollama_without_a_model_falls_back_to_git(
    run_pyro: Any, base_url: str, why: str, installed_env: Any
) -> None:
    result = run_pyro("demo", "ollama", "--base-url", base_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("git version 2.")
    assert why in result.stderr and "fallback_used=true" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_ollama_without_a_vm_run_call_falls_back(
    run_pyro: Any, model_server: str, installed_env: Any
) -> None:
    FakeModel.reply = {"choices": [{"message": {"role": "assistant", "content": "no tools"}}]}
    result = run_pyro("demo", "ollama", "--base-url", model_server, env=LOCAL)
    assert result.returncode == 0, result.stderr
    assert "the model did not call vm_run" in result.stderr
    assert "fallback_used=true" in result.stderr
