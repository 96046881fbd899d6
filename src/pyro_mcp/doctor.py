"""``pyro doctor``: what this host can run, which engine ``auto`` picks, and why."""

from __future__ import annotations

import os
import platform
import shutil
from typing import Any

from .engines.detect import AUTO_ORDER
from .engines.profile import PROFILES, QEMU_BINARY, QEMU_KVM, EngineProfile, profile_of
from .engines.qemu import kvm_usable
from .environments.catalog import CATALOG, DEFAULT_ENVIRONMENT
from .environments.store import InstalledEnvironment
from .errors import EngineUnavailable
from .runtime import Notify, Runtime
from .version import CATALOG_VERSION, __version__


def _kvm() -> dict[str, Any]:
    exists = os.path.exists("/dev/kvm")
    return {
        "exists": exists,
        "readable": exists and os.access("/dev/kvm", os.R_OK),
        "writable": exists and os.access("/dev/kvm", os.W_OK),
    }


def _networking() -> dict[str, Any]:
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as handle:
            forward = handle.read().strip() == "1"
    except OSError:
        forward = False
    return {
        "enabled_by_default": False,
        "tun_available": os.path.exists("/dev/net/tun"),
        "ip_binary": shutil.which("ip"),
        "nft_binary": shutil.which("nft"),
        "iptables_binary": shutil.which("iptables"),
        "ip_forward_enabled": forward,
        "qemu_user_networking": shutil.which(QEMU_BINARY) is not None,
    }


def _engine_entry(
    runtime: Runtime,
    key: str,
    env: InstalledEnvironment | None,
    probe: bool,
    notify: Notify | None,
) -> dict[str, Any]:
    """One engine of this build: installed, and (``probe``) whether it really boots."""
    profile = profile_of(key)
    static = runtime.selector.engine(key).unavailable_reason()
    entry: dict[str, Any] = {
        "available": static is None,
        "reason": static or "installed (not boot-probed)",
        "isolation": profile.isolation,
    }
    if static is None and env is not None and probe:
        result = runtime.selector.probe(key, env, runtime.agent_dir, notify)
        entry["probe"] = result.as_dict()
        entry["available"] = result.ok
        entry["reason"] = result.reason
    if not entry["available"]:
        entry["install_hint"] = profile.install_hint
    return entry


def _unbuilt_entry(profile: EngineProfile) -> dict[str, Any]:
    """An engine the contract knows that this build does not have."""
    found = profile.binary is not None and shutil.which(profile.binary) is not None
    return {
        "available": False,
        "reason": f"the {profile.name} engine is not enabled in this build"
        if found
        else f"{profile.binary} binary not found",
        "isolation": profile.isolation,
    }


def _chosen(
    runtime: Runtime,
    engines: dict[str, Any],
    env: InstalledEnvironment | None,
    probe: bool,
    notify: Notify | None,
    issues: list[str],
) -> str | None:
    """What ``auto`` (or the requested engine) picks here; why not, in ``issues``."""
    if env is None or not probe:
        return next((k for k in AUTO_ORDER if engines[k]["available"]), None)
    try:
        chosen, _ = runtime.selector.select(runtime.engine_request, env, runtime.agent_dir, notify)
    except EngineUnavailable as exc:
        issues.append(str(exc))
        return None
    return chosen


def _kvm_report(engines: dict[str, Any]) -> dict[str, Any]:
    kvm = _kvm()
    kvm_ok, _ = kvm_usable()
    probed = "probe" in engines[QEMU_KVM.key]
    kvm["boots_guests"] = (
        bool(engines[QEMU_KVM.key]["available"])
        if kvm_ok and probed
        else (False if not kvm_ok else None)
    )
    return kvm


def run_doctor(
    runtime: Runtime, probe: bool = True, notify: Notify | None = None
) -> dict[str, Any]:
    issues: list[str] = []
    env = runtime.store.installed(DEFAULT_ENVIRONMENT)
    if env is None:
        issues.append(
            f"{DEFAULT_ENVIRONMENT} is not installed, so engines were not boot-probed: "
            f"run 'pyro env pull {DEFAULT_ENVIRONMENT}'"
        )
    engines = {key: _engine_entry(runtime, key, env, probe, notify) for key in AUTO_ORDER}
    engines.update({p.key: _unbuilt_entry(p) for p in PROFILES.values() if not p.built})
    chosen = _chosen(runtime, engines, env, probe, notify, issues)
    if not any(engines[k]["available"] for k in AUTO_ORDER):
        hints = "; ".join(f"{k}: {profile_of(k).install_hint}" for k in AUTO_ORDER)
        issues.append(f"no sandbox engine works on this host. Install one: {hints}")
    installed = [name for name in CATALOG if runtime.store.installed(name) is not None]
    runtime_ok = chosen is not None and not any("no sandbox engine" in i for i in issues)
    return {
        "version": __version__,
        "platform": f"{platform.system().lower()}-{platform.machine()}",
        "runtime_ok": runtime_ok,
        "issues": issues,
        "kvm": _kvm_report(engines),
        "engines": engines,
        "engine_request": runtime.engine_request or os.environ.get("PYRO_ENGINE") or "auto",
        "chosen_engine": chosen,
        "networking": _networking(),
        "catalog_version": CATALOG_VERSION,
        "environment_cache": {
            "cache_dir": str(runtime.store.root),
            "installed": installed,
            "tools": {
                tool: shutil.which(tool)
                for tool in ("mmdebstrap", "mkfs.ext4", "debugfs", "busybox")
            },
        },
        "state_dir": str(runtime.home),
    }
