"""The guest path rule for live ``/workspace`` operations (PRODUCT_SPEC §2.0), host side.

One rule on both sides of the host boundary: this is the guest agent's own
``pyro_guest.paths.normalize`` (standard-library code that also runs in the sandbox), with
its refusals raised as the host's ValidationError.
"""

from __future__ import annotations

from ..errors import ValidationError
from ..guest.paths import PathError, normalize


def normalize_workspace_path(path: str, *, allow_root: bool = True) -> str:
    """Return the absolute guest path for ``path`` (e.g. ``/workspace/src/a.py``)."""
    try:
        return normalize(path, allow_root=allow_root)
    except PathError as exc:
        raise ValidationError(str(exc)) from None
