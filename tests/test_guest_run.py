"""One-shot runs in real sandboxes on both engines, through the SDK, the CLI and MCP.

QEMU runs under TCG emulation here (a cold boot takes ~9 s; later boots resume a saved
template in ~1 s), so QEMU checks share boots where they can: one SDK run and one CLI run
per engine feed several tests each.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from pyro_mcp import Pyro
from support import (
    ENGINES,
    ENVIRONMENT,
    HOST_KERNEL,
    CliResult,
    as_at_a_terminal,
    engine_key_matches,
    processes_mentioning,
    pyro_argv,
    wait_until_no_process,
)

pytestmark = pytest.mark.guest

REPO = Path(__file__).resolve().parent.parent
GUEST_MARKER = "/etc/pyro-test-marker"


def check_kernel(engine: str, proc_version: str) -> None:
    assert proc_version.startswith("Linux version")
    assert proc_version != HOST_KERNEL
    assert os.uname().release not in proc_version
    if engine == "qemu":
        assert "cloud-amd64" in proc_version  # Debian's cloud kernel, really booted


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- one SDK run per engine: kernel, host isolation, exit code, untouched base --------------


@pytest.fixture(scope="module")
def host_markers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Files that exist on the host only: in a tmp dir and in the project itself."""
    token = uuid.uuid4().hex[:8]
    in_tmp = tmp_path_factory.mktemp("host") / f"pyro-host-marker-{token}"
    in_project = Path(__file__).with_name(f".pyro-host-marker-{token}")
    for path in (in_tmp, in_project):
        path.write_text("host only\n")
    top = Path("/", REPO.parts[1])
    # The project's top-level directory, unless every Linux has one of that name (a clone
    # under /tmp or /root: the guest has its own, which says nothing about the host's).
    standard = {"/tmp", "/root", "/home", "/opt", "/srv", "/var", "/usr", "/run", "/mnt"}
    yield [in_tmp, in_project, REPO, *([] if str(top) in standard else [top])]
    in_project.unlink()


@pytest.fixture(scope="module", params=ENGINES)
def sdk_run(
    request: pytest.FixtureRequest,
    state_dir: Path,
    installed_env: dict[str, Any],
    host_markers: list[Path],
) -> dict[str, Any]:
    rootfs_marker = Path(installed_env["install_dir"], "rootfs", GUEST_MARKER.lstrip("/"))
    assert not rootfs_marker.exists(), f"{rootfs_marker} exists before the test"
    paths = " ".join(str(p) for p in host_markers)
    script = (
        "cat /proc/version\n"
        f'for p in {paths}; do if test -e "$p"; then echo "visible $p"; '
        'else echo "absent $p"; fi; done\n'
        f"echo written-by-guest > {GUEST_MARKER} && cat {GUEST_MARKER}\n"
        "exit 7\n"
    )
    with Pyro(backend_name=request.param, base_dir=state_dir) as pyro:
        result = pyro.run_in_vm(environment=ENVIRONMENT, command=script, timeout_seconds=60)
    return {
        "engine": request.param,
        "script": script,
        "result": result,
        "rootfs_marker": rootfs_marker,
    }


def test_sdk_run_result(sdk_run: dict[str, Any], state_dir: Path) -> None:
    result = sdk_run["result"]
    assert re.fullmatch(r"[0-9a-f]{12}", result["vm_id"])
    assert result["environment"] == ENVIRONMENT
    assert result["environment_version"] == "1.0.0"
    assert result["command"] == sdk_run["script"]
    assert result["execution_mode"] == "guest_vsock"
    assert engine_key_matches(sdk_run["engine"], result["engine"])
    assert result["duration_ms"] > 0
    assert result["cleanup"] == {
        "vm_id": result["vm_id"],
        "deleted": True,
        "reason": "post_exec_cleanup",
    }
    workdir = state_dir / "runtime" / "vms" / result["vm_id"]
    assert not workdir.exists()
    assert wait_until_no_process(str(workdir)) == []


