"""Issue 11: over MCP a model reaches only what the operator allowed.

Each break is reproduced through the official ``mcp`` client over stdio against ``pyro mcp
serve`` and must be refused with one clear line: isolation switched off by a model, host paths
outside the operator's ``--host-root`` (absolute, relative, ``..``, ``~``, through a symlinked
parent, a symlink pointing out, a seed holding such a symlink), secret values or files passed
by a model. The SDK keeps full host paths but never writes through a symlinked parent.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro, hostpaths
from pyro_mcp.errors import EngineUnavailable, ValidationError
from pyro_mcp.mcp.policy import OperatorPolicy
from pyro_mcp.runtime import Runtime
from support import ENVIRONMENT, one_line, short_tmp_dir
from workspace_fixtures import *  # noqa: F403  (the fixtures)
from workspace_fixtures import McpClient, forget, write_tree

PRIVATE = "PRIVATE KEY canary\n"


@pytest.fixture
def layout() -> Iterator[tuple[Path, Path]]:
    """(root, outside): the operator's root, and a private host dir beside it."""
    base = short_tmp_dir("pyro-hb-")
    root, outside = base / "root", base / "outside"
    write_tree(root / "proj", {"README.md": "hello\n"})
    write_tree(outside, {"id_rsa": PRIVATE})
    yield root, outside
    for path in (root, outside):
        os.chmod(path, 0o755)
    import shutil

    shutil.rmtree(base, ignore_errors=True)


# -- no guest: schemas, operator settings, refusals before any sandbox ---------------------------


def test_no_tool_offers_isolation_off_and_a_model_passing_it_is_refused(ws_home: Path) -> None:
    with McpClient(ws_home, "workspace-full") as client:
        tools = client.tools()
        for tool in tools.values():
            assert "allow_host_compat" not in tool.inputSchema.get("properties", {}), tool.name
            assert "host_compat" not in (tool.description or "")
        error = client.error(
            "vm_run", environment=ENVIRONMENT, command="ls /", allow_host_compat=True
        )
        one_line(error, "unknown argument 'allow_host_compat'", "vm_run takes")
        error = client.error("workspace_create", environment=ENVIRONMENT, allow_host_compat=True)
        one_line(error, "unknown argument 'allow_host_compat'")
        assert client.instructions and "Nothing you run can touch the host" in client.instructions
        assert "allow_host_compat" not in client.instructions


def test_no_engine_error_over_mcp_never_suggests_turning_isolation_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runtime = Runtime(home=tmp_path)

    class NoEngine:
        def select(self, *args: Any, **kwargs: Any) -> Any:
            raise EngineUnavailable("no sandbox engine works here")

    monkeypatch.setattr(runtime, "_selector", NoEngine())
    with (
        hostpaths.confined(hostpaths.HostRoots((str(tmp_path),))),
        pytest.raises(EngineUnavailable) as over_mcp,
    ):
        runtime.choose_engine(None, False)  # type: ignore[arg-type]
    with pytest.raises(EngineUnavailable) as from_cli:
        runtime.choose_engine(None, False)  # type: ignore[arg-type]
    assert "host" not in str(over_mcp.value).replace("this host", "")
    assert "compat" not in str(over_mcp.value)
    assert "--allow-host-compat" in str(from_cli.value)  # a person may still choose it


def test_operator_allow_host_compat_is_said_in_instructions_and_every_result(
    ws_home: Path,
) -> None:
    with McpClient(ws_home, args=["--allow-host-compat"]) as client:
        assert client.instructions and "--allow-host-compat" in client.instructions
        assert "NO isolation" in client.ok("workspace_list")["warning"]


def test_default_roots_never_the_system_home_or_slash(tmp_path: Path) -> None:
    home = os.path.realpath(os.path.expanduser("~"))
    for start in ("/", home, "/tmp", "/etc", "/usr/lib", "/var/log"):
        assert hostpaths.HostRoots.for_server(None, start).roots == (), start
    assert hostpaths.HostRoots.for_server(None, str(tmp_path)).roots == (str(tmp_path),)
    with pytest.raises(ValidationError, match="--host-root"):
        hostpaths.HostRoots.for_server([str(tmp_path / "missing")])


def test_server_started_in_slash_refuses_host_paths_naming_host_root(ws_home: Path) -> None:
    with McpClient(ws_home, cwd=Path("/")) as client:
        assert client.instructions and "--host-root" in client.instructions
        error = client.error("workspace_create", environment=ENVIRONMENT, seed_path="etc")
        one_line(error, "seed_path refused", "--host-root")


