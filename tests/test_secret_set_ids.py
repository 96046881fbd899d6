"""A secret set for a workspace that does not exist (or an id that is a path) says so in
one line and makes nothing on the host (its lock file used to be made first). No sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyro_mcp import Pyro


@pytest.mark.parametrize("workspace_id", ["0123456789ab", "../..", "/etc", "x/../../.."])
def test_a_secret_set_for_no_workspace_makes_nothing(tmp_path: Path, workspace_id: str) -> None:
    home = tmp_path / "home"
    pyro = Pyro(base_dir=home)
    with pytest.raises(ValueError) as info:
        pyro.set_workspace_secret(workspace_id, "TOKEN", value="v")
    assert str(info.value) == f"workspace {workspace_id!r} does not exist"
    made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("secrets.lock"))
    assert made == []
    assert not Path("/etc/secrets.lock").exists()
