"""JSON schemas and tool annotations from the operation declarations (issues 12c and 14).

- ``output_schema``: a tool's ``outputSchema`` from its SDK method's result shape
  (operations/results.py): every field with its type and description; objects are closed
  (``additionalProperties: false``) unless they are maps (labels).
- ``param_schema``: what a parameter's ``Param`` declares beyond type and range (patterns,
  lengths, item shapes), for the input schema.
- ``annotations``: tool hints that say what the tool does (destructive, open world).
- ``one_line``: a pydantic validation error as the one line the SDK would say.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import pydantic
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.utilities.func_metadata import ArgModelBase
from mcp.types import ToolAnnotations

from ..errors import ValidationError
from ..operations.checks import check_value, has_checks
from ..operations.registry import Operation, ParamInfo
from ..operations.result_fields import FIELDS
from .policy import OperatorPolicy

_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
WARNING_FIELD = "warning"


def _described(schema: dict[str, Any], text: str | None) -> dict[str, Any]:
    return {**schema, "description": text} if text else schema


def type_schema(hint: Any, name: str | None = None) -> dict[str, Any]:
    """The JSON schema of a result type; ``name``: the field it belongs to (for its
    description from the shared table)."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(hint)
        text = next((e for e in extras if isinstance(e, str)), None)
        return _described(type_schema(base), text or FIELDS.get(name or ""))
    if origin is typing.NotRequired:
        return type_schema(typing.get_args(hint)[0], name)
    description = FIELDS.get(name or "")
    if hint is None or hint in _SCALARS:
        return _described({"type": _SCALARS[type(None) if hint is None else hint]}, description)
    if origin in (typing.Union, types.UnionType):
        options = [type_schema(arg) for arg in typing.get_args(hint)]
        return _described({"anyOf": options}, description)
    if origin is list:
        (item,) = typing.get_args(hint)
        return _described({"type": "array", "items": type_schema(item)}, description)
    if origin is dict:
        _key, value = typing.get_args(hint)
        values: Any = True if value is Any else type_schema(value)
        return _described({"type": "object", "additionalProperties": values}, description)
    if hint is Any:
        return _described({}, description)
    if typing.is_typeddict(hint):
        return _described(typeddict_schema(hint), description)
    raise TypeError(f"no JSON schema for result type {hint!r}")


def typeddict_schema(shape: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(shape, include_extras=True)
    required = sorted(shape.__required_keys__)
    return {
        "type": "object",
        "properties": {key: type_schema(hint, key) for key, hint in hints.items()},
        "required": [key for key in hints if key in required],
        "additionalProperties": False,
    }


def result_type(func: Any) -> Any:
    """The declared result of an SDK method (its return annotation, naming a shape of
    operations/results*.py, which the operation modules import for mypy only)."""
    from ..operations import results, results_work

    shapes = {**vars(results), **vars(results_work)}
    return typing.get_type_hints(func, localns=shapes)["return"]


def output_schema(func: Any) -> dict[str, Any]:
    """A tool's outputSchema: the method's result shape (a list becomes {count, items}, as
    the tool answers); every result may carry the operator's host-compat ``warning``."""
    shape = result_type(func)
    if typing.get_origin(shape) is list:
        (item,) = typing.get_args(shape)
        title = f"{item.__name__}List"
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                "count": type_schema(int, "count"),
                "items": type_schema(shape, "items"),
            },
            "required": ["count", "items"],
            "additionalProperties": False,
        }
    else:
        title = shape.__name__
        schema = typeddict_schema(shape)
    schema["properties"].setdefault(WARNING_FIELD, type_schema(str, WARNING_FIELD))
    return {"title": title, **schema}


# -- input schemas, annotations, errors ---------------------------------------------------------


