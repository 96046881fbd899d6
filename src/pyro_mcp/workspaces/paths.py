"""The guest path rule for live ``/workspace`` operations (PRODUCT_SPEC §2.0), host side.

Relative paths resolve under ``/workspace``; any ``..`` segment is refused (even one that would
stay inside), and absolute paths must lie under ``/workspace``. The result is always the
canonical absolute guest path: no empty, ``.`` or trailing segments.
"""

from __future__ import annotations

from ..errors import ValidationError

WORKSPACE_ROOT = "/workspace"
MAX_PATH_BYTES = 4096  # Linux PATH_MAX
MAX_NAME_BYTES = 255  # Linux NAME_MAX

_OUTSIDE = f"workspace path must stay inside {WORKSPACE_ROOT}"


def _shown(path: str) -> str:
    return repr(path if len(path) <= 80 else path[:77] + "...")


def normalize_workspace_path(path: str, *, allow_root: bool = True) -> str:
    """Return the absolute guest path for ``path`` (e.g. ``/workspace/src/a.py``).

    Raises ValidationError for an empty path, NUL or other control characters, text that is
    not encodable as UTF-8, a path or name longer than Linux allows, any ``..`` segment, an
    absolute path outside /workspace, and ``/workspace`` itself when ``allow_root`` is false.
    A doubled leading slash (``//workspace``) means ``/workspace`` on Linux and is accepted.
    """
    if not isinstance(path, str):
        raise ValidationError("workspace path must be a string")
    if not path.strip():
        raise ValidationError("workspace path must not be empty")
    if "\0" in path:
        raise ValidationError(f"workspace path must not contain NUL bytes: {_shown(path)}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise ValidationError(f"workspace path must not contain control characters: {_shown(path)}")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(f"workspace path is not valid UTF-8: {_shown(path)}") from None
    if size > MAX_PATH_BYTES:
        raise ValidationError(f"workspace path is longer than {MAX_PATH_BYTES} bytes")
    segments = path.split("/")
    if ".." in segments:
        raise ValidationError(f"{_OUTSIDE} ('..' is not allowed): {_shown(path)}")
    parts = [s for s in segments if s not in ("", ".")]
    if path.startswith("/"):
        if parts[:1] != [WORKSPACE_ROOT.lstrip("/")]:
            raise ValidationError(f"{_OUTSIDE}: {_shown(path)}")
        parts = parts[1:]
    for part in parts:
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValidationError(
                f"workspace path has a name longer than {MAX_NAME_BYTES} bytes: {_shown(path)}"
            )
    if not parts and not allow_root:
        raise ValidationError(f"workspace path must name an entry inside {WORKSPACE_ROOT}")
    return "/".join([WORKSPACE_ROOT, *parts])
