"""Host diagnostics: ``pyro doctor``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

from .base import OperationsBase
from .registry import HumanOutput, Param, operation

if TYPE_CHECKING:  # the shapes are for mypy and the MCP schema: not on the CLI's path
    from .results import DoctorReport


def _render_doctor(report: dict[str, Any]) -> HumanOutput:
    kvm = report["kvm"]
    net = report["networking"]
    lines = [
        f"Platform: {report['platform']} (pyro-mcp {report['version']})",
        f"Runtime: {'PASS' if report['runtime_ok'] else 'FAIL'}",
        f"KVM: exists={kvm['exists']} readable={kvm['readable']} writable={kvm['writable']} "
        f"boots_guests={kvm['boots_guests']}",
        "Engines:",
    ]
    for name, entry in report["engines"].items():
        state = "available" if entry["available"] else "unavailable"
        probe = entry.get("probe")
        timing = f", boot probe {probe['seconds']}s" if probe and probe["ok"] else ""
        lines.append(f"  {name}: {state} ({entry['isolation']}{timing}) - {entry['reason']}")
        if entry.get("install_hint") and not entry["available"]:
            lines.append(f"    to enable: {entry['install_hint']}")
    lines.append(
        f"Chosen engine: {report['chosen_engine'] or 'none'} "
        f"(requested: {report['engine_request']})"
    )
    cache = report["environment_cache"]
    lines.append(
        f"Environment cache: {cache['cache_dir']} "
        f"(installed: {', '.join(cache['installed']) or 'none'})"
    )
    lines.append(
        f"Networking: tun={net['tun_available']} ip_forward={net['ip_forward_enabled']} "
        f"qemu_user_networking={net['qemu_user_networking']}"
    )
    lines.append(f"Catalog version: {report['catalog_version']}")
    if report["issues"]:
        lines.append("Issues:")
        lines.extend(f"  - {issue}" for issue in report["issues"])
    return HumanOutput(stdout="\n".join(lines) + "\n", exit_code=0 if report["runtime_ok"] else 1)


class HostOperations(OperationsBase):
    @operation(cli=("doctor",), read_only=True, render=_render_doctor)
    def doctor(
        self,
        no_probe: Annotated[bool, Param("Skip the real boot probes (static checks only).")] = False,
    ) -> DoctorReport:
        """Check this host: engines (with a real boot probe), KVM, cache and networking.

        Exits non-zero when no engine works, and says what to install.
        """
        return cast("DoctorReport", self._manager.doctor(probe=not no_probe))
