"""``pyro demo ollama``: a local model (Ollama, OpenAI-compatible API) drives ``vm_run``.

If the model server cannot be reached or does not call the tool, the demo falls back to a
direct ``run_in_vm`` call, and says so in its summary line.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

from ..api import Pyro

PROMPT = "Use the vm_run tool to run `git --version` in the debian:12 environment."


def vm_run_tool(pyro: Pyro) -> dict[str, Any]:
    """The vm_run tool exactly as the MCP server declares it, in the OpenAI tools format."""
    import asyncio

    from ..mcp.server import create_server

    [tool] = asyncio.run(create_server(pyro, profile="vm-run").list_tools())
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.inputSchema,
        },
    }


def _log(message: str) -> None:
    sys.stderr.write(f"[ollama] {message}\n")
    sys.stderr.flush()


def _ask_model(base_url: str, model: str, tool: dict[str, Any]) -> dict[str, Any] | None:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": PROMPT}], "tools": [tool]}
    ).encode()
    if not base_url.startswith(("http://", "https://")):
        _log(f"--base-url must be an http(s) URL, not {base_url!r}")
        return None
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        base_url.rstrip("/") + "/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            reply = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        _log(f"model server not reachable at {base_url}: {exc}")
        return None
    calls = (reply.get("choices") or [{}])[0].get("message", {}).get("tool_calls") or []
    for call in calls:
        function = call.get("function", {})
        if function.get("name") == "vm_run":
            try:
                args = json.loads(function.get("arguments") or "{}")
            except ValueError:
                continue
            if isinstance(args, dict) and isinstance(args.get("command"), str):
                return args
    _log("the model did not call vm_run")
    return None


def run_ollama_demo(pyro: Pyro, base_url: str, model: str, verbose: bool) -> int:
    _log(f"asking {model} at {base_url}")
    tool = vm_run_tool(pyro)
    args = _ask_model(base_url, model, tool)
    fallback = args is None
    if args is None:
        args = {"environment": "debian:12", "command": "git --version"}
    known = tool["function"]["parameters"]["properties"]
    args = {"environment": "debian:12", **{k: v for k, v in args.items() if k in known}}
    if verbose:
        _log(f"vm_run {json.dumps(args)}")
    result = pyro.run_in_vm(**args)  # validated like any vm_run call
    sys.stdout.write(result["stdout"])
    sys.stderr.write(
        f"[summary] exit_code={result['exit_code']} fallback_used={str(fallback).lower()} "
        f"execution_mode={result['execution_mode']}\n"
    )
    return int(result["exit_code"])
