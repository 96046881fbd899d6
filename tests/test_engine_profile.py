"""Engine facts live in one profile per engine (engines/profile.py), and everything reads them:
payloads, doctor, detection; the gVisor one-shot run goes through the Engine interface and the
engine's own launch and clean-up."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.doctor import run_doctor
from pyro_mcp.engines import gvisor_cgroups
from pyro_mcp.engines.base import BootSpec
from pyro_mcp.engines.detect import AUTO_ORDER, EngineSelector
from pyro_mcp.engines.gvisor import GvisorEngine, container_id
from pyro_mcp.engines.gvisor_cgroups import HostCgroups
from pyro_mcp.engines.host import HostEngine
from pyro_mcp.engines.limits import host_cpu_quota
from pyro_mcp.engines.profile import PROFILES, profile_of
from pyro_mcp.errors import EngineUnavailable, SandboxError, ValidationError
from pyro_mcp.runtime import Runtime
from pyro_mcp.workspaces import records
from support import ENVIRONMENT, one_line

SRC = Path(__file__).resolve().parent.parent / "src" / "pyro_mcp"
ENGINE_NAMES = {*PROFILES, *(p.name for p in PROFILES.values())}


class Record(dict[str, Any]):
    """A workspace record whose fields this test does not care about are None."""

    def __missing__(self, key: str) -> None:
        return None


def record(engine: str, network_policy: str = "off") -> dict[str, Any]:
    return Record(engine=engine, network_policy=network_policy, labels={})


@pytest.mark.parametrize("key", ["gvisor", "qemu-kvm", "qemu-tcg", "host"])
def test_payloads_say_what_the_profile_says(key: str) -> None:
    profile = profile_of(key)
    data = records.payload(record(key, "egress"))
    assert data["isolation"] == data["metadata"]["isolation"] == profile.isolation
    assert data["execution_mode"] == records.execution_mode(key) == profile.execution_mode
    assert data["guest_ip"] == profile.guest_network["guest_ip"]
    assert ("warning" in data) == (not profile.isolated)
    assert records.payload(record(key))["guest_ip"] is None


def test_the_facts_per_engine() -> None:
    facts = {
        key: (p.isolation, p.real_vm, p.execution_mode, p.one_shot)
        for key, p in PROFILES.items()
        if p.built
    }
    assert facts == {
        "gvisor": ("gvisor-sentry", False, "guest_vsock", True),
        "qemu-kvm": ("vm-kvm", True, "guest_vsock", False),
        "qemu-tcg": ("vm-tcg", True, "guest_vsock", False),
        "host": ("none", False, "host_compat", False),
    }
    assert profile_of("gvisor").guest_network["guest_ip"] == "127.0.0.1"
    assert profile_of("qemu-tcg").guest_network["guest_ip"] == "10.0.2.15"


@pytest.mark.parametrize("key", ["firecracker", "nope", "", "GVISOR"])
def test_an_unknown_engine_is_one_clear_error(key: str, tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable) as info:
        profile_of(key)
    one_line(str(info.value), "unknown engine")
    with pytest.raises(EngineUnavailable) as info:
        Runtime(home=tmp_path).engine_by_key(key)
    one_line(str(info.value), "unknown engine")


def test_each_engine_answers_with_its_own_profile(tmp_path: Path) -> None:
    runtime = Runtime(home=tmp_path)
    for key in AUTO_ORDER:
        choice = runtime.engine_by_key(key)
        assert choice.profile is profile_of(key) and choice.engine.info() is choice.profile
    host = runtime.engine_by_key("host")
    assert host.profile is profile_of("host") and host.execution_mode == "host_compat"


def engine_name_comparisons(source: str) -> list[int]:
    """Lines of ``source`` that compare something to an engine's name or key."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        for operand in [node.left, *node.comparators]:
            values = (
                operand.elts if isinstance(operand, ast.Tuple | ast.Set | ast.List) else [operand]
            )
            if any(isinstance(v, ast.Constant) and v.value in ENGINE_NAMES for v in values):
                found.append(node.lineno)
    return found


def test_the_comparison_finder_finds_comparisons() -> None:
    source = 'if a == "host": pass\nif b.key in ("qemu-kvm", "x"): pass\nc = {"gvisor": 1}\n'
    assert engine_name_comparisons(source) == [1, 2]


