"""Published ports of a workspace's services: 127.0.0.1 only, owned by the supervisor.

A port is forwarded while its service runs; it is removed when the service stops, fails,
or is seen not running (never left behind, unlike 3.x).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from ..engines.base import Sandbox
from ..errors import PyroError, ValidationError

SERVICE_OPS = ("service_start", "service_status", "service_list", "service_logs", "service_stop")


def validate_ports(ports: Any) -> list[dict[str, int]]:
    if not ports:
        return []
    if not isinstance(ports, list):
        raise ValidationError("published_ports must be a list of {guest_port, host_port?}")
    out: list[dict[str, int]] = []
    seen: set[tuple[int, int]] = set()
    for item in ports:
        if not isinstance(item, dict):
            raise ValidationError("each published port must be {guest_port, host_port?}")
        guest = item.get("guest_port")
        host = item.get("host_port")
        if isinstance(guest, bool) or not isinstance(guest, int) or not 1 <= guest <= 65535:
            raise ValidationError("guest_port must be between 1 and 65535")
        if host is not None and (
            isinstance(host, bool) or not isinstance(host, int) or not 1025 <= host <= 65535
        ):
            raise ValidationError("host_port must be between 1025 and 65535")
        key = (host or 0, guest)
        if key in seen:
            raise ValidationError(f"port {guest} is published twice")
        seen.add(key)
        out.append({"guest_port": guest, **({"host_port": host} if host else {})})
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortTable:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.by_service: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()

    def publish(self, service: str, ports: list[dict[str, int]]) -> list[dict[str, Any]]:
        published: list[dict[str, Any]] = []
        try:
            for port in ports:
                host_port = port.get("host_port") or free_port()
                self.sandbox.publish_port(port["guest_port"], host_port)
                published.append(
                    {
                        "host": "127.0.0.1",
                        "host_port": host_port,
                        "guest_port": port["guest_port"],
                        "protocol": "tcp",
                    }
                )
        except PyroError:
            for entry in published:
                self.sandbox.unpublish_port(entry["host_port"])
            raise
        with self.lock:
            self.by_service[service] = published
        return published

    def publish_or_fail(
        self, name: str, ports: list[dict[str, int]], result: dict[str, Any]
    ) -> dict[str, Any]:
        """Forward the service's ports; if that fails the service is stopped and failed."""
        try:
            self.publish(name, ports)
        except PyroError:
            stopped, _ = self.sandbox.client.call("service_stop", {"name": name}, timeout=60)
            return {**stopped, "state": "failed", "stop_reason": "published_port_failed"}
        return result

    def release(self, service: str) -> None:
        with self.lock:
            entries = self.by_service.pop(service, [])
        for entry in entries:
            try:
                self.sandbox.unpublish_port(entry["host_port"])
            except PyroError:
                pass

    def decorate(self, item: dict[str, Any]) -> dict[str, Any]:
        name = str(item.get("service_name"))
        if item.get("state") != "running":
            self.release(name)
        with self.lock:
            item["published_ports"] = list(self.by_service.get(name, []))
        return item

    def after(self, op: str, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        if op == "service_list":
            result["services"] = [self.decorate(s) for s in result.get("services", [])]
            return result
        return self.decorate(result)