def test_seeds_outside_the_roots_are_refused_before_any_sandbox(
    ws_home: Path, layout: tuple[Path, Path]
) -> None:
    root, outside = layout
    (root / "key-link").symlink_to(outside)  # a symlink inside the root that points out
    leaky = write_tree(root / "leaky", {"a.txt": "a\n"})
    (leaky / "keys").symlink_to(outside / "id_rsa")  # a seed directory holding one
    cases = {
        "~/.ssh": "'~' is not expanded",
        str(outside): "is outside the host roots",
        "../outside": "'..' is not allowed",
        "proj/../../outside": "'..' is not allowed",
        "key-link": "a symlink leads outside the host roots",
        "leaky": "symlinks must be relative",
    }
    with McpClient(ws_home, roots=[root]) as client:
        tools = client.tools()
        seed = tools["workspace_create"].inputSchema["properties"]["seed_path"]
        assert str(root) in seed["description"]
        for path, fragment in cases.items():
            error = client.error("workspace_create", environment=ENVIRONMENT, seed_path=path)
            one_line(error, fragment)
            assert PRIVATE not in error and str(outside) + "/" not in error
            # Never the host layout outside the roots: only the root itself may be named.
            assert str(root.parent) not in error.replace(str(root), "") or path == str(outside)
        assert client.ok("workspace_list")["count"] == 0  # nothing was created


def test_a_model_never_handles_secret_values(ws_home: Path, layout: tuple[Path, Path]) -> None:
    root, outside = layout
    with McpClient(ws_home, "workspace-full", roots=[root]) as client:
        secrets = client.tools()["workspace_create"].inputSchema["properties"]["secrets"]
        assert "file_path" not in str(secrets)
        names = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"}
        assert secrets["anyOf"][0] == {"items": names, "type": "array"}
        for given in ({"name": "K", "file_path": str(outside / "id_rsa")}, {"name": "K"}):
            error = client.error("workspace_create", environment=ENVIRONMENT, secrets=[given])
            assert PRIVATE not in error
            one_line(error, "secrets takes secret names only")
        error = client.error("workspace_create", environment=ENVIRONMENT, secrets=["K"])
        one_line(error, "unknown secret 'K'", "the operator declared none")


