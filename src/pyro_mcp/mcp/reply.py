"""The answer to one tools/call, built whole by us rather than by the MCP SDK.

- The text block (for clients that read only text) is the result as compact JSON, not a
  second pretty-printed copy of ``structuredContent``.
- The result is checked against the tool's declared ``outputSchema`` with a validator
  compiled to Python code once per tool (fastjsonschema: ~10 us a call). Left to the SDK,
  every call ran ``jsonschema.validate``, which checks the schema itself against its
  metaschema first (1-2 ms a call); a compiled ``jsonschema`` validator still took ~0.2 ms.
- Over stdio a plain call's answer is written by the worker thread that built it, not
  after a wake-up of the event loop (direct.py).
"""

from __future__ import annotations

import json
from typing import Any

import fastjsonschema
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
        self.validator: Any = None  # a compiled check (the package has no types)
        self.compiled = False

    def __call__(self, result: dict[str, Any]) -> None:
        if not self.compiled:
            tool = self.server._tool_manager.get_tool(self.name)
            schema = tool.output_schema if tool is not None else None
            self.validator = fastjsonschema.compile(schema) if schema else None
            self.compiled = True
        if self.validator is not None:
            try:
                self.validator(result)
            except fastjsonschema.JsonSchemaValueException as error:
                raise OutputMismatch(f"Output validation error: {error.message}") from None


def tool_result(result: dict[str, Any], check: OutputCheck | None = None) -> CallToolResult:
    if check is not None:
        check(result)
    text = json.dumps(result, ensure_ascii=False, separators=(",", ":"), default=str)
    return CallToolResult(content=[TextContent(type="text", text=text)], structuredContent=result)
