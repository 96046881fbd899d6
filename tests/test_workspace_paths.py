"""The host-side /workspace path rule (PRODUCT_SPEC §2.0) against hostile inputs."""

from __future__ import annotations

import pytest

from pyro_mcp.errors import ValidationError
from pyro_mcp.workspaces.paths import normalize_workspace_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("x", "/workspace/x"),
        ("src/a.py", "/workspace/src/a.py"),
        ("./src//a.py/", "/workspace/src/a.py"),
        ("/workspace", "/workspace"),
        ("/workspace/", "/workspace"),
        (".", "/workspace"),
        ("/workspace/src/./a.py", "/workspace/src/a.py"),
        ("//workspace/x", "/workspace/x"),  # Linux resolves a doubled leading slash as one
        ("workspace/x", "/workspace/workspace/x"),  # relative: under /workspace
        ("café/naïve.txt", "/workspace/café/naïve.txt"),
        ("a\\..\\b", "/workspace/a\\..\\b"),  # backslash is an ordinary name character
        ("...", "/workspace/..."),
        ("-rf", "/workspace/-rf"),
    ],
)
def test_accepted_paths_are_normalised(path: str, expected: str) -> None:
    assert normalize_workspace_path(path) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../x", "must stay inside /workspace"),
        ("..", "must stay inside /workspace"),
        ("/etc/passwd", "must stay inside /workspace"),
        ("/", "must stay inside /workspace"),
        ("/workspace/../etc", "must stay inside /workspace"),
        ("/workspace/a/../b", "must stay inside /workspace"),  # any '..' at all
        ("a/./../../b", "must stay inside /workspace"),
        ("/workspacefoo/x", "must stay inside /workspace"),
        ("/tmp/workspace/x", "must stay inside /workspace"),
        ("///etc", "must stay inside /workspace"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x\0y", "NUL"),
        ("a\nb", "control characters"),
        ("a\rb", "control characters"),
        ("a\x1bb", "control characters"),
        ("a\x7fb", "control characters"),
        ("x\ud800", "UTF-8"),
        ("a/" * 2049, "longer than 4096 bytes"),
        ("/workspace/" + "é" * 2100, "longer than 4096 bytes"),
        ("x" * 256, "name longer than 255 bytes"),
    ],
)
def test_hostile_paths_are_rejected(path: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        normalize_workspace_path(path)


def test_root_can_be_refused() -> None:
    for path in ("/workspace", ".", "/workspace/./", "//workspace"):
        with pytest.raises(ValidationError, match="must name an entry inside /workspace"):
            normalize_workspace_path(path, allow_root=False)
    assert normalize_workspace_path("a", allow_root=False) == "/workspace/a"


def test_non_string_rejected() -> None:
    with pytest.raises(ValidationError, match="must be a string"):
        normalize_workspace_path(b"x")  # type: ignore[arg-type]


def test_validation_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="must stay inside /workspace"):
        normalize_workspace_path("../../etc/shadow")
