"""The guest's stream redaction (exec output, shells, service logs): pure logic, no sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pyro_mcp.guest import secrets

SECRET = "s3cr3t-Value-9f2c1e"


@pytest.fixture(autouse=True)
def installed(tmp_path: Path) -> Iterator[None]:
    secrets.install({"TOKEN": SECRET, "FILE": SECRET + "-file"}, root=str(tmp_path / "s"))
    yield
    secrets.install({}, root=str(tmp_path / "s"))


def test_a_secret_split_across_chunks_is_still_caught() -> None:
    data = f"before {SECRET} middle {SECRET}-file after\n".encode()
    for size in (1, 2, 3, 7, 64):
        redactor = secrets.StreamRedactor()
        out = b"".join(redactor.feed(data[i : i + size]) for i in range(0, len(data), size))
        out += redactor.flush()
        assert SECRET.encode() not in out, size
        assert out == b"before [REDACTED] middle [REDACTED] after\n", size


def test_output_that_cannot_become_a_secret_is_released_at_once() -> None:
    # A quiet shell prompt after a redacted echo must reach its reader without more output.
    redactor = secrets.StreamRedactor()
    assert redactor.feed(f"shell:{SECRET}\r\npyro$ ".encode()) == b"shell:[REDACTED]\r\npyro$ "
    # Only a tail that could still grow into a secret waits for the next chunk (or the end).
    assert redactor.feed(b"echo s3cr") == b"echo "
    assert redactor.flush() == b"s3cr"
