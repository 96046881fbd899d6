"""The guest path rule for live ``/workspace`` operations (PRODUCT_SPEC §2.0), host side.

One rule on both sides of the host boundary: this is the guest agent's own
``pyro_guest.paths.normalize`` (standard-library code that also runs in the sandbox), with
its refusals raised as the host's ValidationError.
"""

from __future__ import annotations

from typing import Any

from ..errors import ValidationError
from ..guest.paths import PathError, normalize


def normalize_workspace_path(path: str, *, allow_root: bool = True) -> str:
    """Return the absolute guest path for ``path`` (e.g. ``/workspace/src/a.py``)."""
    try:
        return normalize(path, allow_root=allow_root)
    except PathError as exc:
        raise ValidationError(str(exc)) from None


HOST_ROOT_OPS = ("file_list", "file_read", "file_write", "file_delete", "tar_in", "tar_out")


def host_compat_args(root: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """Host-compat (unisolated) mode has no /workspace: re-root paths in its directory."""
    if op in HOST_ROOT_OPS:
        args["root"] = root
        for key in ("path", "dest"):
            if isinstance(args.get(key), str) and args[key].startswith("/workspace"):
                args[key] = root + args[key][len("/workspace") :]
    if op == "exec" and str(args.get("cwd", "")).startswith("/workspace"):
        args["cwd"] = root + str(args["cwd"])[len("/workspace") :]
    return args
