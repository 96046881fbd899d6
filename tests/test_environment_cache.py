"""`env inspect` and `env prune` on a private cache laid out by hand (no build, no sandbox):
prune deletes exactly the partial, stale, unknown and broken installs and the boot templates
and agent bundles the current version cannot use, and keeps everything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyro_mcp import Pyro
from pyro_mcp.engines.bundle import agent_digest
from pyro_mcp.environments.catalog import CATALOG
from pyro_mcp.environments.store import ARTIFACTS, PLATFORM


def _install(root: Path, name: str, **manifest: object) -> Path:
    """A complete install of ``name`` as the store reads it (empty artifacts)."""
    spec = CATALOG[name]
    path = root / "environments" / PLATFORM / spec.dir_name
    (path / "rootfs").mkdir(parents=True)
    for artifact in ARTIFACTS:
        (path / artifact).write_bytes(b"")
    record = {
        "version": spec.version,
        "requested_packages": list(spec.packages),
        "artifacts": {"rootfs.ext4": {"sha256": f"sha-{name}", "size_bytes": 0}},
        **manifest,
    }
    (path / "environment.json").write_text(json.dumps(record))
    return path


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    _install(root, "debian:12", source="handmade")
    return root


def test_inspect_reports_installed_and_missing_environments(cache: Path, tmp_path: Path) -> None:
    pyro = Pyro(cache_dir=cache, base_dir=tmp_path / "home")
    installed = pyro.inspect_environment("debian:12")
    assert installed["installed"] is True
    assert installed["install_manifest"]["source"] == "handmade"
    assert installed["install_dir"] == str(
        cache / "environments" / PLATFORM / CATALOG["debian:12"].dir_name
    )
    missing = pyro.inspect_environment("debian:12-base")
    assert missing["installed"] is False and "install_manifest" not in missing
    with pytest.raises(ValueError, match=r"unknown environment 'nosuch'.*debian:12"):
        pyro.inspect_environment("nosuch")


def test_cli_inspect_and_its_errors(cache: Path, tmp_path: Path, run_pyro) -> None:
    env = {"PYRO_CACHE_DIR": str(cache), "PYRO_HOME": str(tmp_path / "home")}
    shown = run_pyro("env", "inspect", "debian:12", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["installed"] is True
    human = run_pyro("env", "inspect", "debian:12", env=env)
    assert "installed: True" in human.stdout and "source: handmade" in human.stdout
    bad = run_pyro("env", "inspect", "nosuch", env=env)
    assert bad.returncode != 0
    assert bad.stderr.startswith("[error] unknown environment 'nosuch'")
    assert "Traceback" not in bad.stderr


def test_prune_deletes_exactly_what_cannot_be_used(cache: Path, tmp_path: Path) -> None:
    platform = cache / "environments" / PLATFORM
    keep = [
        platform / CATALOG["debian:12"].dir_name,
        platform / f".lock-{CATALOG['debian:12'].dir_name}",
    ]
    keep[1].write_text("")
    gone = [
        platform / ".partial-debian_12-1.0.0-abc123",  # an interrupted build
        platform / "debian_12-0.9.0",  # an older version
        platform / "someone-elses-dir",
        _install(cache, "debian:12-build", version="0.1.0"),  # manifest of another version
    ]
    broken = _install(cache, "debian:12-base")
    (broken / "vmlinuz").unlink()  # an artifact is missing
    gone.append(broken)
    for path in gone[:3]:
        (path / "rootfs").mkdir(parents=True)
    current = agent_digest()
    agents = cache / "agent"
    keep.append(agents / current)
    gone.append(agents / "0123456789abcdef")
    templates = cache / "vm-templates"
    usable = {"agent": current, "rootfs_sha256": "sha-debian:12"}
    for name, meta in (
        ("usable", usable),
        ("old-agent", {**usable, "agent": "0123456789abcdef"}),
        ("other-rootfs", {**usable, "rootfs_sha256": "sha-gone"}),
        ("no-meta", None),
    ):
        (templates / name).mkdir(parents=True)
        if meta is not None:
            (templates / name / "meta.json").write_text(json.dumps(meta))
        (keep if name == "usable" else gone).append(templates / name)
    (agents / current).mkdir(parents=True)
    (agents / "0123456789abcdef").mkdir(parents=True)

    result = Pyro(cache_dir=cache, base_dir=tmp_path / "home").prune_environments()

    deleted = sorted([*result["deleted_environment_dirs"], *result["deleted_cache_dirs"]])
    assert deleted == sorted(str(path) for path in gone)
    assert result["count"] == len(result["deleted_environment_dirs"])
    assert all(not path.exists() for path in gone)
    assert all(path.exists() for path in keep)
    again = Pyro(cache_dir=cache, base_dir=tmp_path / "home").prune_environments()
    assert (again["count"], again["deleted_cache_dirs"]) == (0, [])


def test_cli_prune_says_what_it_deleted(cache: Path, tmp_path: Path, run_pyro) -> None:
    env = {"PYRO_CACHE_DIR": str(cache), "PYRO_HOME": str(tmp_path / "home")}
    stale = cache / "environments" / PLATFORM / "debian_12-0.9.0"
    stale.mkdir()
    first = run_pyro("env", "prune", env=env)
    assert (first.returncode, first.stdout) == (0, f"deleted {stale}\n"), first.stderr
    second = run_pyro("env", "prune", "--json", env=env)
    assert json.loads(second.stdout)["count"] == 0
    assert run_pyro("env", "prune", env=env).stdout == "Nothing to prune.\n"
