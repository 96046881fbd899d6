"""The answer to one tools/call, built whole by us rather than by the MCP SDK.

- The text block (for clients that read only text) is the result as compact JSON, not a
  second pretty-printed copy of ``structuredContent``.
- The result is checked against the tool's declared ``outputSchema`` with a validator
  compiled once per tool. Left to the SDK, every call ran ``jsonschema.validate``, which
  checks the schema itself against its metaschema first (1-2 ms a call).
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from jsonschema.validators import validator_for  # type: ignore[import-untyped]
from mcp.server.fastmcp import FastMCP
from mcp.types import CallToolResult, TextContent

__all__ = ["CallToolResult", "OutputCheck", "OutputMismatch", "tool_result"]


class OutputMismatch(RuntimeError):
    """A result that does not match its tool's outputSchema (a bug of ours, said in one line)."""


class OutputCheck:
    """The output-schema check of one tool, compiled at its first call (the schema is
    final only once the server has registered and finished the tool)."""

    def __init__(self, server: FastMCP, name: str) -> None:
        self.server = server
        self.name = name
        self.validator: Any = None  # a jsonschema validator (the package has no types)
        self.compiled = False

    def __call__(self, result: dict[str, Any]) -> None:
        if not self.compiled:
            tool = self.server._tool_manager.get_tool(self.name)
            schema = tool.output_schema if tool is not None else None
            self.validator = validator_for(schema)(schema) if schema else None
            self.compiled = True
        if self.validator is not None:
            error = best_match(self.validator.iter_errors(result))
            if error is not None:
                raise OutputMismatch(f"Output validation error: {error.message}")


def tool_result(result: dict[str, Any], check: OutputCheck | None = None) -> CallToolResult:
    if check is not None:
        check(result)
    text = json.dumps(result, ensure_ascii=False, separators=(",", ":"), default=str)
    return CallToolResult(content=[TextContent(type="text", text=text)], structuredContent=result)
