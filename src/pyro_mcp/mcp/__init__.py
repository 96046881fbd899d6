"""The MCP surface, derived from the operation declarations."""