def test_no_module_outside_engines_compares_an_engine_name_to_a_string() -> None:
    modules = [p for p in SRC.rglob("*.py") if "engines" not in p.relative_to(SRC).parts]
    assert len(modules) > 50
    hits = {
        str(path.relative_to(SRC)): lines
        for path in modules
        if (lines := engine_name_comparisons(path.read_text()))
    }
    assert hits == {}


def test_doctor_lists_every_engine_from_its_profile(tmp_path: Path) -> None:
    report = run_doctor(Runtime(home=tmp_path), probe=False)
    engines = report["engines"]
    assert set(engines) == {*AUTO_ORDER, "firecracker"}
    for key, entry in engines.items():
        profile = PROFILES[key]
        assert entry["isolation"] == profile.isolation
        if not entry["available"] and profile.built:
            assert entry["install_hint"] == profile.install_hint
    assert engines["firecracker"]["available"] is False
    assert engines["firecracker"]["reason"] in (
        "firecracker binary not found",
        "the firecracker engine is not enabled in this build",
    )


def test_an_engine_without_one_shot_runs_says_so(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as info:
        HostEngine().run_once(_spec(tmp_path, None), "true", 5, "/", None)
    one_line(str(info.value), "host engine has no one-shot run")


def _spec(workdir: Path, env: Any, mem_mib: int = 512) -> BootSpec:
    return BootSpec(
        sandbox_id=f"engprof{os.getpid()}", environment=env, workdir=workdir, agent_dir=None,
        mem_mib=mem_mib,
    )  # fmt: skip


@pytest.mark.guest
def test_gvisor_run_once_through_the_engine_shares_its_launch(
    fresh_state_dir: Path, installed_env: Any
) -> None:
    """The one-shot's bundle is the engine's (config.json with the command as the entry
    process, no agent mounted), and after it nothing of it is left: no runsc state, no host
    cgroups (its memory limit: tests/test_limits.py)."""
    runtime = Runtime(home=fresh_state_dir)
    engine = runtime.selector.engine("gvisor")
    assert isinstance(engine, GvisorEngine) and engine.profile.one_shot
    workdir = fresh_state_dir / "once"
    workdir.mkdir()
    spec = _spec(workdir, runtime.environment(ENVIRONMENT))
    seen: list[tuple[str, bytes]] = []
    command = "echo out; echo err >&2; exit 7"
    result = engine.run_once(spec, command, 30, "/root", lambda k, b: seen.append((k, b)))
    assert (result["exit_code"], result["timed_out"]) == (7, False)
    assert (result["stdout"], result["stderr"]) == ("out\n", "err\n")
    assert b"".join(b for k, b in seen if k == "stderr") == b"err\n"
    config = json.loads((workdir / "bundle" / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/sh", "-lc", command]
    assert config["process"]["cwd"] == "/root"
    assert "/opt/pyro" not in [m["destination"] for m in config["mounts"]]
    state = fresh_state_dir / "runtime" / "runsc"
    assert not [name for name in os.listdir(state) if container_id(spec.sandbox_id) in name]
    assert not any(path.exists() for path in HostCgroups(container_id(spec.sandbox_id)).dirs)


@pytest.mark.skipif(os.geteuid() != 0, reason="host cgroups need root")
def test_a_sandbox_weighs_its_vcpus_and_all_sandboxes_one_task_per_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The quota caps a sandbox at its vCPUs plus the engine's one; its weight keeps a busy
    host from slowing it more than the same runsc outside any cgroup (gvisor_cgroups.py).
    As on a host with more CPUs than the quota (here, with 2, it would bound nothing)."""
    monkeypatch.setattr(gvisor_cgroups, "host_cpu_quota", lambda vcpus, cpus_on_host: vcpus + 1)
    cgroups = HostCgroups(f"pyro-engprof-test-{os.getpid()}", 512, vcpu_count=2)
    cgroups.create()
    try:
        cpu = cgroups.dirs[0] if cgroups.v2 else cgroups.dirs[2]
        name, task = ("cpu.weight", 100) if cgroups.v2 else ("cpu.shares", 1024)
        assert int((cpu / name).read_text()) == 2 * task
        assert int((cpu.parent / name).read_text()) == (os.cpu_count() or 1) * task
        quota = (cpu / "cpu.max").read_text().split()[0] if cgroups.v2 else None
        assert (
            int(quota or (cpu / "cpu.cfs_quota_us").read_text()) == (2 + 1) * 100_000
        )  # the vCPUs and the engine's own CPU
    finally:
        cgroups.remove()
    assert not any(path.exists() for path in cgroups.dirs)


@pytest.mark.skipif(os.geteuid() != 0, reason="host cgroups need root")
def test_a_quota_of_every_host_cpu_is_no_cpu_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the quota would be every CPU the host has, it bounds nothing: the sandbox joins
    no CPU cgroup (being in one costs every exec), only its memory and task limits."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # vCPUs 1 + the engine's 1 = the host
    cgroups = HostCgroups(f"pyro-engprof-test-{os.getpid()}", 512, vcpu_count=1)
    cgroups.create()
    try:
        wrapped = " ".join(cgroups.wrap(["/bin/true"]))
        if cgroups.v2:
            (cgroup,) = cgroups.dirs
            assert (cgroup / "cpu.max").read_text().split()[0] == "max"  # never written
        else:
            memory, pids, cpu = cgroups.dirs
            assert cgroups.joined == [memory, pids] and not cpu.exists()
            assert str(cpu) not in wrapped and str(memory) in wrapped
        limit = cgroups.dirs[0] / ("memory.max" if cgroups.v2 else "memory.limit_in_bytes")
        assert int(limit.read_text()) == (512 + 256) * 1024 * 1024
    finally:
        cgroups.remove()
    assert not any(path.exists() for path in cgroups.dirs)


def test_the_cpu_quota_is_set_only_where_it_bounds_something() -> None:
    assert host_cpu_quota(1, cpus_on_host=2) is None
    assert host_cpu_quota(2, cpus_on_host=2) is None
    assert host_cpu_quota(1, cpus_on_host=3) == 2
    assert host_cpu_quota(2, cpus_on_host=64) == 3


def test_host_compat_follows_the_host_profile(
    monkeypatch: pytest.MonkeyPatch, fresh_state_dir: Path, installed_env: Any
) -> None:
    """Where no engine works (here: the selector finds none) and the caller opts in, commands
    run on the host, and everything that needs a guest of its own says it is unavailable."""

    def no_engine(*args: Any, **kwargs: Any) -> Any:
        raise EngineUnavailable("no usable engine for 'auto' on this host (a test)")

    monkeypatch.setattr(EngineSelector, "select", no_engine)
    with Pyro(base_dir=fresh_state_dir) as pyro:
        run = pyro.run_in_vm(environment=ENVIRONMENT, command="echo hi", allow_host_compat=True)
        assert (run["engine"], run["execution_mode"], run["stdout"]) == (
            "host",
            "host_compat",
            "hi\n",
        )
        ws = pyro.create_workspace(environment=ENVIRONMENT, allow_host_compat=True)
        workspace_id = ws["workspace_id"]
        try:
            assert (ws["engine"], ws["isolation"], ws["execution_mode"]) == (
                "host",
                "none",
                "host_compat",
            )
            assert "NO isolation" in ws["warning"]
            with pytest.raises(ValidationError) as info:
                pyro.open_shell(workspace_id)
            one_line(str(info.value), "shells are unavailable for host_compat workspaces")
            with pytest.raises(ValidationError) as info:
                pyro.start_service(workspace_id, "app", command="true")
            one_line(str(info.value), "services are unavailable for host_compat workspaces")
        finally:
            pyro.delete_workspace(workspace_id)


def test_proc_stat_fields_are_read_in_one_place() -> None:
    """procfs.stat_fields, used by owners (identities) and gvisor_cgroups (CPU time)."""
    import os

    from pyro_mcp.engines.gvisor_cgroups import process_seconds
    from pyro_mcp.procfs import stat_fields
    from pyro_mcp.workspaces.owners import identity

    fields = stat_fields(os.getpid())
    assert fields is not None and fields[0] in ("R", "S")
    assert identity(os.getpid()) == f"{os.getpid()}:{fields[19]}"
    assert process_seconds([os.getpid()]) > 0
    assert stat_fields(2**22 + 1) is None  # beyond pid_max: gone