def test_operator_secrets_are_read_at_start_and_never_shown(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-from-file\n")
    policy = OperatorPolicy.from_args(
        [str(tmp_path)],
        secrets=[f"TOKEN=@{token}", "API"],
        plain_secrets=["TOKEN", "API"],
        environ={"API": "s3cret-env"},
    )
    assert policy.secret_names == ["TOKEN", "API"]
    assert "s3cret" not in repr(policy) and "s3cret" not in policy.instructions()
    with pytest.raises(ValidationError, match="process list"):
        OperatorPolicy.from_args([str(tmp_path)], secrets=["TOKEN=plain"])
    with pytest.raises(ValidationError, match="environment has no MISSING"):
        OperatorPolicy.from_args([str(tmp_path)], secrets=["MISSING"], environ={})


def test_over_mcp_a_secret_is_brokered_unless_the_operator_makes_it_plain(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with pytest.raises(ValidationError) as error:
        OperatorPolicy.from_args([str(tmp_path)], secrets=[f"TOKEN=@{token}"])
    one_line(str(error.value), "--secret-host TOKEN=HOST", "--secret-plain TOKEN")
    with pytest.raises(ValidationError, match="no --secret OTHER is declared"):
        OperatorPolicy.from_args(
            [str(tmp_path)], secrets=[f"TOKEN=@{token}"], plain_secrets=["TOKEN", "OTHER"]
        )
    brokered = OperatorPolicy.from_args(
        [str(tmp_path)], secrets=[f"TOKEN=@{token}"], secret_hosts=["TOKEN=api.example.com"]
    )
    assert brokered.plain_secret_names == []


# -- with a workspace: exports, sync, disk export ----------------------------------------------


@pytest.fixture
def live_in_root(ws_pyro: Pyro, layout: tuple[Path, Path]) -> Iterator[tuple[str, Path, Path]]:
    root, outside = layout
    workspace = ws_pyro.create_workspace(environment=ENVIRONMENT, seed_path=str(root / "proj"))
    wid = workspace["workspace_id"]
    made = ws_pyro.exec_workspace(wid, "echo run > run.sh && chmod 4755 run.sh")
    assert made["exit_code"] == 0, made["stderr"]
    yield wid, root, outside
    forget(ws_pyro, wid)


@pytest.mark.guest
def test_exports_and_sync_stay_inside_the_roots(
    ws_home: Path, ws_pyro: Pyro, live_in_root: tuple[str, Path, Path]
) -> None:
    wid, root, outside = live_in_root
    (root / "to-outside").symlink_to(outside)  # a symlinked parent leading out
    (root / "pointer").symlink_to(outside / "id_rsa")  # a symlink in the root pointing out
    before = sorted(p.name for p in outside.iterdir())
    refused = {
        str(outside / "new" / "run.sh"): "is outside the host roots",
        "/etc/cron.d/pyro-x": "is outside the host roots",
        "../outside/run.sh": "'..' is not allowed",
        "to-outside/run.sh": "refusing to go through the symlink 'to-outside'",
        "to-outside/deeper/run.sh": "refusing to go through the symlink 'to-outside'",
        "pointer": "output_path already exists: pointer",
        "proj/README.md": "output_path already exists: proj/README.md",
    }
    with McpClient(ws_home, roots=[root], cwd=outside) as client:
        out = client.tools()["workspace_export"].inputSchema["properties"]["output_path"]
        assert str(root) in out["description"]
        for output, fragment in refused.items():
            error = client.error(
                "workspace_export", workspace_id=wid, path="run.sh", output_path=output
            )
            one_line(error, fragment)
        for source in (str(outside), "to-outside", "~/.ssh"):
            error = client.error("workspace_sync_push", workspace_id=wid, source_path=source)
            one_line(error)
            assert "outside the host roots" in error or "'~'" in error
        # A relative path lands under the first root (never the server's working directory),
        # missing parents are made there, and setuid is dropped.
        done = client.ok(
            "workspace_export", workspace_id=wid, path="run.sh", output_path="exports/a/run.sh"
        )
        assert done["output_path"] == "exports/a/run.sh"
        synced = client.ok("workspace_sync_push", workspace_id=wid, source_path="proj")
        assert synced["workspace_sync"]["source_path"] == "proj"
    exported = root / "exports" / "a" / "run.sh"
    assert exported.read_text() == "run\n"
    assert not exported.stat().st_mode & (stat.S_ISUID | stat.S_ISGID)
    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "id_rsa").read_text() == PRIVATE
    assert not os.path.lexists("/etc/cron.d/pyro-x")


@pytest.mark.guest
def test_disk_export_stays_inside_the_roots(
    ws_home: Path, ws_pyro: Pyro, live_in_root: tuple[str, Path, Path]
) -> None:
    wid, root, outside = live_in_root
    ws_pyro.stop_workspace(wid)
    (root / "to-outside").symlink_to(outside)
    with McpClient(ws_home, "workspace-full", roots=[root]) as client:
        for output, fragment in {
            str(outside / "disk.ext4"): "is outside the host roots",
            "to-outside/disk.ext4": "refusing to go through the symlink",
        }.items():
            error = client.error("workspace_disk_export", workspace_id=wid, output_path=output)
            one_line(error, fragment)
        done = client.ok("workspace_disk_export", workspace_id=wid, output_path="img/disk.ext4")
    assert done["output_path"] == "img/disk.ext4" and (root / "img" / "disk.ext4").stat().st_size
    assert sorted(p.name for p in outside.iterdir()) == ["id_rsa"]


@pytest.mark.guest
def test_sdk_keeps_full_paths_but_never_writes_through_a_symlinked_parent(
    ws_pyro: Pyro, live_in_root: tuple[str, Path, Path]
) -> None:
    wid, root, outside = live_in_root
    (root / "to-outside").symlink_to(outside)
    with pytest.raises(ValidationError, match="refusing to go through the symlink 'to-outside'"):
        ws_pyro.export_workspace(wid, "run.sh", str(root / "to-outside" / "run.sh"))
    assert sorted(p.name for p in outside.iterdir()) == ["id_rsa"]
    target = outside / "new" / "run.sh"  # a person's own process: any full path
    assert ws_pyro.export_workspace(wid, "run.sh", str(target))["output_path"] == str(target)
    assert target.read_text() == "run\n"


@pytest.mark.guest
def test_operator_declared_secret_reaches_the_guest_by_name(
    ws_home: Path, layout: tuple[Path, Path]
) -> None:
    root, _outside = layout
    env = {"PYRO_HB_TOKEN": "tok-4f9e1c"}
    args = ["--secret", "PYRO_HB_TOKEN", "--secret-plain", "PYRO_HB_TOKEN"]
    with McpClient(ws_home, "workspace-full", roots=[root], args=args, env=env) as client:
        assert "PYRO_HB_TOKEN" in (client.instructions or "")
        ws = client.ok("workspace_create", environment=ENVIRONMENT, secrets=["PYRO_HB_TOKEN"])
        wid = ws["workspace_id"]
        try:
            assert "tok-4f9e1c" not in str(ws)
            ran = client.ok(
                "workspace_exec",
                workspace_id=wid,
                command='test "$T" = tok-4f9e1c && echo same; echo "$T"',
                secret_env={"PYRO_HB_TOKEN": "T"},
            )
            assert ran["stdout"].splitlines()[0] == "same"
            assert "tok-4f9e1c" not in str(ran)
        finally:
            client.ok("workspace_delete", workspace_id=wid)