def input_extras(param: ParamInfo) -> dict[str, Any]:
    """What the JSON schema learns from ``Param`` beyond type, range and choices."""
    meta = param.meta
    extras: dict[str, Any] = {}
    if meta.pattern:
        extras["pattern"] = meta.pattern
    if meta.max_length is not None:
        extras["maxLength"] = meta.max_length  # characters: never more than the UTF-8 bytes
    if meta.items is not None:
        extras["items"] = meta.items
    return extras


def merge_input(prop: dict[str, Any], extras: dict[str, Any]) -> None:
    """Put ``extras`` into the string or array branch of a property (also inside anyOf)."""
    for branch in prop.get("anyOf", [prop]):
        if branch.get("type") == "string":
            branch.update({k: v for k, v in extras.items() if k in ("pattern", "maxLength")})
        if branch.get("type") == "array" and "items" in extras:
            branch["items"] = extras["items"]


def tool_annotations(op: Operation, profile: str, policy: OperatorPolicy) -> ToolAnnotations:
    """Hints that say what the tool does. Open world: it reads or writes host paths, or
    runs guest code while this server lets sandboxes have a network."""
    host_paths = any(p.meta.mcp_role == "host_path" for p in op.mcp_params(profile))
    network = op.reaches_network and policy.network.policy != "off"
    return ToolAnnotations(
        readOnlyHint=op.read_only,
        destructiveHint=op.destructive and not op.read_only,
        idempotentHint=op.idempotent,
        openWorldHint=host_paths or network,
    )


def description(op: Operation) -> str:
    """The tool's description for a model: the docstring without reST literal quotes."""
    return op.description.replace("``", "")


def one_line(exc: pydantic.ValidationError) -> str:
    """A pydantic report (several lines and a URL) as one line: the first problem."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "arguments"
    if first["type"] == "missing":
        line = f"{where} is required"
    else:
        shown = repr(first.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        line = f"{where}: {first['msg'][:1].lower()}{first['msg'][1:]} (got {shown})"
    more = len(errors) - 1
    return line + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def checked_arguments(
    base: type[ArgModelBase], op: Operation, profile: str, error: type[Exception]
) -> type[ArgModelBase]:
    """The tool's argument model, checking what each ``Param`` declares with the SDK's
    one-line messages (operations/checks.py) and reporting any other problem in one line;
    ``error``: the exception a tool raises for a refused argument."""
    params = {p.meta.mcp_name or p.name: p for p in op.mcp_params(profile) if has_checks(p)}

    class Checked(base):  # type: ignore[misc,valid-type]
        @pydantic.model_validator(mode="before")
        @classmethod
        def _declared_checks(cls, data: Any) -> Any:
            if isinstance(data, dict):
                for key, param in params.items():
                    if key in data:
                        try:
                            check_value(param, data[key], key)
                        except ValidationError as exc:
                            raise error(str(exc)) from None
            return data

        @classmethod
        def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().model_validate(obj, *args, **kwargs)
            except pydantic.ValidationError as exc:
                raise error(one_line(exc)) from None

    Checked.__name__ = base.__name__
    return Checked


class _Structured(pydantic.RootModel[dict[str, Any]]):
    """Passes a result through unchanged (the server checks it against outputSchema)."""


def finish_tool(server: FastMCP, op: Operation, profile: str, error: type[Exception]) -> None:
    """Give a registered tool its declared output schema, its input schema's patterns,
    lengths and item shapes, and one-line argument errors."""
    tool = server._tool_manager.get_tool(op.mcp_name or op.name)
    assert tool is not None
    from ..api import Pyro

    tool.fn_metadata.output_schema = output_schema(getattr(Pyro, op.name))
    tool.fn_metadata.output_model = _Structured
    tool.fn_metadata.wrap_output = False
    for param in op.mcp_params(profile):
        extras = input_extras(param)
        if extras:
            merge_input(tool.parameters["properties"][param.meta.mcp_name or param.name], extras)
    meta = tool.fn_metadata
    meta.arg_model = checked_arguments(meta.arg_model, op, profile, error)