def test_sdk_kernel_is_not_the_hosts(sdk_run: dict[str, Any]) -> None:
    check_kernel(sdk_run["engine"], sdk_run["result"]["stdout"].splitlines()[0])


def test_host_files_are_not_visible(sdk_run: dict[str, Any], host_markers: list[Path]) -> None:
    lines = sdk_run["result"]["stdout"].splitlines()
    for path in host_markers:
        assert f"absent {path}" in lines, sdk_run["result"]["stdout"]


def test_sdk_exit_code_passes_through(sdk_run: dict[str, Any]) -> None:
    assert sdk_run["result"]["exit_code"] == 7


def test_base_rootfs_is_never_modified(
    sdk_run: dict[str, Any], installed_env: dict[str, Any]
) -> None:
    # The write really happened inside the sandbox …
    assert "written-by-guest" in sdk_run["result"]["stdout"].splitlines()
    # … yet neither the rootfs directory (gVisor) nor the ext4 image (QEMU) changed.
    assert not sdk_run["rootfs_marker"].exists()
    if sdk_run["engine"] == "qemu":
        expected = installed_env["install_manifest"]["artifacts"]["rootfs.ext4"]["sha256"]
        assert sha256(Path(installed_env["rootfs_image"])) == expected


def test_writes_do_not_reach_the_next_sandbox(sdk_run: dict[str, Any], state_dir: Path) -> None:
    # Runs after sdk_run wrote GUEST_MARKER; a QEMU boot template must not carry it either.
    with Pyro(backend_name=sdk_run["engine"], base_dir=state_dir) as pyro:
        result = pyro.run_in_vm(ENVIRONMENT, f"test -e {GUEST_MARKER}", timeout_seconds=60)
    assert result["exit_code"] == 1, "a file written by one sandbox is visible in the next"


# -- one CLI run per engine: kernel, exit code, stdout/stderr ------------------------------------


@pytest.fixture(scope="module", params=ENGINES)
def cli_run(request: pytest.FixtureRequest, run_pyro: Any, installed_env: Any) -> Any:
    script = "cat /proc/version; echo to-stderr >&2; exit 7"
    result = run_pyro("run", ENVIRONMENT, "--engine", request.param, "--", "sh", "-c", script)
    return request.param, result


def test_cli_kernel_is_not_the_hosts(cli_run: tuple[str, CliResult]) -> None:
    engine, result = cli_run
    check_kernel(engine, result.stdout.strip())


def test_cli_exit_code_is_the_guest_exit_code(cli_run: tuple[str, CliResult]) -> None:
    assert cli_run[1].returncode == 7, cli_run[1].stderr


def test_cli_keeps_stdout_and_stderr_apart(cli_run: tuple[str, CliResult]) -> None:
    engine, result = cli_run
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("Linux version")
    lines = result.stderr_lines
    assert "to-stderr" in lines
    phases = [line for line in lines if line.startswith("[run] phase=")]
    assert phases == ["[run] phase=create", "[run] phase=start", "[run] phase=execute"]
    summary = lines[-1]
    assert summary.startswith(f"[run] environment={ENVIRONMENT} engine={engine}")
    assert "execution_mode=guest_vsock exit_code=7 duration_ms=" in summary


