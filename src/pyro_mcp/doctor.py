"""``pyro doctor``: what this host can run, which engine ``auto`` picks, and why."""

from __future__ import annotations

import os
import platform
import shutil
from typing import Any

from .engines.detect import AUTO_ORDER
from .engines.qemu import kvm_usable
from .environments.catalog import CATALOG, DEFAULT_ENVIRONMENT
from .errors import EngineUnavailable
from .runtime import Notify, Runtime
from .version import CATALOG_VERSION, __version__

INSTALL_HINTS = {
    "gvisor": "apt-get install -t bookworm-backports runsc (bookworm-backports apt source)",
    "qemu-kvm": "apt-get install qemu-system-x86, and a host whose /dev/kvm boots guests",
    "qemu-tcg": "apt-get install qemu-system-x86",
}


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
        "qemu_user_networking": shutil.which("qemu-system-x86_64") is not None,
    }


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
    engines: dict[str, Any] = {}
    agent_dir = runtime.agent_dir
    for key in AUTO_ORDER:
        engine = runtime.selector.engine(key)
        static = engine.unavailable_reason()
        entry: dict[str, Any] = {
            "available": static is None,
            "reason": static or "installed (not boot-probed)",
            "isolation": engine.info().isolation,
        }
        if static is None and env is not None and probe:
            result = runtime.selector.probe(key, env, agent_dir, notify)
            entry["probe"] = result.as_dict()
            entry["available"] = result.ok
            entry["reason"] = result.reason
        if not entry["available"]:
            entry["install_hint"] = INSTALL_HINTS[key]
        engines[key] = entry
    engines["firecracker"] = {
        "available": False,
        "reason": "firecracker binary not found"
        if shutil.which("firecracker") is None
        else "the firecracker engine is not enabled in this build",
        "isolation": "vm-kvm",
    }
    chosen: str | None = None
    if env is not None and probe:
        try:
            chosen, _ = runtime.selector.select(runtime.engine_request, env, agent_dir, notify)
        except EngineUnavailable as exc:
            issues.append(str(exc))
    else:
        chosen = next((k for k in AUTO_ORDER if engines[k]["available"]), None)
    if not any(engines[k]["available"] for k in AUTO_ORDER):
        hints = "; ".join(f"{k}: {INSTALL_HINTS[k]}" for k in AUTO_ORDER)
        issues.append(f"no sandbox engine works on this host. Install one: {hints}")
    kvm = _kvm()
    kvm_ok, _ = kvm_usable()
    probed = "probe" in engines["qemu-kvm"]
    kvm["boots_guests"] = (
        bool(engines["qemu-kvm"]["available"])
        if kvm_ok and probed
        else (False if not kvm_ok else None)
    )
    installed = [name for name in CATALOG if runtime.store.installed(name) is not None]
    runtime_ok = chosen is not None and not any("no sandbox engine" in i for i in issues)
    return {
        "version": __version__,
        "platform": f"{platform.system().lower()}-{platform.machine()}",
        "runtime_ok": runtime_ok,
        "issues": issues,
        "kvm": kvm,
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