def test_cli_streams_output_while_the_command_runs(tmp_path: Path, installed_env: Any) -> None:
    command = "echo early; echo early-err >&2; sleep 3; echo late"
    seen: dict[str, float] = {}
    with (tmp_path / "stderr").open("w+") as err:
        proc = subprocess.Popen(
            [*pyro_argv(), "run", ENVIRONMENT, "--engine", "gvisor", "--", "sh", "-c", command],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            seen[line.strip()] = time.monotonic()
        returncode = proc.wait(timeout=60)
        err.seek(0)
        stderr = err.read()
    assert returncode == 0, stderr
    assert list(seen) == ["early", "late"]
    assert seen["late"] - seen["early"] >= 2.0, "stdout was buffered until the end"
    assert "early-err" in stderr.splitlines()


def test_cli_json_run(run_pyro: Any, installed_env: Any) -> None:
    script = "echo out; echo err >&2; exit 3"
    result = run_pyro("run", ENVIRONMENT, "--engine", "gvisor", "--json", "--", "sh", "-c", script)
    assert result.returncode == 3
    payload = json.loads(result.stdout)  # stdout is exactly one JSON document
    assert payload["command"] == f"sh -c '{script}'"
    assert (payload["stdout"], payload["stderr"], payload["exit_code"]) == ("out\n", "err\n", 3)
    assert payload["cleanup"]["deleted"] is True
    assert result.stderr == ""


# -- timeouts and interrupts ------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_timeout_returns_124_keeps_output_and_leaves_nothing_behind(
    engine: str, run_pyro: Any, fresh_state_dir: Path, installed_env: Any
) -> None:
    argv = f"run {ENVIRONMENT} --engine {engine} --timeout-seconds 2 --".split()
    env = {"PYRO_HOME": str(fresh_state_dir)}
    result = run_pyro(*argv, "sh", "-c", "echo before; sleep 60", env=env, timeout=90)
    assert result.returncode == 124, result.stderr
    assert result.stdout == "before\n"
    assert "command timed out after 2s" in result.stderr_lines
    # A cold QEMU boot under TCG takes ~9-11 s (later ones resume a saved template in ~1 s).
    assert result.seconds < (20 if engine == "qemu" else 8), f"took {result.seconds:.1f}s"
    assert wait_until_no_process(str(fresh_state_dir)) == []
    assert list((fresh_state_dir / "runtime" / "vms").iterdir()) == []


def test_a_failing_one_shot_leaves_nothing_behind(
    fresh_state_dir: Path, installed_env: Any
) -> None:
    """runsc removes a container whose command exits non-zero itself (no extra delete)."""
    with Pyro(backend_name="gvisor", base_dir=fresh_state_dir) as pyro:
        for code in (1, 3, 137):
            result = pyro.run_in_vm(environment=ENVIRONMENT, command=f"exit {code}")
            assert result["exit_code"] == code
    assert wait_until_no_process(str(fresh_state_dir)) == []
    assert list((fresh_state_dir / "runtime" / "runsc").iterdir()) == []
    assert list((fresh_state_dir / "runtime" / "vms").iterdir()) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_a_killed_callers_sandbox_is_ended_by_the_next_call(
    engine: str, fresh_state_dir: Path, installed_env: Any
) -> None:
    """`kill -9` of an SDK script mid-run leaves its sandbox running; the next call ends it
    and removes its runtime directory and (gVisor) its host cgroups."""
    script = (
        "import sys; from pyro_mcp import Pyro\n"
        f"Pyro(backend_name={engine!r}, base_dir=sys.argv[1]).run_in_vm("
        f"environment={ENVIRONMENT!r}, command='echo up; sleep 600', timeout_seconds=900)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(fresh_state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    vms = fresh_state_dir / "runtime" / "vms"
    deadline = time.monotonic() + 120
    while not processes_mentioning(str(vms)) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    child.kill()
    child.wait()
    (orphan,) = list(vms.iterdir())
    if engine == "gvisor":  # a one-shot has no agent to notice its caller is gone
        assert processes_mentioning(str(orphan)), "the sandbox ended with its caller already"
    with Pyro(backend_name=engine, base_dir=fresh_state_dir) as pyro:
        assert pyro.run_in_vm(environment=ENVIRONMENT, command="true")["exit_code"] == 0
    assert wait_until_no_process(str(orphan), timeout=15) == []
    assert not orphan.exists()
    assert not [name for name in gvisor_cgroups() if name.startswith(f"pyro-{orphan.name}")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("engine", ENGINES)
def test_interrupted_run_deletes_its_sandbox(
    engine: str, sig: signal.Signals, fresh_state_dir: Path, installed_env: Any
) -> None:
    proc = subprocess.Popen(
        [*pyro_argv(), "run", ENVIRONMENT, "--engine", engine, "--", "sleep", "60"],
        env={**os.environ, "PYRO_HOME": str(fresh_state_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_at_a_terminal,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until the command runs inside the sandbox
        if line.startswith("[run] phase=execute"):
            break
    time.sleep(0.5)
    assert processes_mentioning(str(fresh_state_dir / "runtime" / "vms"))
    (vm_id,) = [path.name for path in (fresh_state_dir / "runtime" / "vms").iterdir()]
    proc.send_signal(sig)
    rest = proc.stderr.read()
    assert proc.wait(timeout=30) == 128 + sig
    if sig == signal.SIGINT:
        assert "[error] interrupted" in rest.splitlines()
    assert "Traceback" not in rest
    assert wait_until_no_process(str(fresh_state_dir)) == []
    assert list((fresh_state_dir / "runtime" / "vms").iterdir()) == []
    # runsc's host cgroups went too (other sandboxes on this host may come and go meanwhile)
    assert not [name for name in gvisor_cgroups() if name.startswith(f"pyro-{vm_id}")]


def gvisor_cgroups() -> set[str]:
    """The host cgroups runsc keeps for pyro's gVisor sandboxes (engines/gvisor.py)."""
    root = Path("/sys/fs/cgroup/pids/pyro-gvisor")
    return {path.name for path in root.iterdir() if path.is_dir()} if root.is_dir() else set()


# -- where state lives ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "engine",
    [
        "gvisor",
        "qemu",
    ],
)
def test_a_long_state_dir_path_works(engine: str, run_pyro: Any, installed_env: Any) -> None:
    home = Path(tempfile.mkdtemp(prefix="pyro-long-" + "x" * 64 + "-", dir="/tmp"))
    try:
        result = run_pyro(
            "run", ENVIRONMENT, "--engine", engine, "--", "true", env={"PYRO_HOME": str(home)}
        )
        assert result.returncode == 0, result.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- MCP over stdio with the official client -----------------------------------------------------


def test_mcp_round_trip_over_stdio(tmp_path: Path, installed_env: Any) -> None:
    argv = pyro_argv()
    params = StdioServerParameters(
        command=argv[0],
        args=[*argv[1:], "mcp", "serve", "--profile", "vm-run"],
        env={**os.environ, "PYRO_ENGINE": "gvisor"},
    )
    server_log = tmp_path / "server.log"

    async def talk() -> tuple[Any, ...]:
        with server_log.open("w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                init = await session.initialize()
                tools = await session.list_tools()
                ok = await session.call_tool(
                    "vm_run", {"environment": ENVIRONMENT, "command": "echo hi"}
                )
                bad = await session.call_tool(
                    "vm_run", {"environment": ENVIRONMENT, "command": "echo hi", "vcpu_count": 99}
                )
                unknown = await session.call_tool(
                    "vm_run", {"environment": "nosuch:1", "command": "true"}
                )
        return init, tools, ok, bad, unknown

    init, tools, ok, bad, unknown = asyncio.run(asyncio.wait_for(talk(), timeout=120))
    assert init.serverInfo.name == "pyro_mcp"
    assert [tool.name for tool in tools.tools] == ["vm_run"]

    assert ok.isError is False, ok.content
    assert ok.structuredContent["exit_code"] == 0
    assert ok.structuredContent["stdout"] == "hi\n"
    assert ok.structuredContent["engine"] == "gvisor"
    assert ok.structuredContent["cleanup"]["deleted"] is True

    assert bad.isError is True
    assert "vcpu_count" in bad.content[0].text
    assert "vcpu_count must be between 1 and 8 (got 99)" in bad.content[0].text

    assert unknown.isError is True
    assert "unknown environment 'nosuch:1'" in unknown.content[0].text
    assert "Traceback" not in server_log.read_text()
